"""The models that come from outside: Stable Diffusion 1.5 parts and the CLIP image tower.

Each is named in config by a local folder or a hub id and loaded by the library that owns it
(``from_pretrained``). :func:`build_tiny_sd` and :func:`build_tiny_clip` write small random versions of
the very same classes (seeded, ``save_pretrained``) that tests and the demo load back through the same
loaders.

Stable Diffusion folder (diffusers layout)::

    <sd>/unet/       UNet2DConditionModel   (SD-1.5: cross_attention_dim 768, latents 4 x 64 x 64 at 512 px)
    <sd>/vae/        AutoencoderKL          (scaling_factor 0.18215, 8x down-sampling)
    <sd>/scheduler/  DDPMScheduler config   (1000 steps, betas 0.00085 -> 0.012)

CLIP folder (transformers layout): ``CLIPVisionModelWithProjection`` weights + ``preprocessor_config.json``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from dreamdiffusion.models.provenance import RANDOM, write_folder_provenance

if TYPE_CHECKING:
    import diffusers

    from dreamdiffusion.models.tiny_clip_warmup import ClipWarmup

SD15 = "stable-diffusion-v1-5/stable-diffusion-v1-5"
CLIP_VIT_L14 = "openai/clip-vit-large-patch14"


@dataclass
class SDComponents:
    """The Stable Diffusion parts this project uses (no text encoder or tokenizer)."""

    unet: diffusers.UNet2DConditionModel
    vae: diffusers.AutoencoderKL
    scheduler: diffusers.DDPMScheduler

    @property
    def vae_scale_factor(self) -> int:
        return vae_scale_factor(self.vae)

    @property
    def image_size(self) -> int:
        return native_image_size(self.unet, self.vae)


def vae_scale_factor(vae) -> int:
    """Pixels per latent cell along one side (8 for SD-1.5)."""
    return 2 ** (len(vae.config.block_out_channels) - 1)


def native_image_size(unet, vae) -> int:
    """Native image side in pixels: the UNet's latent ``sample_size`` × :func:`vae_scale_factor`."""
    return int(unet.config.sample_size) * vae_scale_factor(vae)


def low_cpu_mem_usage() -> bool:
    """diffusers' ``low_cpu_mem_usage`` as it can be honoured: without accelerate diffusers loads plainly anyway,
    after a warning on every load unless the argument says False."""
    from diffusers.utils import is_accelerate_available

    return is_accelerate_available()


def _check_local(source: str, parts: list[str], what: str) -> None:
    """A local folder must hold every part; say which is missing and how to get it."""
    root = Path(source)
    if not root.exists():
        looks_like_hub_id = source.count("/") == 1 and not source.startswith((".", "/", "~"))
        if not looks_like_hub_id:
            raise FileNotFoundError(f"{what} folder {source} does not exist; run `make weights` or fix the path")
        return
    missing = [p for p in parts if not (root / p).exists()]
    if missing:
        raise FileNotFoundError(
            f"{what} folder {source} is incomplete: missing {', '.join(missing)}. "
            f"Expected a diffusers/transformers layout ({', '.join(parts)}); re-download it with "
            "`make weights` or save it with save_pretrained"
        )


def load_sd(
    source: str = SD15,
    local_files_only: bool = False,
    torch_dtype: torch.dtype | None = None,
    unet_overrides: dict | None = None,
) -> SDComponents:
    """UNet, VAE and noise scheduler from a diffusers-layout folder or hub id.

    ``unet_overrides``: UNet config entries replaced at load time, e.g. ``{"class_embed_type": "identity"}``
    for the authors' time-condition vector (adds no parameter, so the stored weights still load strictly).
    """
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel

    _check_local(source, ["unet/config.json", "vae/config.json", "scheduler/scheduler_config.json"], "Stable Diffusion")
    kwargs = {"local_files_only": local_files_only, "low_cpu_mem_usage": low_cpu_mem_usage()}
    if torch_dtype is not None:
        kwargs["torch_dtype"] = torch_dtype
    unet = UNet2DConditionModel.from_pretrained(source, subfolder="unet", **kwargs, **(unet_overrides or {}))
    vae = AutoencoderKL.from_pretrained(source, subfolder="vae", **kwargs)
    scheduler = DDPMScheduler.from_pretrained(source, subfolder="scheduler", local_files_only=local_files_only)
    return SDComponents(unet=unet, vae=vae, scheduler=scheduler)


