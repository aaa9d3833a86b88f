"""The model card (``README.md``) a pipeline folder carries: what made it, from what, and how well it did."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from dreamdiffusion import __version__
from dreamdiffusion.models.mae import PRESETS, MAEConfig


def encoder_preset(config: MAEConfig) -> str:
    """The name of the :data:`~dreamdiffusion.models.mae.PRESETS` entry equal to ``config``, else ``"custom"``."""
    return next((name for name, preset in PRESETS.items() if preset == config), "custom")


def model_card(
    *,
    encoder: MAEConfig,
    cross_attention_dim: int,
    clip_dim: int,
    scheduler: str,
    image_size: int,
    base_model: str | None = None,
    data: str | None = None,
    metrics: Mapping[str, float] | None = None,
) -> str:
    """Markdown with a YAML header the Hugging Face Hub reads (``library_name``, ``tags`` and ``base_model`` when
    it is a hub id)."""
    header = ["---", "library_name: diffusers", "tags:", "- dreamdiffusion", "- eeg", "- brain-decoding", "- stable-diffusion"]
    if base_model and re.fullmatch(r"[\w.-]+/[\w.-]+", base_model) and not Path(base_model).exists():  # a hub id
        header.append(f"base_model: {base_model}")
    header.append("---")
    preset = encoder_preset(encoder)
    rows = [
        ("Base model", base_model or "not recorded"),
        ("EEG encoder", (f"preset `{preset}` (embed_dim {encoder.embed_dim}, depth {encoder.depth}, "
                         f"{encoder.num_heads} heads, patch {encoder.patch_size} samples)")),
        ("EEG input", f"{encoder.n_chans} channels × {encoder.n_times} samples"),
        ("Condition", f"77 tokens × {cross_attention_dim} (cross-attention); CLIP head {clip_dim}"),
        ("Scheduler", f"`{scheduler}`"),
        ("Image size", f"{image_size} px"),
        ("Training data", data or "not recorded"),
        ("Written by", f"dreamdiffusion {__version__}"),
    ]
    lines = [
        *header,
        "",
        "# DreamDiffusion pipeline",
        "",
        ("Images from EEG as in DreamDiffusion (Bai et al., 2023): an EEG encoder pre-trained by masked signal "
         "modelling conditions Stable Diffusion through cross-attention."),
        "",
        "| | |",
        "|---|---|",
        *(f"| {key} | {value} |" for key, value in rows),
        "",
        "## Metrics",
        "",
    ]
    if metrics:
        lines += ["| metric | value |", "|---|---|", *(f"| {k} | {v:.4g} |" for k, v in metrics.items()), ""]
    else:
        lines += ["None recorded with this export.", ""]
    lines += [
        "## Use",
        "",
        "```python",
        "from dreamdiffusion.pipeline import DreamDiffusionPipeline",
        "",
        'pipe = DreamDiffusionPipeline.from_pretrained("<this folder or hub id>")',
        f"images = pipe(eeg).images  # eeg: [B, {encoder.n_chans}, {encoder.n_times}] standardised 5-95 Hz EEG",
        "```",
        "",
    ]
    return "\n".join(lines)
