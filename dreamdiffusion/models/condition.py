"""The EEG condition model τθ(y) and the CLIP head h (DreamDiffusion Sec. 3.3–3.4).

::

    eeg [B, 128, 512] --EEGEncoder--> tokens [B, L=128, D]
        tokens --token_mapper Conv1d(L->77, k=1)--> [B, 77, D] --dim_mapper Linear(D->cross_attention_dim)--> [B, 77, 768]
        tokens --clip_token Conv1d(L->1, k=1)--> [B, 1, D] --clip_proj Linear(D->clip_dim)--> [B, 768]     (h, Eq. 3)
        tokens --mean over L--> [B, D] --time_mapper Linear(D->time_embed_dim)--> [B, time_embed_dim]       (optional)

The authors' released checkpoint needs three variants, each a config key (the defaults above stay):
``token_mapper_hidden=64`` (token mapper ``Conv1d(L->64, k=1) -> Conv1d(64->77, k=1)``),
``time_mapper_input="condition"`` (time vector from the condition: ``Conv1d(77->38, k=1) -> Conv1d(38->1, k=1)
-> Linear(cross_attention_dim->time_embed_dim)`` on ``[B, 77, cross_attention_dim]``) and
``encoder_cls_token=False`` (the encoder attends over the patch tokens only; their stage-2 encoder never
prepends its cls token).

The ``[B, 77, cross_attention_dim]`` condition is the UNet's ``encoder_hidden_states``; the optional time
vector (the authors' code, from MinD-Vis; not in the paper) is added to the timestep embedding through
``class_embed_type="identity"``. ``null_condition`` is a learned unconditional input for condition
dropout and classifier-free guidance.

Saved and loaded through diffusers (``ModelMixin`` + ``ConfigMixin``): ``config.json`` (the architecture),
``diffusion_pytorch_model.safetensors`` (the weights) and ``checksums.json`` (their SHA-256). Folders of the
first format (``condition.safetensors`` + ``condition.json``) still load.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from safetensors.torch import load_file
from torch import Tensor, nn

from dreamdiffusion.atomic import atomic_path, sha256
from dreamdiffusion.checksums import (
    MANIFEST,
    is_verified,
    verify_checksums,
    write_checksums,
)
from dreamdiffusion.models.encoder_file import load_encoder
from dreamdiffusion.models.mae import EEGEncoder, MAEConfig
from dreamdiffusion.models.strict_load import load_strict

WEIGHTS = "diffusion_pytorch_model.safetensors"
CONFIG = "config.json"
LEGACY_WEIGHTS = "condition.safetensors"
LEGACY_CONFIG = "condition.json"
LEGACY_FORMAT = "dreamdiffusion.eeg_condition/1"
TIME_MAPPER_INPUTS = ("tokens", "condition")
REEXPORT = "re-export it from stage 2 (dreamdiffusion fit -c configs/finetune.yaml)"


def pipeline_folder(folder: Path) -> Path | None:
    """The pipeline folder holding the condition model ``folder`` (its ``model_index.json`` lists it), else ``None``."""
    index = folder.parent / "model_index.json"
    if not index.is_file():
        return None
    try:
        return folder.parent if folder.name in json.loads(index.read_text()) else None
    except json.JSONDecodeError:
        return None


@dataclass(frozen=True)
class ConditionConfig:
    """Everything needed to rebuild :class:`EEGConditionModel`; dimensions come from the loaded UNet/CLIP."""

    encoder: MAEConfig = field(default_factory=MAEConfig)
    cross_attention_dim: int = 768
    clip_dim: int = 768
    n_condition_tokens: int = 77
    time_embed_dim: int | None = None
    token_mapper_hidden: int | None = None
    time_mapper_input: str = "tokens"
    encoder_cls_token: bool = True

    def __post_init__(self) -> None:
        if self.time_mapper_input not in TIME_MAPPER_INPUTS:
            raise ValueError(
                f"time_mapper_input={self.time_mapper_input!r}; choose one of {', '.join(TIME_MAPPER_INPUTS)} "
                "(tokens: the pooled encoder tokens; condition: the authors' module on the 77-token condition)"
            )
        if self.token_mapper_hidden is not None and self.token_mapper_hidden < 1:
            raise ValueError(f"token_mapper_hidden={self.token_mapper_hidden} must be a positive width or None (one layer)")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ConditionConfig:
        data = dict(data)
        return cls(encoder=MAEConfig.from_dict(data.pop("encoder")), **data)


@dataclass
class Condition:
    """Output of :class:`EEGConditionModel`: encoder tokens, UNet condition and optional time vector."""

    tokens: Tensor  # [B, L, D]
    hidden_states: Tensor  # [B, 77, cross_attention_dim]
    time_vector: Tensor | None = None  # [B, time_embed_dim]


class EEGConditionModel(ModelMixin, ConfigMixin):
    """τθ: EEG ``[B, 128, 512]`` → cross-attention condition ``[B, 77, cross_attention_dim]``, plus the CLIP head h.

    Built either from a :class:`ConditionConfig` (``EEGConditionModel(ConditionConfig(...))``) or from the
    flat keys of its ``config.json`` (``encoder_config``: a dict of :class:`MAEConfig` fields, the dimensions),
    which is how diffusers rebuilds it. ``encoder_module`` hands in an existing (e.g. stage-1) encoder.

    Parameters
    ----------
    condition_config
        The whole architecture as a :class:`ConditionConfig` (or give the flat keys below instead).
    encoder_config
        The encoder's :class:`~dreamdiffusion.models.mae.MAEConfig` fields as a dict.
    cross_attention_dim, clip_dim, n_condition_tokens
        Width of the UNet condition (768 for SD-1.5), of the CLIP image embedding h predicts, and the
        number of condition tokens (77).
    time_embed_dim
        Width of the UNet's timestep embedding (1280 for SD-1.5) when a time vector is added to it
        (UNet with ``class_embed_type="identity"``); ``None``: no time vector (the paper).
    token_mapper_hidden
        ``None``: one ``Conv1d(L->77, k=1)`` (the paper); a width ``w``: ``Conv1d(L->w) -> Conv1d(w->77)``
        (the authors' released checkpoint: 64).
    time_mapper_input
        Where the time vector comes from: ``"tokens"`` (``Linear(D->time_embed_dim)`` on the mean encoder
        token) or ``"condition"`` (the authors' ``Conv1d(77->38) -> Conv1d(38->1) -> Linear(cross_attention_dim
        ->time_embed_dim)`` on the ``[B, 77, cross_attention_dim]`` condition).
    encoder_cls_token
        ``True``: the encoder's cls token takes part in attention (as in stage 1); ``False``: attention over
        the patch tokens only (the authors' released encoder).
    encoder_module
        An existing encoder (e.g. stage 1's) to use instead of a fresh one; it must match ``encoder_config``.
    """

    # The ConditionConfig and the encoder module are not JSON; __init__ records their flat form instead.
    ignore_for_config = ("condition_config", "encoder_module")

    @register_to_config
    def __init__(
        self,
        condition_config: ConditionConfig | None = None,
        encoder_config: dict | None = None,
        cross_attention_dim: int = 768,
        clip_dim: int = 768,
        n_condition_tokens: int = 77,
        time_embed_dim: int | None = None,
        token_mapper_hidden: int | None = None,
        time_mapper_input: str = "tokens",
        encoder_cls_token: bool = True,
        encoder_module: EEGEncoder | None = None,
    ) -> None:
        super().__init__()
        if condition_config is None:
            condition_config = ConditionConfig(
                MAEConfig.from_dict(encoder_config) if encoder_config is not None else MAEConfig(),
                cross_attention_dim, clip_dim, n_condition_tokens, time_embed_dim,
                token_mapper_hidden=token_mapper_hidden, time_mapper_input=time_mapper_input,
                encoder_cls_token=encoder_cls_token,
            )
        elif not isinstance(condition_config, ConditionConfig):
            raise TypeError(f"condition_config must be a ConditionConfig, got {type(condition_config).__name__}")
        elif encoder_config is not None:
            raise TypeError(
                "give a ConditionConfig or the flat keys (encoder_config=..., cross_attention_dim=...), not both; "
                "an existing encoder goes in encoder_module="
            )
        # register_to_config recorded the call's arguments; the flat form of the real config replaces them
        # ("encoder_config": "encoder" is the submodule's name; an empty "_use_default_values", or from_config
        # would take the class defaults for the keys a ConditionConfig supplied).
        flat = condition_config.to_dict()
        self.register_to_config(encoder_config=flat.pop("encoder"), **flat, _use_default_values=[])
        config = condition_config
        if encoder_module is not None and encoder_module.config != config.encoder:
            raise ValueError("the given encoder does not match config.encoder")
        d, n_tokens = config.encoder.embed_dim, config.encoder.n_tokens
        self.encoder = encoder_module if encoder_module is not None else EEGEncoder(config.encoder)
        n_cond, hidden = config.n_condition_tokens, config.token_mapper_hidden
        if hidden is None:
            self.token_mapper = nn.Conv1d(n_tokens, n_cond, kernel_size=1)
        else:
            self.token_mapper = nn.Sequential(nn.Conv1d(n_tokens, hidden, kernel_size=1), nn.Conv1d(hidden, n_cond, kernel_size=1))
        self.dim_mapper = nn.Linear(d, config.cross_attention_dim)
        self.clip_token = nn.Conv1d(n_tokens, 1, kernel_size=1)
        self.clip_proj = nn.Linear(d, config.clip_dim)
        if not config.time_embed_dim:
            self.time_mapper = None
        elif config.time_mapper_input == "tokens":
            self.time_mapper = nn.Linear(d, config.time_embed_dim)
        else:  # no activation between the layers: the authors' module is affine end to end
            self.time_mapper = nn.Sequential(
                nn.Conv1d(n_cond, n_cond // 2, kernel_size=1),
                nn.Conv1d(n_cond // 2, 1, kernel_size=1),
                nn.Linear(config.cross_attention_dim, config.time_embed_dim),
            )
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
        **variants,
    ) -> EEGConditionModel:
        """Condition model around the stage-1 encoder in ``encoder_dir`` (``None``: freshly initialised,
        the "no pre-training" ablation). An encoder of another architecture is refused. ``variants``: the
        :class:`ConditionConfig` options ``token_mapper_hidden``, ``time_mapper_input``, ``encoder_cls_token``."""
        config = ConditionConfig(encoder_config, cross_attention_dim, clip_dim, time_embed_dim=time_embed_dim, **variants)
        encoder = load_encoder(encoder_dir, expected=encoder_config) if encoder_dir is not None else None
        return cls(config, encoder_module=encoder)

    @property
    def condition_config(self) -> ConditionConfig:
        """The architecture as a :class:`ConditionConfig` (``self.config`` is diffusers' flat dict of it)."""
        flat = {k: self.config[k] for k in ConditionConfig.__dataclass_fields__ if k != "encoder"}
        return ConditionConfig.from_dict({"encoder": dict(self.config["encoder_config"]), **flat})

    def forward(self, eeg: Tensor) -> Condition:
        """``eeg [B, C, T]`` → :class:`Condition` (tokens, hidden states ``[B, 77, cross_dim]``, time vector)."""
        return self.condition_from_tokens(self.encoder(eeg, with_cls=self.config["encoder_cls_token"]))

    def condition_from_tokens(self, tokens: Tensor) -> Condition:
        """Encoder tokens ``[B, L, D]`` → :class:`Condition` (the mappers only; the encoder already ran)."""
        hidden = self.dim_mapper(self.token_mapper(tokens))
        if self.time_mapper is None:
            time_vector = None
        elif self.config["time_mapper_input"] == "tokens":
            time_vector = self.time_mapper(tokens.mean(dim=1))
        else:
            time_vector = self.time_mapper(hidden)[:, 0]  # [B, 1, E] -> [B, E]
        return Condition(tokens, hidden, time_vector)

    def clip_embedding(self, tokens: Tensor) -> Tensor:
        """h(y): encoder tokens ``[B, L, D]`` → predicted CLIP image embedding ``[B, clip_dim]``."""
        return self.clip_proj(self.clip_token(tokens)[:, 0])

    def null(self, batch_size: int) -> Tensor:
        """The learned unconditional input ``[B, 77, cross_dim]``."""
        return self.null_condition.expand(batch_size, -1, -1)

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs) -> Path:
        """Write ``config.json``, the safetensors weights and ``checksums.json`` to ``save_directory``, atomically.

        Weights are always safetensors; ``kwargs`` go to :meth:`diffusers.ModelMixin.save_pretrained`.
        """
        if kwargs.pop("safe_serialization", True) is False:
            raise ValueError("EEGConditionModel is saved as safetensors only (pickled weights are never written)")
        if kwargs.get("push_to_hub"):
            raise ValueError("push the whole pipeline instead: DreamDiffusionPipeline.push_to_hub(repo_id)")
        folder = Path(save_directory)
        folder.mkdir(parents=True, exist_ok=True)
        # Staged beside, then each file renamed into place (weights, config, checksums last): other files in
        # the folder are kept, and a reader never sees a half-written file; between two renames it sees
        # weights its checksums.json does not list yet, which it refuses.
        with tempfile.TemporaryDirectory(prefix=f".{folder.name}.tmp-", dir=folder.parent) as staging:
            super().save_pretrained(staging, safe_serialization=True, **kwargs)
            write_checksums(staging)
            for name in (WEIGHTS, CONFIG, MANIFEST):
                with atomic_path(folder / name) as tmp:
                    os.replace(Path(staging) / name, tmp)
        return folder

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs) -> EEGConditionModel:
        """Load a folder written by :meth:`save_pretrained` (or by the first format); strict and verified.

        Missing, unlisted, mismatched or changed weights are errors; pickles are never read. ``torch_dtype``
        is honoured; the other diffusers loading options (``device_map``, ``variant``, ...) must be unset.
        """
        folder = Path(pretrained_model_name_or_path)
        torch_dtype = kwargs.pop("torch_dtype", None)
        unsupported = {k: v for k, v in kwargs.items()
                       if v not in (None, False) and k in ("device_map", "variant", "quantization_config", "subfolder")}
        if unsupported:
            raise ValueError(f"EEGConditionModel.from_pretrained does not support {unsupported}; load it whole, on CPU, then .to(device)")
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder} is not a folder: give the folder an EEG condition model was saved to")
        if not (folder / CONFIG).is_file() and (folder / LEGACY_CONFIG).is_file():
            model = cls._from_legacy_folder(folder)
        else:
            for path in (folder / CONFIG, folder / WEIGHTS):
                if not path.is_file():
                    raise FileNotFoundError(f"{path} is missing: {folder} is not a complete EEG condition model; {REEXPORT}")
            if not is_verified(folder):
                if pipeline_folder(folder) is not None:
                    # Loaded by diffusers.DiffusionPipeline.from_pretrained: check the whole pipeline's weights
                    # (the index lists condition_model first, so before the UNet and VAE are read).
                    verify_checksums(pipeline_folder(folder), REEXPORT)
                verify_checksums(folder, REEXPORT)
            config = cls.load_config(folder)
            if config.get("_class_name") != cls.__name__:
                raise ValueError(f"{folder / CONFIG} describes a {config.get('_class_name')!r}, not an {cls.__name__}; {REEXPORT}")
            model = cls.from_config(config)
            load_strict(model, load_file(str(folder / WEIGHTS)), str(folder / WEIGHTS),
                        f"it was not written with {folder / CONFIG}; {REEXPORT}")
        if torch_dtype is not None:
            model.to(torch_dtype)
        return model.eval()

    @classmethod
    def _from_legacy_folder(cls, folder: Path) -> EEGConditionModel:
        """First format: ``condition.json`` (config + SHA-256 of the weights) + ``condition.safetensors``."""
        config_path, weights = folder / LEGACY_CONFIG, folder / LEGACY_WEIGHTS
        if not weights.is_file():
            raise FileNotFoundError(f"{weights} is missing: {folder} is not a complete EEG condition model; {REEXPORT}")
        try:
            meta = json.loads(config_path.read_text())
            config = ConditionConfig.from_dict(meta["config"])
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ValueError(f"{config_path} is not a dreamdiffusion condition description ({e})") from None
        if meta.get("format") != LEGACY_FORMAT:
            raise ValueError(f"{config_path}: format {meta.get('format')!r}, expected {LEGACY_FORMAT!r}")
        if sha256(weights) != meta.get("sha256"):
            raise ValueError(f"{weights} does not match the checksum in {config_path}; {REEXPORT}")
        model = cls(config)
        return load_strict(model, load_file(str(weights)), str(weights), f"it was not written with {config_path}; {REEXPORT}")
