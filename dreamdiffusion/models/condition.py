"""The EEG condition model τθ(y) and the CLIP head h (DreamDiffusion Sec. 3.3–3.4).

::

    eeg [B, 128, 512] --EEGEncoder--> tokens [B, L=128, D]
        tokens --token_mapper Conv1d(L->77, k=1)--> [B, 77, D] --dim_mapper Linear(D->cross_attention_dim)--> [B, 77, 768]
        tokens --clip_token Conv1d(L->1, k=1)--> [B, 1, D] --clip_proj Linear(D->clip_dim)--> [B, 768]     (h, Eq. 3)
        tokens --mean over L--> [B, D] --time_mapper Linear(D->time_embed_dim)--> [B, time_embed_dim]       (optional)

The ``[B, 77, cross_attention_dim]`` condition is the UNet's ``encoder_hidden_states``; the optional time
vector (the authors' code, from MinD-Vis; not in the paper) is added to the timestep embedding through
``class_embed_type="identity"``. ``null_condition`` is a learned unconditional input for condition
dropout and classifier-free guidance.

Stored as ``condition.safetensors`` + ``condition.json`` (architecture and SHA-256 of the weights).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import Tensor, nn

from dreamdiffusion.atomic import sha256, write_safetensors, write_text
from dreamdiffusion.models.encoder_file import load_encoder
from dreamdiffusion.models.mae import EEGEncoder, MAEConfig
from dreamdiffusion.models.strict_load import load_strict

WEIGHTS = "condition.safetensors"
CONFIG = "condition.json"
FORMAT = "dreamdiffusion.eeg_condition/1"


@dataclass(frozen=True)
class ConditionConfig:
    """Everything needed to rebuild :class:`EEGConditionModel`; dimensions come from the loaded UNet/CLIP."""

    encoder: MAEConfig = field(default_factory=MAEConfig)
    cross_attention_dim: int = 768
    clip_dim: int = 768
    n_condition_tokens: int = 77
    time_embed_dim: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ConditionConfig":
        data = dict(data)
        return cls(encoder=MAEConfig(**data.pop("encoder")), **data)


@dataclass
class Condition:
    """Output of :class:`EEGConditionModel`: encoder tokens, UNet condition and optional time vector."""

    tokens: Tensor  # [B, L, D]
    hidden_states: Tensor  # [B, 77, cross_attention_dim]
    time_vector: Tensor | None = None  # [B, time_embed_dim]


class EEGConditionModel(nn.Module):
    """τθ: EEG ``[B, 128, 512]`` → cross-attention condition ``[B, 77, cross_attention_dim]``, plus the CLIP head h."""

    def __init__(self, config: ConditionConfig, encoder: EEGEncoder | None = None) -> None:
        super().__init__()
        if encoder is not None and encoder.config != config.encoder:
            raise ValueError("the given encoder does not match config.encoder")
        self.config = config
        d, n_tokens = config.encoder.embed_dim, config.encoder.n_tokens
        self.encoder = encoder if encoder is not None else EEGEncoder(config.encoder)
        self.token_mapper = nn.Conv1d(n_tokens, config.n_condition_tokens, kernel_size=1)
        self.dim_mapper = nn.Linear(d, config.cross_attention_dim)
        self.clip_token = nn.Conv1d(n_tokens, 1, kernel_size=1)
        self.clip_proj = nn.Linear(d, config.clip_dim)
        self.time_mapper = nn.Linear(d, config.time_embed_dim) if config.time_embed_dim else None
        self.null_condition = nn.Parameter(torch.zeros(1, config.n_condition_tokens, config.cross_attention_dim))
        nn.init.normal_(self.null_condition, std=0.02)

    @classmethod
    def from_stage1(
        cls,
        encoder_dir: str | os.PathLike | None,
        encoder_config: MAEConfig,
        cross_attention_dim: int,
        clip_dim: int,
        time_embed_dim: int | None = None,
    ) -> "EEGConditionModel":
        """Condition model around the stage-1 encoder in ``encoder_dir`` (``None``: freshly initialised,
        the "no pre-training" ablation). An encoder of another architecture is refused."""
        config = ConditionConfig(encoder_config, cross_attention_dim, clip_dim, time_embed_dim=time_embed_dim)
        encoder = load_encoder(encoder_dir, expected=encoder_config) if encoder_dir is not None else None
        return cls(config, encoder)

    def forward(self, eeg: Tensor) -> Condition:
        """``eeg [B, C, T]`` → :class:`Condition` (tokens, hidden states ``[B, 77, cross_dim]``, time vector)."""
        tokens = self.encoder(eeg)
        hidden = self.dim_mapper(self.token_mapper(tokens))
        time_vector = self.time_mapper(tokens.mean(dim=1)) if self.time_mapper is not None else None
        return Condition(tokens, hidden, time_vector)

    def clip_embedding(self, tokens: Tensor) -> Tensor:
        """h(y): encoder tokens ``[B, L, D]`` → predicted CLIP image embedding ``[B, clip_dim]``."""
        return self.clip_proj(self.clip_token(tokens)[:, 0])

    def null(self, batch_size: int) -> Tensor:
        """The learned unconditional input ``[B, 77, cross_dim]``."""
        return self.null_condition.expand(batch_size, -1, -1)

    def save_pretrained(self, folder: str | os.PathLike) -> Path:
        """Write ``condition.safetensors`` then ``condition.json`` (with the weights' SHA-256), atomically."""
        folder = Path(folder)
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        digest = write_safetensors(folder / WEIGHTS, state, metadata={"format": FORMAT})
        meta = {"format": FORMAT, "config": self.config.to_dict(), "sha256": digest}
        write_text(folder / CONFIG, json.dumps(meta, indent=2) + "\n")
        return folder

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike) -> "EEGConditionModel":
        """Load a model written by :meth:`save_pretrained`; missing, mismatched or damaged files are errors."""
        folder = Path(folder)
        config_path, weights = folder / CONFIG, folder / WEIGHTS
        for path in (config_path, weights):
            if not path.is_file():
                raise FileNotFoundError(
                    f"{path} is missing: {folder} is not a complete EEG condition model; "
                    "re-export it from stage 2 (dreamdiffusion fit -c configs/finetune.yaml)"
                )
        try:
            meta = json.loads(config_path.read_text())
            config = ConditionConfig.from_dict(meta["config"])
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ValueError(f"{config_path} is not a dreamdiffusion condition description ({e})") from None
        if meta.get("format") != FORMAT:
            raise ValueError(f"{config_path}: format {meta.get('format')!r}, expected {FORMAT!r}")
        if sha256(weights) != meta.get("sha256"):
            raise ValueError(f"{weights} does not match the checksum in {config_path}; re-export the pipeline")
        model = cls(config)
        load_strict(model, load_file(str(weights)), str(weights), f"it was not written with {config_path}; re-export the pipeline")
        return model
