"""The one sampling loop: EEG condition → latents → images, used by validation, evaluation, predict and
:class:`~dreamdiffusion.pipeline.DreamDiffusionPipeline`.

Samplers, both built from the pipeline's training noise schedule (``scheduler/scheduler_config.json``,
DDPM β scaled-linear 0.00085 → 0.012):

* ``"ddim"`` — :class:`diffusers.DDIMScheduler`, η = 0 (deterministic); our default, 50 steps = 50 UNet calls.
* ``"plms"`` — :class:`diffusers.PNDMScheduler` with ``skip_prk_steps=True`` (the PLMS sampler the authors
  used with 250 steps). diffusers repeats the first timestep to warm the linear multistep up, so
  ``num_inference_steps`` steps cost ``num_inference_steps + 1`` UNet calls.

Classifier-free guidance (only meaningful for a model trained with condition dropout):
``ε = ε_null + guidance_scale · (ε_cond − ε_null)``; the null and the conditional halves go through the
UNet as one doubled batch. The unconditional half's time vector (when the model has one) is zero.

Reproducibility: item ``i``'s initial noise comes from its own ``torch.Generator`` seeded with ``seeds[i]``
(drawn on the CPU, then moved), and DDIM/PLMS add no further noise, so an image depends only on its
EEG, its seed and the model — not on the batch it was in, nor on the rank that made it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from dreamdiffusion.models.condition import Condition

SAMPLERS = ("ddim", "plms")


def build_sampler(scheduler_config: Mapping, sampler: str = "ddim"):
    """A fresh diffusers scheduler for ``sampler`` ("ddim" or "plms") from the training schedule's config."""
    from diffusers import DDIMScheduler, PNDMScheduler

    if sampler == "ddim":
        return DDIMScheduler.from_config(scheduler_config)
    if sampler == "plms":
        return PNDMScheduler.from_config(scheduler_config, skip_prk_steps=True)
    raise ValueError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")


def unet_calls(sampler: str, num_inference_steps: int) -> int:
    """UNet forward passes one batch costs (a guidance-doubled batch counts once): DDIM k → k, PLMS k → k + 1."""
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
    return num_inference_steps + (1 if sampler == "plms" else 0)


def derive_seed(*keys: int) -> int:
    """A 31-bit seed from integer keys, e.g. ``(seed, trial_index, sample)``; stable across runs and machines."""
    import numpy as np

    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1)[0] & 0x7FFFFFFF)


def use_bf16(device: torch.device, autocast: bool | None) -> bool:
    """bf16 autocast: ``None`` → on for CUDA devices that support bf16, off on CPU; ``True``/``False`` force it."""
    if autocast is not None:
        return autocast
    return device.type == "cuda" and torch.cuda.is_bf16_supported()


def initial_noise(seeds: Sequence[int], shape: Sequence[int], device: torch.device, dtype: torch.dtype) -> Tensor:
    """``[len(seeds), *shape]`` standard normal noise; row ``i`` drawn from a CPU generator seeded with ``seeds[i]``."""
    rows = [torch.randn(tuple(shape), generator=torch.Generator("cpu").manual_seed(int(s))) for s in seeds]
    return torch.stack(rows).to(device=device, dtype=dtype)


@torch.no_grad()
def generate_images(
    unet,
    vae,
    scheduler_config: Mapping,
    condition: Condition,
    null_condition: Tensor | None,
    *,
    sampler: str = "ddim",
    num_inference_steps: int = 50,
    guidance_scale: float = 1.0,
    seeds: Sequence[int],
    image_size: int | None = None,
    autocast: bool | None = None,
) -> Tensor:
    """Sample one image per condition row.

    Parameters
    ----------
    unet, vae
        ``UNet2DConditionModel`` and ``AutoencoderKL`` (in eval mode; gradients are not tracked).
    scheduler_config
        The training noise scheduler's config (``pipeline.scheduler.config``).
    condition
        :class:`Condition` with ``hidden_states [B, 77, cross_dim]`` and optional ``time_vector [B, E]``
        (passed to the UNet as ``class_labels``).
    null_condition
        The unconditional input ``[B, 77, cross_dim]`` (``condition_model.null(B)``) for classifier-free
        guidance, or ``None``. Guidance runs only when it is given and ``guidance_scale != 1``.
    seeds
        ``B`` integers; ``seeds[i]`` fixes item ``i``'s initial latent noise.
    image_size
        Output side in pixels (a multiple of the VAE's down-sampling factor); default: the UNet's native size.
    autocast
        bf16 autocast; ``None`` chooses it for CUDA devices with bf16 and keeps fp32 elsewhere.

    Returns
    -------
    Tensor
        ``[B, 3, S, S]`` float32 images in ``[0, 1]``, on the UNet's device.
    """
    hidden = condition.hidden_states
    batch = hidden.shape[0]
    if len(seeds) != batch:
        raise ValueError(f"got {len(seeds)} seeds for a batch of {batch} conditions; give one seed per item")
    if num_inference_steps < 1:
        raise ValueError(f"num_inference_steps must be >= 1, got {num_inference_steps}")
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    size = int(image_size) if image_size is not None else int(unet.config.sample_size) * factor
    if size % factor:
        raise ValueError(f"image_size {size} is not a multiple of the VAE's down-sampling factor {factor}")
    device = next(unet.parameters()).device
    dtype = next(unet.parameters()).dtype

    scheduler = build_sampler(scheduler_config, sampler)
    scheduler.set_timesteps(num_inference_steps, device=device)
    latents = initial_noise(seeds, (unet.config.in_channels, size // factor, size // factor), device, dtype)
    latents = latents * scheduler.init_noise_sigma

    hidden = hidden.to(device=device, dtype=dtype)
    time_vector = condition.time_vector
    if time_vector is not None:
        time_vector = time_vector.to(device=device, dtype=dtype)
    guided = null_condition is not None and guidance_scale != 1.0
    if guided:
        null = null_condition.to(device=device, dtype=dtype)
        if null.shape != hidden.shape:
            raise ValueError(f"null_condition has shape {tuple(null.shape)}, expected {tuple(hidden.shape)}")
        hidden = torch.cat([null, hidden])
        if time_vector is not None:
            time_vector = torch.cat([torch.zeros_like(time_vector), time_vector])

    bf16 = use_bf16(device, autocast)
    amp = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    with amp:
        for t in scheduler.timesteps:
            model_input = torch.cat([latents, latents]) if guided else latents
            model_input = scheduler.scale_model_input(model_input, t)
            eps = unet(model_input, t, encoder_hidden_states=hidden, class_labels=time_vector).sample
            if guided:
                eps_null, eps_cond = eps.chunk(2)
                eps = eps_null + guidance_scale * (eps_cond - eps_null)
            latents = scheduler.step(eps.to(latents.dtype), t, latents).prev_sample
        images = vae.decode(latents.to(vae.dtype) / vae.config.scaling_factor).sample
    return (images.float() / 2 + 0.5).clamp(0, 1)
