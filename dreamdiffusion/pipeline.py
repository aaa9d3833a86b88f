"""``DreamDiffusionPipeline``: the stage-2 artifact, EEG in → images out.

A pipeline folder (written atomically by :meth:`DreamDiffusionPipeline.save_pretrained`)::

    pipeline/
      model_index.json   what the folder holds (and the package version that wrote it)
      unet/              UNet2DConditionModel (fine-tuned cross-attention)
      vae/               AutoencoderKL (frozen)
      scheduler/         the training noise schedule (DDPM); samplers are built from its config
      condition/         EEGConditionModel: condition.safetensors + condition.json
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import Tensor

from dreamdiffusion import __version__
from dreamdiffusion.atomic import atomic_dir
from dreamdiffusion.models.backbones import native_image_size, vae_scale_factor
from dreamdiffusion.models.condition import Condition, EEGConditionModel

PARTS = {
    "unet": "unet/config.json",
    "vae": "vae/config.json",
    "scheduler": "scheduler/scheduler_config.json",
    "condition": "condition/condition.json",
}


class DreamDiffusionPipeline:
    """UNet + VAE + noise scheduler + EEG condition model, saved and loaded as one folder."""

    def __init__(self, unet, vae, scheduler, condition_model: EEGConditionModel) -> None:
        self.unet = unet
        self.vae = vae
        self.scheduler = scheduler
        self.condition_model = condition_model

    @property
    def vae_scale_factor(self) -> int:
        return vae_scale_factor(self.vae)

    @property
    def image_size(self) -> int:
        """Native image side in pixels."""
        return native_image_size(self.unet, self.vae)

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    def to(self, device: torch.device | str) -> "DreamDiffusionPipeline":
        for module in (self.unet, self.vae, self.condition_model):
            module.to(device)
        return self

    def eval(self) -> "DreamDiffusionPipeline":
        for module in (self.unet, self.vae, self.condition_model):
            module.eval()
        return self

    def save_pretrained(self, folder: str | os.PathLike) -> Path:
        """Write the whole pipeline to ``folder``; a reader never sees a half-written folder."""
        folder = Path(folder)
        needed = sum(p.numel() * p.element_size() for m in (self.unet, self.vae, self.condition_model) for p in m.state_dict().values())
        with atomic_dir(folder, needed=needed) as tmp:
            self.unet.save_pretrained(tmp / "unet")
            self.vae.save_pretrained(tmp / "vae")
            self.scheduler.save_pretrained(tmp / "scheduler")
            self.condition_model.save_pretrained(tmp / "condition")
            index = {
                "_class_name": type(self).__name__,
                "_dreamdiffusion_version": __version__,
                "unet": ["diffusers", type(self.unet).__name__],
                "vae": ["diffusers", type(self.vae).__name__],
                "scheduler": ["diffusers", type(self.scheduler).__name__],
                "condition": ["dreamdiffusion", type(self.condition_model).__name__],
            }
            (tmp / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
        return folder

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike, torch_dtype: torch.dtype | None = None) -> "DreamDiffusionPipeline":
        """Load a folder written by :meth:`save_pretrained`; a missing part is an error that names it."""
        from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel

        folder = Path(folder)
        if not (folder / "model_index.json").is_file():
            raise FileNotFoundError(
                f"{folder} is not a DreamDiffusion pipeline folder (no model_index.json); "
                "stage 2 writes one to <run_dir>/finetune/pipeline"
            )
        missing = [f"{name} ({path})" for name, path in PARTS.items() if not (folder / path).is_file()]
        if missing:
            raise FileNotFoundError(
                f"pipeline folder {folder} is incomplete: missing {', '.join(missing)}; re-export it from stage 2"
            )
        kwargs = {"local_files_only": True}
        if torch_dtype is not None:
            kwargs["torch_dtype"] = torch_dtype
        unet = UNet2DConditionModel.from_pretrained(folder / "unet", **kwargs)
        vae = AutoencoderKL.from_pretrained(folder / "vae", **kwargs)
        scheduler = DDPMScheduler.from_pretrained(folder / "scheduler", local_files_only=True)
        condition_model = EEGConditionModel.from_pretrained(folder / "condition")
        if torch_dtype is not None:
            condition_model.to(torch_dtype)
        return cls(unet, vae, scheduler, condition_model).eval()

    @torch.no_grad()
    def encode_eeg(self, eeg: Tensor) -> Condition:
        """EEG ``[B, 128, 512]`` → :class:`~dreamdiffusion.models.condition.Condition` for the UNet."""
        return self.condition_model(eeg.to(self.device))

    @torch.no_grad()
    def predict_noise(self, latents: Tensor, timestep: Tensor | int, condition: Condition) -> Tensor:
        """One UNet evaluation: ε̂ for ``latents [B, 4, h, w]`` at ``timestep`` under ``condition``."""
        return self.unet(
            latents,
            timestep,
            encoder_hidden_states=condition.hidden_states,
            class_labels=condition.time_vector,
        ).sample

    @torch.no_grad()
    def generate(
        self,
        eeg: Tensor,
        seeds: list[int],
        *,
        sampler: str = "ddim",
        num_inference_steps: int = 50,
        guidance_scale: float = 1.0,
        image_size: int | None = None,
        autocast: bool | None = None,
    ) -> Tensor:
        """EEG ``[B, 128, 512]`` → images ``[B, 3, S, S]`` in ``[0, 1]``; ``seeds[i]`` seeds item ``i``'s noise."""
        from dreamdiffusion.generation import generate_images

        condition = self.encode_eeg(eeg)
        null = self.condition_model.null(len(seeds)) if guidance_scale != 1.0 else None
        return generate_images(
            self.unet, self.vae, self.scheduler.config, condition, null,
            sampler=sampler, num_inference_steps=num_inference_steps, guidance_scale=guidance_scale,
            seeds=seeds, image_size=image_size, autocast=autocast,
        )

    def __call__(
        self,
        eeg: Tensor,
        num_samples: int = 1,
        sampler: str = "ddim",
        num_inference_steps: int = 50,
        guidance_scale: float = 1.0,
        seed: int = 0,
        image_size: int | None = None,
        autocast: bool | None = None,
    ) -> list[list["PIL.Image.Image"]]:  # noqa: F821
        """EEG ``[B, 128, 512]`` (or one ``[128, 512]`` window) → ``B`` lists of ``num_samples`` RGB PIL images.

        Sample ``k`` of item ``j`` is seeded with ``derive_seed(seed, j, k)``, so the images of one EEG do
        not change with the number of EEGs passed together.
        """
        from dreamdiffusion.generation import derive_seed

        eeg = torch.as_tensor(eeg, dtype=torch.float32)
        if eeg.dim() == 2:
            eeg = eeg.unsqueeze(0)
        if eeg.dim() != 3:
            raise ValueError(f"eeg must be [B, 128, 512] or [128, 512], got shape {tuple(eeg.shape)}")
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        n = eeg.shape[0]
        out: list[list] = [[] for _ in range(n)]
        for k in range(num_samples):
            seeds = [derive_seed(seed, j, k) for j in range(n)]
            images = self.generate(
                eeg, seeds, sampler=sampler, num_inference_steps=num_inference_steps,
                guidance_scale=guidance_scale, image_size=image_size, autocast=autocast,
            )
            for j, image in enumerate(to_pil(images)):
                out[j].append(image)
        return out


