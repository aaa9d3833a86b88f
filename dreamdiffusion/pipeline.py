"""``DreamDiffusionPipeline``: the stage-2 artifact, EEG in → images out, as a diffusers pipeline.

A pipeline folder (written atomically by :meth:`DreamDiffusionPipeline.save_pretrained`)::

    pipeline/
      model_index.json   diffusers' index: the pipeline class and each component's library and class
      checksums.json     SHA-256 of every weights file (a changed or added weights file is refused)
      README.md          model card: base model, EEG encoder preset, data, metrics of the run
      unet/              UNet2DConditionModel (fine-tuned cross-attention)
      vae/               AutoencoderKL (frozen)
      scheduler/         the sampler (stage 2 writes DPM-Solver++ on the training noise schedule)
      condition_model/   EEGConditionModel: config.json + diffusion_pytorch_model.safetensors + checksums.json

It loads with ``DreamDiffusionPipeline.from_pretrained(folder or hub id)`` and, once ``dreamdiffusion.pipeline``
is imported, with ``diffusers.DiffusionPipeline.from_pretrained``. Weights are read from safetensors only.
Folders of the first format (``condition/`` with ``condition.json``) load through
``DreamDiffusionPipeline.from_pretrained`` and should be saved again.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import diffusers
import numpy as np
import PIL.Image
import torch
from diffusers import DiffusionPipeline
from diffusers.image_processor import VaeImageProcessor
from diffusers.utils import BaseOutput
from torch import Tensor

from dreamdiffusion import progress
from dreamdiffusion.atomic import atomic_dir, write_text
from dreamdiffusion.checksums import verified, verify_checksums, write_checksums
from dreamdiffusion.generation import DEFAULT_STEPS, decode, denoise, initial_noise, latent_shape
from dreamdiffusion.model_card import model_card
from dreamdiffusion.models.backbones import low_cpu_mem_usage, native_image_size, vae_scale_factor
from dreamdiffusion.models.condition import Condition, EEGConditionModel

PARTS = {
    "unet": "unet/config.json",
    "vae": "vae/config.json",
    "scheduler": "scheduler/scheduler_config.json",
    "condition_model": "condition_model/config.json",
}
LEGACY_PARTS = {name: part for name, part in PARTS.items() if name != "condition_model"} | {"condition": "condition/condition.json"}
REEXPORT = "re-export it from stage 2 (dreamdiffusion fit -c configs/finetune.yaml) or save the loaded pipeline again"
OUTPUT_TYPES = ("pil", "np", "pt", "latent")


@dataclass
class DreamDiffusionPipelineOutput(BaseOutput):
    """``images``: ``B × num_images_per_eeg`` images, EEG ``j``'s image ``k`` at ``j * num_images_per_eeg + k``:
    PIL images, a ``[N, H, W, 3]`` array in [0, 1], a ``[N, 3, H, W]`` tensor in [0, 1] or latents."""

    images: list[PIL.Image.Image] | np.ndarray | Tensor


@contextlib.contextmanager
def _quiet_loading_bar():
    """diffusers' "Loading pipeline components" bar only where someone watches a terminal (not in logs or pipes)
    and did not ask for quiet (:mod:`dreamdiffusion.progress`)."""
    from diffusers.utils import logging as diffusers_logging

    was_on = diffusers_logging.is_progress_bar_enabled()
    if was_on and not progress.enabled():
        diffusers_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_on:
            diffusers_logging.enable_progress_bar()


class DreamDiffusionPipeline(DiffusionPipeline):
    """UNet + VAE + scheduler + EEG condition model (DreamDiffusion Sec. 3.3): EEG ``[B, 128, 512]`` → images.

    The sampler is the scheduler the pipeline holds; swap it as with any diffusers pipeline::

        pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
    """

    model_cpu_offload_seq = "condition_model->unet->vae"
    # Not optional: listed so that diffusers' generic loader hands a folder without it to __init__, whose error
    # says what to do, instead of failing with a list of component names.
    _optional_components = ["condition_model"]

    def __init__(self, unet, vae, scheduler, condition_model: EEGConditionModel | None) -> None:
        if condition_model is None:
            raise ValueError(
                "no condition_model: a pipeline folder of the first format (condition/ with condition.json) loads "
                "only through dreamdiffusion.pipeline.DreamDiffusionPipeline.from_pretrained; save it again with "
                "save_pretrained to get the current layout, or " + REEXPORT
            )
        super().__init__()
        self.register_modules(unet=unet, vae=vae, scheduler=scheduler, condition_model=condition_model)
        self.image_processor = VaeImageProcessor(vae_scale_factor=vae_scale_factor(vae))

    @property
    def vae_scale_factor(self) -> int:
        return vae_scale_factor(self.vae)

    @property
    def image_size(self) -> int:
        """Native image side in pixels."""
        return native_image_size(self.unet, self.vae)

    def eval(self) -> DreamDiffusionPipeline:
        """Every model in eval mode (diffusers loads them so; a pipeline built from training modules may not be)."""
        for module in (self.unet, self.vae, self.condition_model):
            module.eval()
        return self

    # ------------------------------------------------------------------------------------ saving
    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        safe_serialization: bool = True,
        variant: str | None = None,
        max_shard_size: int | str | None = None,
        push_to_hub: bool = False,
        *,
        base_model: str | None = None,
        data: str | None = None,
        metrics: Mapping[str, float] | None = None,
        **kwargs,
    ) -> Path:
        """Write the pipeline to ``save_directory`` (a reader never sees a half-written folder), with its
        checksums and a model card (``base_model``, ``data``, ``metrics`` of the run, when given).

        ``push_to_hub=True`` then uploads the folder (``repo_id``, ``token``, ``private``, ``commit_message``,
        ``create_pr`` in ``kwargs``). Weights are always safetensors.
        """
        if not safe_serialization:
            raise ValueError("DreamDiffusionPipeline is saved as safetensors only (pickled weights are never written)")
        if variant is not None:
            raise ValueError(f"variant={variant!r}: a pipeline folder holds one set of weights; save another folder instead")
        folder = Path(save_directory)
        needed = sum(
            p.numel() * p.element_size() for m in (self.unet, self.vae, self.condition_model) for p in m.state_dict().values()
        )
        with atomic_dir(folder, needed=needed) as tmp:
            super().save_pretrained(tmp, safe_serialization=True, max_shard_size=max_shard_size)
            write_checksums(tmp)
            write_text(tmp / "README.md", self.model_card(base_model=base_model, data=data, metrics=metrics))
        if push_to_hub:
            self._push_folder(folder, kwargs.pop("repo_id", folder.name), **kwargs)
        return folder

    def push_to_hub(
        self,
        repo_id: str,
        commit_message: str | None = None,
        private: bool | None = None,
        token: str | None = None,
        create_pr: bool = False,
        *,
        base_model: str | None = None,
        data: str | None = None,
        metrics: Mapping[str, float] | None = None,
        **kwargs,
    ):
        """Save to a temporary folder (with this pipeline's model card, not a generic one) and upload it."""
        with tempfile.TemporaryDirectory() as tmp:
            folder = self.save_pretrained(Path(tmp) / "pipeline", base_model=base_model, data=data, metrics=metrics, **kwargs)
            return self._push_folder(folder, repo_id, commit_message=commit_message, private=private, token=token,
                                     create_pr=create_pr)

    def _push_folder(self, folder: Path, repo_id: str, commit_message=None, private=None, token=None, create_pr=False):
        from huggingface_hub import create_repo

        repo_id = create_repo(repo_id, private=private, token=token, exist_ok=True).repo_id
        return self._upload_folder(folder, repo_id, token=token, commit_message=commit_message, create_pr=create_pr)

    def model_card(self, base_model: str | None = None, data: str | None = None, metrics: Mapping[str, float] | None = None) -> str:
        """The ``README.md`` :meth:`save_pretrained` writes."""
        config = self.condition_model.condition_config
        return model_card(
            encoder=config.encoder, cross_attention_dim=config.cross_attention_dim, clip_dim=config.clip_dim,
            scheduler=type(self.scheduler).__name__, image_size=self.image_size,
            base_model=base_model, data=data, metrics=metrics,
        )

    # ------------------------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs) -> DreamDiffusionPipeline:
        """Load a pipeline folder or hub id (``torch_dtype``, ``local_files_only``, ``cache_dir``, ``revision``,
        ``token`` as in diffusers).

        Before anything is read: a missing part is an error that names it, every weights file must match
        ``checksums.json``, and weights come from safetensors only (a pickle is never unpickled).
        """
        path = str(pretrained_model_name_or_path)
        if os.path.isdir(path):
            folder = Path(path)
        elif os.path.exists(path) or path.count("/") != 1:
            raise FileNotFoundError(f"{path} is neither a pipeline folder nor a hub id (user/repo)")
        else:
            download = {k: kwargs[k] for k in ("cache_dir", "local_files_only", "revision", "token", "force_download", "proxies")
                        if k in kwargs}
            try:
                folder = Path(cls.download(path, use_safetensors=True, **download))
            except Exception as e:  # noqa: BLE001 - hub errors are many types; the user needs the id and the cause
                raise FileNotFoundError(
                    f"{path} is not a local folder, and as a hub id it could not be fetched ({type(e).__name__}: {e})"
                ) from None
        if not (folder / "model_index.json").is_file():
            raise FileNotFoundError(
                f"{folder} is not a DreamDiffusion pipeline folder (no model_index.json); "
                "stage 2 writes one to <run_dir>/finetune/pipeline"
            )
        index = json.loads((folder / "model_index.json").read_text())
        if "condition" in index and "condition_model" not in index:
            return cls._from_legacy_folder(folder, kwargs.get("dtype", kwargs.get("torch_dtype")))
        missing = [f"{name} ({part})" for name, part in PARTS.items() if not (folder / part).is_file()]
        if missing:
            raise FileNotFoundError(f"pipeline folder {folder} is incomplete: missing {', '.join(missing)}; {REEXPORT}")
        verify_checksums(folder, REEXPORT)
        kwargs["use_safetensors"] = True
        # Without accelerate diffusers falls back to a plain load anyway, after a warning on every load.
        kwargs.setdefault("low_cpu_mem_usage", low_cpu_mem_usage())
        for key in ("cache_dir", "revision", "force_download", "proxies"):
            kwargs.pop(key, None)
        with verified(folder), _quiet_loading_bar():
            pipe = super().from_pretrained(str(folder), **kwargs)
        pipe.register_to_config(_name_or_path=path)
        return pipe.eval()

    @classmethod
    def _from_legacy_folder(cls, folder: Path, torch_dtype: torch.dtype | None) -> DreamDiffusionPipeline:
        """The first format (``condition/``, the training DDPM in ``scheduler/``, no checksums.json): loaded part
        by part, with DDIM on its noise schedule as the sampler (what that format sampled with by default)."""
        from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel

        missing = [f"{name} ({part})" for name, part in LEGACY_PARTS.items() if not (folder / part).is_file()]
        if missing:
            raise FileNotFoundError(f"pipeline folder {folder} is incomplete: missing {', '.join(missing)}; {REEXPORT}")
        kwargs = {"local_files_only": True, "use_safetensors": True, "low_cpu_mem_usage": low_cpu_mem_usage()}
        if torch_dtype is not None:
            kwargs["torch_dtype"] = torch_dtype
        unet = UNet2DConditionModel.from_pretrained(folder / "unet", **kwargs)
        vae = AutoencoderKL.from_pretrained(folder / "vae", **kwargs)
        scheduler = DDIMScheduler.from_pretrained(folder / "scheduler", local_files_only=True)
        condition_model = EEGConditionModel.from_pretrained(folder / "condition", torch_dtype=torch_dtype)
        return cls(unet, vae, scheduler, condition_model).eval()

    # ------------------------------------------------------------------------------------ sampling
    @torch.no_grad()
    def encode_eeg(self, eeg: Tensor) -> Condition:
        """EEG ``[B, 128, 512]`` → :class:`~dreamdiffusion.models.condition.Condition` for the UNet."""
        return self.condition_model(eeg.to(self.device, self.condition_model.dtype))

    @torch.no_grad()
    def predict_noise(self, latents: Tensor, timestep: Tensor | int, condition: Condition) -> Tensor:
        """One UNet evaluation: ε̂ for ``latents [B, 4, h, w]`` at ``timestep`` under ``condition``."""
        return self.unet(
            latents,
            timestep,
            encoder_hidden_states=condition.hidden_states,
            class_labels=condition.time_vector,
        ).sample

    def check_inputs(self, eeg: Tensor, num_images_per_eeg: int, num_inference_steps: int, generator, output_type: str) -> Tensor:
        """The EEG as ``[B, C, T]`` float; every bad argument is an error that says what was expected."""
        eeg = torch.as_tensor(eeg, dtype=torch.float32)
        if eeg.dim() == 2:
            eeg = eeg.unsqueeze(0)
        encoder = self.condition_model.condition_config.encoder
        if eeg.dim() != 3 or eeg.shape[1:] != (encoder.n_chans, encoder.n_times):
            raise ValueError(
                f"eeg must be [B, {encoder.n_chans}, {encoder.n_times}] or [{encoder.n_chans}, {encoder.n_times}], "
                f"got shape {tuple(eeg.shape)}"
            )
        if num_images_per_eeg < 1:
            raise ValueError(f"num_images_per_eeg must be >= 1, got {num_images_per_eeg}")
        if num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be >= 1, got {num_inference_steps}")
        n = eeg.shape[0] * num_images_per_eeg
        if isinstance(generator, list) and len(generator) != n:
            raise ValueError(
                f"got {len(generator)} generators for {eeg.shape[0]} EEG × {num_images_per_eeg} images = {n}; "
                "pass one generator per image (EEG j's image k uses generator[j * num_images_per_eeg + k])"
            )
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {', '.join(OUTPUT_TYPES)}, got {output_type!r}")
        return eeg

    @torch.no_grad()
    def __call__(
        self,
        eeg: Tensor,
        num_images_per_eeg: int = 1,
        num_inference_steps: int = DEFAULT_STEPS,
        guidance_scale: float = 1.0,
        generator: torch.Generator | list[torch.Generator] | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        image_size: int | None = None,
        autocast: bool | None = None,
    ) -> DreamDiffusionPipelineOutput | tuple:
        """EEG ``[B, 128, 512]`` (or one ``[128, 512]`` window) → ``B × num_images_per_eeg`` images.

        Parameters
        ----------
        eeg
            Band-passed (5–95 Hz), per-channel standardised EEG windows of 512 samples.
        num_images_per_eeg
            Images per EEG window; EEG ``j``'s image ``k`` is output ``j * num_images_per_eeg + k``.
        num_inference_steps
            Steps of ``self.scheduler`` (the sampler is whatever scheduler the pipeline holds; stage 2 writes
            DPM-Solver++, for which the default 20 steps are meant).
        guidance_scale
            Classifier-free guidance against the learned null condition (1: none).
        generator
            A ``torch.Generator``, or one per image: then an image does not depend on the batch it is in.
        output_type
            ``"pil"``, ``"np"`` (``[N, H, W, 3]`` in [0, 1]), ``"pt"`` (``[N, 3, H, W]`` in [0, 1]) or ``"latent"``.
        image_size, autocast
            Output side in pixels (default: native); bf16 autocast (``None``: on for CUDA with bf16).
        """
        eeg = self.check_inputs(eeg, num_images_per_eeg, num_inference_steps, generator, output_type)
        device = self.device
        dtype = self.unet.dtype

        condition = self.encode_eeg(eeg)
        hidden = condition.hidden_states.repeat_interleave(num_images_per_eeg, dim=0)
        time_vector = condition.time_vector
        if time_vector is not None:
            time_vector = time_vector.repeat_interleave(num_images_per_eeg, dim=0)
        condition = Condition(None, hidden, time_vector)
        null = self.condition_model.null(hidden.shape[0]) if guidance_scale != 1.0 else None

        noise = initial_noise(hidden.shape[0], latent_shape(self.unet, self.vae, image_size), generator, device, dtype)
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        with self.progress_bar(total=len(self.scheduler.timesteps)) as progress:
            latents = denoise(
                self.unet, self.scheduler, noise, condition, null, guidance_scale,
                generator=generator, autocast=autocast, on_step=progress.update,
            )
        if output_type == "latent":
            images = latents
        else:
            images = self.image_processor.postprocess(decode(self.vae, latents, autocast), output_type=output_type)
        self.maybe_free_model_hooks()
        if not return_dict:
            return (images,)
        return DreamDiffusionPipelineOutput(images=images)


# diffusers.DiffusionPipeline.from_pretrained looks the class named in model_index.json up in the diffusers
# namespace; registering it there lets a folder load through the generic entry point without running any code
# from the folder (diffusers' alternative, a pipeline .py in the folder, needs trust_remote_code).
if getattr(diffusers, DreamDiffusionPipeline.__name__, None) is None:
    setattr(diffusers, DreamDiffusionPipeline.__name__, DreamDiffusionPipeline)


def to_pil(images: Tensor) -> list[PIL.Image.Image]:
    """``[B, 3, H, W]`` in ``[0, 1]`` → ``B`` RGB PIL images (8 bits, rounded)."""
    array = (images.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return [PIL.Image.fromarray(a) for a in array]


def build_tiny_pipeline(folder: str | os.PathLike, seed: int = 0) -> Path:
    """Write a tiny random pipeline (tiny SD of :func:`~dreamdiffusion.models.backbones.build_tiny_sd`, 64 px,
    DPM-Solver++ on its noise schedule as stage 2 writes, and a ``"tiny"`` EEG condition model, cross-attention
    and CLIP dimension 32) to ``folder``.

    For tests and benchmarks of sampling and evaluation; stage 2 writes real pipelines.
    """
    from dreamdiffusion.generation import default_scheduler
    from dreamdiffusion.models.backbones import build_tiny_sd, load_sd
    from dreamdiffusion.models.condition import ConditionConfig
    from dreamdiffusion.models.mae import preset

    with tempfile.TemporaryDirectory() as tmp:
        sd = load_sd(str(build_tiny_sd(Path(tmp) / "sd", seed=seed)), local_files_only=True)
        torch.manual_seed(seed)
        condition = EEGConditionModel(ConditionConfig(preset("tiny"), cross_attention_dim=32, clip_dim=32))
        scheduler = default_scheduler(sd.scheduler.config)
        return DreamDiffusionPipeline(sd.unet, sd.vae, scheduler, condition).save_pretrained(
            folder, base_model="tiny random Stable Diffusion (dreamdiffusion.models.backbones.build_tiny_sd)",
            data="none (random weights)",
        )
