"""Tiny stage-2 pieces shared by the fine-tuning tests: real tiny SD/CLIP/encoder folders and paired batches.

Batches follow the paired-batch contract (``eeg [B,128,512]``, ``image [B,3,S,S]`` in [-1, 1],
``clip_pixels [B,3,s,s]``, ``label``, ``subject``, ``image_name``, ``index``).
"""

from __future__ import annotations

from pathlib import Path

import torch

from dreamdiffusion.models.backbones import build_tiny_clip, build_tiny_sd
from dreamdiffusion.models.encoder_file import save_encoder
from dreamdiffusion.models.mae import MaskedEEGAutoencoder, preset


def build_weights(root: Path) -> dict[str, str]:
    """Tiny SD (64 px, cross 32), tiny CLIP (32 px, projection 32) and a tiny stage-1 encoder under ``root``."""
    torch.manual_seed(0)
    save_encoder(MaskedEEGAutoencoder(preset("tiny")).encoder, root / "pretrain", preset="tiny", mask_ratio=0.75)
    return {
        "sd_model": str(build_tiny_sd(root / "sd")),
        "clip_model": str(build_tiny_clip(root / "clip")),
        "encoder_dir": str(root / "pretrain"),
    }


def paired_batch(n: int = 4, seed: int = 0, image_size: int = 64, clip_size: int = 32, n_images: int | None = None) -> dict:
    """A hand-made paired batch: item i shows image ``i % n_images``; its EEG carries that image's pattern."""
    g = torch.Generator().manual_seed(seed)
    n_images = n_images or n
    image_of = torch.arange(n) % n_images
    images = torch.rand(n_images, 3, image_size, image_size, generator=g) * 2 - 1
    patterns = torch.randn(n_images, 128, 512, generator=g)
    eeg = patterns[image_of] + 0.1 * torch.randn(n, 128, 512, generator=g)
    image = images[image_of]
    clip_pixels = torch.nn.functional.interpolate(image, size=(clip_size, clip_size), mode="bilinear", align_corners=False)
    return {
        "eeg": eeg.float(),
        "image": image.float(),
        "clip_pixels": clip_pixels.float(),
        "label": image_of.long(),
        "subject": torch.ones(n, dtype=torch.long),
        "image_name": [f"n0000000{int(i)}_{int(i)}" for i in image_of],
        "index": torch.arange(n, dtype=torch.long),
    }