def load_clip(source: str = CLIP_VIT_L14, local_files_only: bool = False):
    """``(CLIPVisionModelWithProjection, CLIPImageProcessor)`` from a folder or hub id."""
    from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

    _check_local(source, ["config.json", "preprocessor_config.json"], "CLIP")
    model = CLIPVisionModelWithProjection.from_pretrained(source, local_files_only=local_files_only)
    processor = CLIPImageProcessor.from_pretrained(source, local_files_only=local_files_only)
    return model, processor


def clip_projection_dim(source: str = CLIP_VIT_L14, local_files_only: bool = False) -> int:
    """Size of the CLIP image embedding (``projection_dim``; 768 for ViT-L/14), read from the config only."""
    from transformers import CLIPVisionConfig

    _check_local(source, ["config.json"], "CLIP")
    return int(CLIPVisionConfig.from_pretrained(source, local_files_only=local_files_only).projection_dim)


def model_fingerprint(source: str, subfolder: str = "") -> str:
    """A string that changes when a model's weights change: its folder's ``config.json`` plus the name,
    size and modification time (ns) of each weights file; a hub id stands for itself."""
    root = Path(source) / subfolder
    if not root.is_dir():
        return source if not subfolder else f"{source}/{subfolder}"
    parts = [json.dumps(json.loads((root / "config.json").read_text()), sort_keys=True)]
    for f in sorted(root.glob("*.safetensors")) + sorted(root.glob("*.bin")):
        stat = f.stat()
        parts.append(f"{f.name}:{stat.st_size}:{stat.st_mtime_ns}")
    return "|".join(parts)


def clip_fingerprint(source: str) -> str:
    """:func:`model_fingerprint` of a CLIP folder or hub id."""
    return model_fingerprint(source)


def build_tiny_sd(folder: str | os.PathLike, seed: int = 0, image_size: int = 64, cross_attention_dim: int = 32) -> Path:
    """Write a tiny random Stable Diffusion (same classes as SD-1.5; weights marked ``provenance: random``) to
    ``folder`` and return it.

    The VAE down-samples 8× like SD's (four blocks), so ``image_size`` 64 gives 4 × 8 × 8 latents.
    """
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel

    folder = Path(folder)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=image_size // 8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=8,
        norm_num_groups=8,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 16, 16, 16),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=image_size,
    )
    scheduler = DDPMScheduler(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        clip_sample=False, steps_offset=1,
    )
    unet.save_pretrained(folder / "unet")
    vae.save_pretrained(folder / "vae")
    scheduler.save_pretrained(folder / "scheduler")
    write_folder_provenance(folder, RANDOM)
    return folder


def build_tiny_clip(
    folder: str | os.PathLike,
    seed: int = 0,
    image_size: int = 32,
    projection_dim: int = 32,
    warmup: ClipWarmup | None = None,
) -> Path:
    """Write a tiny random ``CLIPVisionModelWithProjection`` and its image processor to ``folder``.

    ``warmup`` (a :class:`~dreamdiffusion.models.tiny_clip_warmup.ClipWarmup`): train it first with the
    contrastive warm-up on synthetic pictures of its own, so its embeddings separate the synthetic classes.
    """
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    folder = Path(folder)
    torch.manual_seed(seed)
    config = CLIPVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        image_size=image_size, patch_size=8, projection_dim=projection_dim,
    )
    model = CLIPVisionModelWithProjection(config)
    processor = CLIPImageProcessor(size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size})
    provenance = RANDOM
    if warmup is not None:
        from dreamdiffusion.models.tiny_clip_warmup import warm_up_tiny_clip, warmup_provenance

        warm_up_tiny_clip(model, processor, warmup)
        provenance = warmup_provenance(warmup)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    write_folder_provenance(folder, provenance)
    return folder
