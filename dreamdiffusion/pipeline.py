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
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def image_size(self) -> int:
        """Native image side in pixels."""
        return int(self.unet.config.sample_size) * self.vae_scale_factor

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
        with atomic_dir(folder) as tmp:
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
