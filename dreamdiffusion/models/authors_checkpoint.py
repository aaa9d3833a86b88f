"""The DreamDiffusion authors' released generation checkpoint (``checkpoint.pth``) as a :class:`DreamDiffusionPipeline`.

The file is ``torch.save({"model_state_dict": <ldm LatentDiffusion state dict>, "config": <their
Config_Generative_Model>, "state": <torch RNG state>})``. Its state dict holds, in ldm naming:

* ``model.diffusion_model.*`` — the Stable Diffusion 1.5 UNet (converted with diffusers' own
  ``convert_ldm_unet_checkpoint``), plus ``model.diffusion_model.time_embed_condtion.{0,1,2}`` (sic) — the
  authors' time condition ``Conv1d(77->38) -> Conv1d(38->1) -> Linear(768->1280)`` on the condition, added
  to the timestep embedding: here the condition model's ``time_mapper`` (``time_mapper_input="condition"``),
  fed to a UNet with ``class_embed_type="identity"``;
* ``first_stage_model.*`` — the SD VAE (``convert_ldm_vae_checkpoint``);
* ``cond_stage_model.*`` — ``mae.*`` (their EEG encoder: mlp_ratio 1.0, no cls token in attention),
  ``channel_mapper.{0,1}`` (the two-layer token mapper), ``dim_mapper``, ``mapping.{maxpool,fc}`` (the CLIP head h);
* the noise schedule's buffers (``betas``, ``alphas_cumprod``, ...): ``betas`` is checked against the schedule
  the scheduler is built from; the others are derived from it and not needed.

The file is read with :func:`dreamdiffusion.safe_checkpoint.read_checkpoint` (nothing from it is executed;
their config object comes back as an inert record). Every tensor of the file is used or named as ignored
in the :class:`ImportReport`, and every weight of the pipeline is filled from the file — except the
condition model's ``null_condition`` (the authors trained without condition dropout), set to zeros and
listed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml
from torch import Tensor

from dreamdiffusion.models.condition import ConditionConfig, EEGConditionModel
from dreamdiffusion.models.mae import PRESETS, MAEConfig, position_table
from dreamdiffusion.models.strict_load import load_strict
from dreamdiffusion.safe_checkpoint import SkippedObject, read_checkpoint

UNET = "model.diffusion_model."
TIME_CONDITION = "model.diffusion_model.time_embed_condtion."  # the authors' spelling
VAE = "first_stage_model."
CONDITION = "cond_stage_model."
# Buffers of ldm's DDPM that are functions of ``betas`` (register_schedule); ``betas`` itself is checked.
SCHEDULE_BUFFERS = (
    "betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod",
    "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod",
    "posterior_variance", "posterior_log_variance_clipped", "posterior_mean_coef1", "posterior_mean_coef2",
    "logvar", "scale_factor",
)
# Parts of their LatentDiffusion that sampling never uses (prefix -> why).
UNUSED_PARTS = {
    "image_embedder.": "their frozen CLIP ViT-L/14 image tower (openai/clip-vit-large-patch14), used only by the CLIP loss in training",
}
UNUSED_CONDITION_PARTS = {
    "cls_net.": "their optional classification head (cls_tune), not part of the condition",
}
# The authors' encoder uses 16 heads (their config's num_heads); the weights cannot tell (qkv is one matrix
# whatever the split), so the pickled config's value is used when it has one, else this.
AUTHORS_NUM_HEADS = 16
FIX = "is it the authors' generation checkpoint (pretrains/models/checkpoint.pth of their README)?"

# Stable Diffusion 1.5's ldm config (v1-inference.yaml), the parts the conversion reads; the authors'
# config15.yaml gives the same values. --sd-config replaces it.
SD15_LDM_CONFIG: dict = {
    "model": {
        "params": {
            "linear_start": 0.00085, "linear_end": 0.0120, "timesteps": 1000, "image_size": 64,
            "scale_factor": 0.18215,
            "unet_config": {"params": {
                "image_size": 32, "in_channels": 4, "out_channels": 4, "model_channels": 320,
                "attention_resolutions": [4, 2, 1], "num_res_blocks": 2, "channel_mult": [1, 2, 4, 4],
                "num_heads": 8, "use_spatial_transformer": True, "transformer_depth": 1, "context_dim": 768,
            }},
            "first_stage_config": {"params": {"embed_dim": 4, "ddconfig": {
                "double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128,
                "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [],
            }}},
        }
    }
}

# cond_stage_model.<theirs> -> condition_model.<ours>, first match wins; mask_token/pos_embed handled apart.
_CONDITION_RULES: list[tuple[str, str]] = [
    (r"^mae\.patch_embed\.proj\.", "encoder.patch_embed."),
    (r"^mae\.blocks\.(\d+)\.mlp\.fc1\.", r"encoder.blocks.\1.mlp.0."),
    (r"^mae\.blocks\.(\d+)\.mlp\.fc2\.", r"encoder.blocks.\1.mlp.2."),
    (r"^mae\.blocks\.(\d+)\.(norm1|norm2|attn\.qkv|attn\.proj)\.", r"encoder.blocks.\1.\2."),
    (r"^mae\.(cls_token|norm\.weight|norm\.bias)$", r"encoder.\1"),
    (r"^channel_mapper\.([01])\.", r"token_mapper.\1."),
    (r"^dim_mapper\.", "dim_mapper."),
    (r"^mapping\.maxpool\.", "clip_token."),
    (r"^mapping\.fc\.", "clip_proj."),
]


@dataclass
class ImportReport:
    """What the import used, ignored and set: the file's tensors are all in ``used`` or ``ignored``."""

    used: dict[str, int] = field(default_factory=dict)  # part -> number of tensors of the file
    ignored: dict[str, str] = field(default_factory=dict)  # key (or prefix ending in *) -> why
    ignored_counts: dict[str, int] = field(default_factory=dict)  # key (or prefix) -> tensors of the state dict
    skipped_globals: list[str] = field(default_factory=list)  # pickled objects not rebuilt
    filled_without_file: dict[str, str] = field(default_factory=dict)  # our parameter -> what it was set to
    config_fields: dict[str, str] = field(default_factory=dict)  # their pickled config's plain fields
    encoder_heads: str = ""  # the encoder's attention heads and where the number came from

    def ignore(self, name: str, why: str, n_tensors: int = 1) -> None:
        """Record that ``name`` (a key, or a prefix ending in ``*``) is not used, and why."""
        self.ignored[name] = why
        self.ignored_counts[name] = self.ignored_counts.get(name, 0) + n_tensors

    @property
    def ignored_tensors(self) -> int:
        """Tensors of the state dict that were not used."""
        return sum(self.ignored_counts.values())

    def lines(self) -> list[str]:
        out = [f"used: {', '.join(f'{part} {n} tensors' for part, n in self.used.items())}"]
        out += [f"ignored: {key} ({f'{self.ignored_counts[key]} tensors: ' if key.endswith('*') else ''}{why})"
                for key, why in self.ignored.items()]
        out += [f"set without the file: {key} = {what}" for key, what in self.filled_without_file.items()]
        out.append(f"EEG encoder attention heads: {self.encoder_heads}")
        out.append(f"pickled objects not executed (inert records): {', '.join(self.skipped_globals) or 'none'}")
        return out