def to_pil(images: Tensor) -> list["PIL.Image.Image"]:  # noqa: F821
    """``[B, 3, H, W]`` in ``[0, 1]`` → ``B`` RGB PIL images (8 bits, rounded)."""
    from PIL import Image

    array = (images.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(a) for a in array]


def build_tiny_pipeline(folder: str | os.PathLike, seed: int = 0) -> Path:
    """Write a tiny random pipeline (tiny SD of :func:`~dreamdiffusion.models.backbones.build_tiny_sd`, 64 px,
    and a ``"tiny"`` EEG condition model, cross-attention and CLIP dimension 32) to ``folder``.

    For tests and benchmarks of sampling and evaluation; stage 2 writes real pipelines.
    """
    import tempfile

    from dreamdiffusion.models.backbones import build_tiny_sd, load_sd
    from dreamdiffusion.models.condition import ConditionConfig
    from dreamdiffusion.models.mae import preset

    with tempfile.TemporaryDirectory() as tmp:
        sd = load_sd(str(build_tiny_sd(Path(tmp) / "sd", seed=seed)), local_files_only=True)
        torch.manual_seed(seed)
        condition = EEGConditionModel(ConditionConfig(preset("tiny"), cross_attention_dim=32, clip_dim=32))
        return DreamDiffusionPipeline(sd.unet, sd.vae, sd.scheduler, condition).save_pretrained(folder)
