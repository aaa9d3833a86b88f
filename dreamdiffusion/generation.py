"""The one sampling loop: EEG condition → latents → images, used by validation, evaluation, predict, ``generate``
and :class:`~dreamdiffusion.pipeline.DreamDiffusionPipeline`.

The sampler is a diffusers scheduler. :func:`build_sampler` makes one from the pipeline's noise schedule
(``scheduler/scheduler_config.json``, β scaled-linear 0.00085 → 0.012) and a name:

* any diffusers scheduler class name — ``"DDIMScheduler"``, ``"PNDMScheduler"``, ``"DPMSolverMultistepScheduler"``
  (DPM-Solver++, the default: :data:`DEFAULT_SAMPLER` with :data:`DEFAULT_STEPS` steps), ``"EulerDiscreteScheduler"``,
  ``"UniPCMultistepScheduler"``, ...;
* ``"ddim"`` — :class:`diffusers.DDIMScheduler`, η = 0 (deterministic); 50 steps = 50 UNet calls;
* ``"plms"`` — :class:`diffusers.PNDMScheduler` with ``skip_prk_steps=True`` (the PLMS sampler the authors
  used with 250 steps). diffusers repeats the first timestep to warm the linear multistep up, so
  ``num_inference_steps`` steps cost ``num_inference_steps + 1`` UNet calls.

A scheduler instance is used as it is. :func:`unet_calls` counts the UNet passes of any of them.

The default, everywhere a sampler is defaulted (stage-3 configs and ``EvalModule``, stage-2 validation grids and
the sampler stage 2 writes into its pipeline, the pipeline's and ``generate``'s step count), is DPM-Solver++
(Lu et al. 2022; second-order multistep) with 20 steps = 20 UNet calls per image. On the demo base model it drew
images the demo classifier recognised as often as DDIM-50's (97.0% [94.5, 99.0] vs 95.5% [92.5, 98.0], 200
images, same seeds, guidance 3) at 2.5× DDIM-50's images/s; ``benchmarks/samplers.py`` measures it.

Classifier-free guidance (only meaningful for a model trained with condition dropout):
``ε = ε_null + guidance_scale · (ε_cond − ε_null)``; the null and the conditional halves go through the
UNet as one doubled batch. The unconditional half's time vector (when the model has one) is zero.

Reproducibility: item ``i``'s initial noise comes from its own ``torch.Generator`` (``seeds[i]``, or the
``i``-th of a list of generators; drawn on the CPU, then moved), and so does any noise a stochastic scheduler
adds, so an image depends only on its EEG, its generator and the model — not on the batch it was in, nor on
the rank that made it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor

from dreamdiffusion.models.condition import Condition

ALIASES = {"ddim": ("DDIMScheduler", {}), "plms": ("PNDMScheduler", {"skip_prk_steps": True})}
# The default sampler and step count (module docstring); DPMSolverMultistepScheduler's own default algorithm is
# DPM-Solver++ ("dpmsolver++"), which default_scheduler also states explicitly.
DEFAULT_SAMPLER = "DPMSolverMultistepScheduler"
DEFAULT_STEPS = 20
# The noise schedule of Stable Diffusion 1.5 (its scheduler_config.json): what unet_calls counts with
# when no pipeline config is given (the count does not depend on the betas).
SD15_SCHEDULE = {
    "num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
    "steps_offset": 1, "clip_sample": False, "set_alpha_to_one": False,
}


def scheduler_classes() -> list[str]:
    """Names of the diffusers scheduler classes :func:`build_sampler` accepts (besides ``ddim``/``plms``)."""
    import diffusers

    names = [n for n in dir(diffusers) if n.endswith("Scheduler") and not n.startswith("_")]
    return sorted(n for n in names
                  if isinstance(getattr(diffusers, n, None), type) and issubclass(getattr(diffusers, n), diffusers.SchedulerMixin))


def build_sampler(scheduler_config: Mapping, sampler=DEFAULT_SAMPLER):
    """A diffusers scheduler for ``sampler`` built from the training schedule's config.

    ``sampler``: ``"ddim"``, ``"plms"``, a diffusers scheduler class name (``"DPMSolverMultistepScheduler"``)
    or a scheduler instance (returned as it is).
    """
    import diffusers

    if isinstance(sampler, diffusers.SchedulerMixin):
        return sampler
    if not isinstance(sampler, str):
        raise TypeError(f"sampler must be a name or a diffusers scheduler, got {type(sampler).__name__}")
    name, overrides = ALIASES.get(sampler, (sampler, {}))
    cls = getattr(diffusers, name, None) if name.endswith("Scheduler") else None
    if not (isinstance(cls, type) and issubclass(cls, diffusers.SchedulerMixin)):
        raise ValueError(
            f"unknown sampler {sampler!r}; choose ddim, plms or a diffusers scheduler class name such as "
            f"DPMSolverMultistepScheduler (all: {', '.join(scheduler_classes())})"
        )
    return cls.from_config(dict(scheduler_config), **overrides)


def default_scheduler(scheduler_config: Mapping):
    """DPM-Solver++ (``DPMSolverMultistepScheduler``, ``algorithm_type="dpmsolver++"``) on the noise schedule of
    ``scheduler_config``: the sampler stage 2 writes into its pipeline."""
    from diffusers import DPMSolverMultistepScheduler

    return DPMSolverMultistepScheduler.from_config(dict(scheduler_config), algorithm_type="dpmsolver++")


def unet_calls(sampler, num_inference_steps: int, scheduler_config: Mapping | None = None) -> int:
    """UNet forward passes one batch costs (a guidance-doubled batch counts once): one per timestep of the
    scheduler, e.g. DDIM k → k, PLMS k → k + 1, DPM-Solver++ k → k, Heun k → 2k − 1."""
    import copy

    scheduler = build_sampler(scheduler_config or SD15_SCHEDULE, sampler)
    if scheduler is sampler:  # never change the state of the caller's scheduler
        scheduler = copy.deepcopy(scheduler)
    if num_inference_steps < 1:
        raise ValueError(f"num_inference_steps must be >= 1, got {num_inference_steps}")
    scheduler.set_timesteps(num_inference_steps)
    return len(scheduler.timesteps)


def derive_seed(*keys: int) -> int:
    """A 31-bit seed from integer keys, e.g. ``(seed, trial_index, sample)``; stable across runs and machines."""
    import numpy as np

    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1)[0] & 0x7FFFFFFF)


def use_bf16(device: torch.device, autocast: bool | None) -> bool:
    """bf16 autocast: ``None`` → on for CUDA devices that support bf16, off on CPU; ``True``/``False`` force it."""
    if autocast is not None:
        return autocast
    return device.type == "cuda" and torch.cuda.is_bf16_supported()


def autocast_context(device: torch.device, autocast: bool | None):
    """bf16 autocast on ``device`` when :func:`use_bf16` says so, else a no-op context."""
    return torch.autocast(device.type, dtype=torch.bfloat16) if use_bf16(device, autocast) else contextlib.nullcontext()


def seed_generators(seeds: Sequence[int]) -> list[torch.Generator]:
    """One CPU ``torch.Generator`` per seed (item ``i`` of a batch draws from ``generators[i]``)."""
    return [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]


def initial_noise(
    batch: int, shape: Sequence[int], generator, device: torch.device, dtype: torch.dtype
) -> Tensor:
    """``[batch, *shape]`` standard normal noise drawn in float32 (then cast), row ``i`` from ``generator[i]``
    when ``generator`` is a list (diffusers' ``randn_tensor``)."""
    from diffusers.utils.torch_utils import randn_tensor

    if isinstance(generator, list) and len(generator) != batch:
        raise ValueError(f"got {len(generator)} generators for {batch} images; pass one generator per image")
    noise = randn_tensor((batch, *shape), generator=generator, device=device, dtype=torch.float32)
    return noise.to(dtype)


def latent_shape(unet, vae, image_size: int | None = None) -> tuple[int, int, int]:
    """``(channels, h, w)`` of the latents for ``image_size`` pixels (default: the UNet's native size)."""
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    size = int(image_size) if image_size is not None else int(unet.config.sample_size) * factor
    if size % factor:
        raise ValueError(f"image_size {size} is not a multiple of the VAE's down-sampling factor {factor}")
    return (int(unet.config.in_channels), size // factor, size // factor)


@torch.no_grad()
def denoise(
    unet,
    scheduler,
    noise: Tensor,
    condition: Condition,
    null_condition: Tensor | None = None,
    guidance_scale: float = 1.0,
    *,
    generator=None,
    autocast: bool | None = None,
    on_step: Callable[[], object] | None = None,
) -> Tensor:
    """The sampling loop: standard normal ``noise [B, 4, h, w]`` → denoised latents ``[B, 4, h, w]``.

    ``scheduler.set_timesteps`` must have been called; one UNet pass per ``scheduler.timesteps`` entry.
    ``condition.hidden_states [B, 77, cross_dim]`` (and ``time_vector [B, E]``, passed as ``class_labels``)
    condition it; with ``null_condition [B, 77, cross_dim]`` and ``guidance_scale != 1`` it is guided.
    ``generator`` reaches schedulers that add noise (``step(..., generator=)``); ``on_step`` runs after
    each step (a progress bar's ``update``).
    """
    import inspect

    device, dtype = noise.device, noise.dtype
    hidden = condition.hidden_states.to(device=device, dtype=dtype)
    if hidden.shape[0] != noise.shape[0]:
        raise ValueError(f"{hidden.shape[0]} conditions for {noise.shape[0]} noise rows; give one condition per image")
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
    step_kwargs = {"generator": generator} if "generator" in inspect.signature(scheduler.step).parameters else {}

    latents = noise * scheduler.init_noise_sigma
    with autocast_context(device, autocast):
        for t in scheduler.timesteps:
            model_input = torch.cat([latents, latents]) if guided else latents
            model_input = scheduler.scale_model_input(model_input, t)
            eps = unet(model_input, t, encoder_hidden_states=hidden, class_labels=time_vector).sample
            if guided:
                eps_null, eps_cond = eps.chunk(2)
                eps = eps_null + guidance_scale * (eps_cond - eps_null)
            latents = scheduler.step(eps.to(latents.dtype), t, latents, **step_kwargs).prev_sample
            if on_step is not None:
                on_step()
    return latents


@torch.no_grad()
def decode(vae, latents: Tensor, autocast: bool | None = None) -> Tensor:
    """Latents ``[B, 4, h, w]`` → float32 images ``[B, 3, 8h, 8w]`` in about ``[-1, 1]`` (not clamped)."""
    with autocast_context(latents.device, autocast):
        return vae.decode(latents.to(vae.dtype) / vae.config.scaling_factor).sample.float()


@torch.no_grad()
def generate_images(
    unet,
    vae,
    scheduler_config: Mapping,
    condition: Condition,
    null_condition: Tensor | None,
    *,
    sampler=DEFAULT_SAMPLER,
    num_inference_steps: int = DEFAULT_STEPS,
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
        The noise schedule's config (``pipeline.scheduler.config``) the sampler is built from.
    sampler
        ``"ddim"``, ``"plms"``, a diffusers scheduler class name or a scheduler instance (:func:`build_sampler`);
        default DPM-Solver++ with 20 steps.
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
    shape = latent_shape(unet, vae, image_size)
    device = next(unet.parameters()).device
    dtype = next(unet.parameters()).dtype

    scheduler = build_sampler(scheduler_config, sampler)
    scheduler.set_timesteps(num_inference_steps, device=device)
    generators = seed_generators(seeds)
    noise = initial_noise(batch, shape, generators, device, dtype)
    latents = denoise(unet, scheduler, noise, condition, null_condition, guidance_scale, generator=generators, autocast=autocast)
    return (decode(vae, latents, autocast) / 2 + 0.5).clamp(0, 1)