def load_ldm_config(path: str | Path | None) -> dict:
    """The ldm YAML (``config15.yaml``) as a dict; ``None``: Stable Diffusion 1.5's."""
    if path is None:
        return SD15_LDM_CONFIG
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; give the authors' config15.yaml (pretrains/models/) or leave --sd-config out")
    config = yaml.safe_load(path.read_text())
    try:
        params = config["model"]["params"]
        params["unet_config"]["params"], params["first_stage_config"]["params"]["ddconfig"]
    except (KeyError, TypeError):
        raise ValueError(f"{path} is not an ldm config (model.params.unet_config / first_stage_config missing)") from None
    return config


def split_state_dict(state: Mapping[str, Tensor], ignore: Sequence[str], report: ImportReport) -> dict[str, dict[str, Tensor]]:
    """The file's tensors by part (``unet``, ``time_condition``, ``vae``, ``condition``, ``schedule``); a key of
    no known part is an error unless a prefix in ``ignore`` names it."""
    parts: dict[str, dict[str, Tensor]] = {p: {} for p in ("unet", "time_condition", "vae", "condition", "schedule")}
    unknown = []
    for key, value in state.items():
        if not isinstance(value, Tensor):
            raise ValueError(f"model_state_dict[{key!r}] is a {type(value).__name__}, not a tensor; {FIX}")
        if key.startswith(TIME_CONDITION):
            parts["time_condition"][key[len(TIME_CONDITION):]] = value
        elif key.startswith(UNET):
            parts["unet"][key] = value
        elif key.startswith(VAE):
            parts["vae"][key] = value
        elif key.startswith(CONDITION):
            parts["condition"][key[len(CONDITION):]] = value
        elif key in SCHEDULE_BUFFERS:
            parts["schedule"][key] = value
        elif unused := next((p for p in UNUSED_PARTS if key.startswith(p)), None):
            report.ignore(unused + "*", UNUSED_PARTS[unused])
        elif any(key.startswith(prefix) for prefix in ignore):
            report.ignore(key, "--ignore")
        else:
            unknown.append(key)
    if unknown:
        raise ValueError(
            f"the checkpoint holds tensors of no known part: {unknown[:8]}{' ...' if len(unknown) > 8 else ''}; {FIX} "
            "If it is, and they are not needed for sampling, name them with --ignore PREFIX"
        )
    for part in ("unet", "vae", "condition"):
        if not parts[part]:
            raise ValueError(f"the checkpoint has no {part} tensors; {FIX}")
    return parts


def _check_all_used(converted: Mapping[str, Tensor | None], source: Mapping[str, Tensor], what: str) -> None:
    """diffusers' converters drop keys they do not know silently: every source tensor must reappear."""
    missing = [k for k, v in converted.items() if v is None]
    if missing:
        raise ValueError(f"{what}: the conversion found no tensor for {missing[:5]}; {FIX}")
    used = {v.data_ptr() for v in converted.values()}
    unused = sorted(k for k, v in source.items() if v.data_ptr() not in used)
    if unused or len(converted) != len(source):
        raise ValueError(
            f"{what}: {len(source)} tensors in the file, {len(converted)} after conversion; not converted: "
            f"{unused[:8]}; the file's architecture differs from its ldm config (give the matching --sd-config)"
        )


def build_scheduler(ldm_config: Mapping, schedule: Mapping[str, Tensor], report: ImportReport):
    """PLMS (the authors' sampler) on the ldm config's schedule; the file's ``betas`` must be that schedule."""
    from diffusers import PNDMScheduler

    params = ldm_config["model"]["params"]
    scheduler = PNDMScheduler(
        num_train_timesteps=int(params.get("timesteps", 1000)), beta_start=float(params.get("linear_start", 0.00085)),
        beta_end=float(params.get("linear_end", 0.012)), beta_schedule="scaled_linear", skip_prk_steps=True,
        set_alpha_to_one=False, steps_offset=1,
    )
    if "betas" in schedule:
        betas = schedule["betas"].double()
        if betas.shape != scheduler.betas.shape or not torch.allclose(betas, scheduler.betas.double(), rtol=1e-4, atol=1e-7):
            raise ValueError(
                "the checkpoint's betas are not the ldm config's schedule (scaled-linear "
                f"{params.get('linear_start')}..{params.get('linear_end')}, {params.get('timesteps')} steps); give its --sd-config"
            )
    for key in schedule:
        checked = " (betas checked)" if key == "betas" else ""
        report.ignore(key, "noise-schedule buffer; the scheduler is rebuilt from the ldm config" + checked)
    return scheduler


def _load_on_meta(cls, config: dict, state: Mapping[str, Tensor], source: str):
    """``cls(**config)`` holding ``state``'s tensors (as float32): built on the meta device, so the ~1 GB of SD
    weights are never initialised randomly only to be overwritten."""
    with torch.device("meta"):
        model = cls(**config)
    load_strict(model, dict(state), source, f"give the matching --sd-config; {FIX}", assign=True)
    left = [name for name, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:
        raise ValueError(f"{source}: {left[:5]} were not filled from the file; {FIX}")
    return model.float()


def convert_unet(ldm_config: Mapping, unet_state: Mapping[str, Tensor], time_condition: bool):
    """ldm ``model.diffusion_model.*`` → ``UNet2DConditionModel`` (``class_embed_type="identity"`` when the
    time condition adds a vector to the timestep embedding)."""
    from diffusers import UNet2DConditionModel
    from diffusers.loaders.single_file_utils import (
        convert_ldm_unet_checkpoint,
        create_unet_diffusers_config_from_ldm,
    )

    config = create_unet_diffusers_config_from_ldm(ldm_config, dict(unet_state))
    config["sample_size"] = int(ldm_config["model"]["params"].get("image_size", 64))
    if time_condition:
        config["class_embed_type"] = "identity"
    converted = convert_ldm_unet_checkpoint(dict(unet_state), config)
    _check_all_used(converted, unet_state, "UNet (model.diffusion_model.*)")
    return _load_on_meta(UNet2DConditionModel, config, converted, "the checkpoint's UNet (model.diffusion_model.*)")


def convert_vae(ldm_config: Mapping, vae_state: Mapping[str, Tensor]):
    """ldm ``first_stage_model.*`` → ``AutoencoderKL`` (latent scale from the ldm config's ``scale_factor``)."""
    from diffusers import AutoencoderKL
    from diffusers.loaders.single_file_utils import (
        convert_ldm_vae_checkpoint,
        create_vae_diffusers_config_from_ldm,
    )

    params = ldm_config["model"]["params"]
    config = create_vae_diffusers_config_from_ldm(ldm_config, dict(vae_state), scaling_factor=float(params.get("scale_factor", 0.18215)))
    factor = 2 ** (len(params["first_stage_config"]["params"]["ddconfig"]["ch_mult"]) - 1)
    config["sample_size"] = int(params.get("image_size", 64)) * factor
    converted = convert_ldm_vae_checkpoint(dict(vae_state), config)
    _check_all_used(converted, vae_state, "VAE (first_stage_model.*)")
    return _load_on_meta(AutoencoderKL, config, converted, "the checkpoint's VAE (first_stage_model.*)")


def condition_config_from_weights(cond: Mapping[str, Tensor], time_condition: Mapping[str, Tensor], num_heads: int) -> ConditionConfig:
    """The authors' condition model's architecture, read off its weights' shapes (heads: ``num_heads``)."""
    required = ["mae.patch_embed.proj.weight", "mae.pos_embed", "mae.blocks.0.mlp.fc1.weight", "dim_mapper.weight",
                "mapping.fc.weight"]
    missing = [k for k in required if k not in cond]
    if missing:
        raise ValueError(f"cond_stage_model lacks {', '.join(missing)}; {FIX} (a model trained with clip_tune)")
    if "channel_mapper.0.weight" not in cond:
        raise ValueError(
            "cond_stage_model has no channel_mapper: the model was trained with global_pool=True (one pooled "
            "token), which this importer does not support; the authors' released checkpoint has it"
        )
    d, n_chans, patch = cond["mae.patch_embed.proj.weight"].shape
    n_tokens = cond["mae.pos_embed"].shape[1] - 1
    depth = len({k.split(".")[2] for k in cond if k.startswith("mae.blocks.")})
    hidden = cond["mae.blocks.0.mlp.fc1.weight"].shape[0]
    paper = PRESETS["297M"]
    encoder = MAEConfig(
        n_chans=n_chans, n_times=n_tokens * patch, patch_size=patch, embed_dim=d, depth=depth, num_heads=num_heads,
        mlp_ratio=hidden / d, decoder_embed_dim=paper.decoder_embed_dim, decoder_depth=paper.decoder_depth,
        decoder_num_heads=paper.decoder_num_heads, position_layout="authors",
    )
    return ConditionConfig(
        encoder=encoder,
        cross_attention_dim=cond["dim_mapper.weight"].shape[0],
        clip_dim=cond["mapping.fc.weight"].shape[0],
        n_condition_tokens=cond["channel_mapper.1.weight"].shape[0],
        time_embed_dim=time_condition["2.weight"].shape[0] if time_condition else None,
        token_mapper_hidden=cond["channel_mapper.0.weight"].shape[0],
        time_mapper_input="condition",
        encoder_cls_token=False,
    )


def convert_condition(
    cond: Mapping[str, Tensor], time_condition: Mapping[str, Tensor], num_heads: int, report: ImportReport
) -> EEGConditionModel:
    """``cond_stage_model.*`` (+ the UNet's ``time_embed_condtion``) → :class:`EEGConditionModel`, key by key."""
    config = condition_config_from_weights(cond, time_condition, num_heads)
    ours: dict[str, Tensor] = {}
    unknown = []
    for key, value in cond.items():
        if key == "mae.mask_token":
            report.ignore(CONDITION + key, "their encoder's mask token; unused when encoding")
            continue
        if unused := next((p for p in UNUSED_CONDITION_PARTS if key.startswith(p)), None):
            report.ignore(CONDITION + unused + "*", UNUSED_CONDITION_PARTS[unused])
            continue
        if key == "mae.pos_embed":
            table = position_table(config.encoder.n_tokens, config.encoder.embed_dim, "authors")[None]
            if value.shape != table.shape or not torch.allclose(value.float(), table, atol=1e-5):
                raise ValueError(f"{CONDITION}mae.pos_embed is not the fixed 1-D sine-cosine table the encoder uses; {FIX}")
            report.ignore(CONDITION + key, "fixed sine-cosine positions (zero row for cls, patches at 0..L-1); checked equal to ours")
            continue
        for pattern, target in _CONDITION_RULES:
            if re.match(pattern, key):
                ours[re.sub(pattern, target, key)] = value
                break
        else:
            unknown.append(key)
    if unknown:
        raise ValueError(f"cond_stage_model holds tensors this importer does not map: {unknown[:8]}; {FIX}")
    for key, value in time_condition.items():
        ours[f"time_mapper.{key}"] = value
    model = EEGConditionModel(config)
    # The authors trained without condition dropout: there is no null condition in the file. Zeros keep
    # guidance_scale 1 (their sampling) unaffected and give the null-condition control a fixed input.
    ours["null_condition"] = torch.zeros_like(model.null_condition)
    report.filled_without_file["condition_model.null_condition"] = "zeros (not trained by the authors; use guidance_scale 1)"
    load_strict(model, ours, "the checkpoint's cond_stage_model", FIX)
    report.used["condition model"] = len(ours) - len(time_condition) - 1  # the file's tensors, without the null condition
    return model.eval()


def import_authors_checkpoint(
    checkpoint: str | Path,
    ldm_config: str | Path | Mapping | None = None,
    num_heads: int | None = None,
    ignore: Sequence[str] = (),
):
    """Read the authors' ``checkpoint.pth`` safely and build the pipeline; returns ``(pipeline, report)``.

    ``ldm_config``: their ``config15.yaml`` (path or dict; ``None``: SD-1.5's v1-inference values).
    ``num_heads``: attention heads of their encoder (``None``: the ``num_heads`` field of the file's pickled
    config, read as data; 16 when it has none). ``ignore``: key prefixes of the state dict to leave out
    (each is listed in the report).
    """
    from dreamdiffusion.pipeline import DreamDiffusionPipeline

    loaded = read_checkpoint(checkpoint)
    content = loaded.content
    if not isinstance(content, dict) or "model_state_dict" not in content:
        keys = list(content) if isinstance(content, dict) else type(content).__name__
        raise ValueError(f"{checkpoint} holds {keys}, not a dict with 'model_state_dict'; {FIX}")
    report = ImportReport(skipped_globals=loaded.skipped)
    config_record = content.get("config")
    if isinstance(config_record, SkippedObject):
        report.config_fields = {k: repr(v) for k, v in config_record.fields().items() if isinstance(v, (bool, int, float, str))}
    if num_heads is None:
        recorded = config_record.fields().get("num_heads") if isinstance(config_record, SkippedObject) else None
        num_heads = recorded if isinstance(recorded, int) and not isinstance(recorded, bool) and recorded > 0 else AUTHORS_NUM_HEADS
        report.encoder_heads = f"{num_heads} ({'their config' if num_heads == recorded else 'their code'})"
    else:
        report.encoder_heads = f"{num_heads} (given)"
    for key in content:
        if key != "model_state_dict":
            report.ignore(key, "not weights (their pickled config object, the RNG state)", n_tensors=0)
    ldm = ldm_config if isinstance(ldm_config, Mapping) else load_ldm_config(ldm_config)
    parts = split_state_dict(content["model_state_dict"], ignore, report)
    scheduler = build_scheduler(ldm, parts["schedule"], report)
    unet = convert_unet(ldm, parts["unet"], time_condition=bool(parts["time_condition"]))
    vae = convert_vae(ldm, parts["vae"])
    condition = convert_condition(parts["condition"], parts["time_condition"], num_heads, report)
    report.used = {"UNet": len(parts["unet"]), "time condition": len(parts["time_condition"]), "VAE": len(parts["vae"])} | report.used
    pipe = DreamDiffusionPipeline(unet.eval(), vae.eval(), scheduler, condition)
    return pipe, report


__all__ = ["AUTHORS_NUM_HEADS", "SD15_LDM_CONFIG", "ImportReport", "import_authors_checkpoint", "load_ldm_config"]
