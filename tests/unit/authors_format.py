"""A checkpoint in the DreamDiffusion authors' exact format, at tiny sizes, for the importer's tests.

The layout is written from the facts of their code (``torch.save({"model_state_dict", "config", "state"})``,
ldm names, a frozen CLIP image tower under ``image_embedder.``), not from their code: the UNet/VAE keys come from
a tiny diffusers model through the inverse of diffusers' ldm→diffusers mapping (:func:`unet_to_ldm`,
:func:`vae_to_ldm`), the condition keys from :func:`authors_condition_state`; :func:`reference_condition` is their
condition forward in plain torch ops.
"""

from __future__ import annotations

import math
import re
import sys
import types

import torch
import torch.nn.functional as F
from diffusers.loaders.single_file_utils import (
    DIFFUSERS_TO_LDM_MAPPING,
    create_unet_diffusers_config_from_ldm,
    create_vae_diffusers_config_from_ldm,
)
from torch import Tensor

from dreamdiffusion.models.mae import position_table

# A tiny ldm config with SD's structure: 2 UNet levels (attention at the first), 32 GroupNorm groups as in ldm.
TINY_LDM_CONFIG = {
    "model": {
        "params": {
            "linear_start": 0.00085, "linear_end": 0.0120, "timesteps": 1000, "image_size": 8, "scale_factor": 0.18215,
            "unet_config": {"params": {
                "image_size": 8, "in_channels": 4, "out_channels": 4, "model_channels": 32, "attention_resolutions": [1],
                "num_res_blocks": 1, "channel_mult": [1, 2], "num_heads": 4, "use_spatial_transformer": True,
                "transformer_depth": 1, "context_dim": 32,
            }},
            "first_stage_config": {"params": {"embed_dim": 4, "ddconfig": {
                "double_z": True, "z_channels": 4, "resolution": 16, "in_channels": 3, "out_ch": 3, "ch": 32,
                "ch_mult": [1, 2], "num_res_blocks": 1, "attn_resolutions": [],
            }}},
        }
    }
}
# Tiny condition sizes: the real EEG shape (128 channels, 512 samples, patch 4 → 128 tokens), narrow encoder.
TINY = dict(n_chans=128, n_times=512, patch=4, d=32, depth=2, heads=4, mlp_ratio=1.0, token_hidden=64, n_cond=77,
            cross=32, clip=32, time_dim=128)

_RESNET_TO_LDM = [("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("norm2", "out_layers.0"), ("conv2", "out_layers.3"),
                  ("time_emb_proj", "emb_layers.1"), ("conv_shortcut", "skip_connection")]


def tiny_unet_config(time_condition: bool) -> dict:
    config = create_unet_diffusers_config_from_ldm(TINY_LDM_CONFIG, {})
    config["sample_size"] = 8
    if time_condition:
        config["class_embed_type"] = "identity"
    return config


def tiny_vae_config() -> dict:
    config = create_vae_diffusers_config_from_ldm(TINY_LDM_CONFIG, {}, scaling_factor=0.18215)
    config["sample_size"] = 16
    return config


def _resnet(rest: str) -> str:
    for ours, theirs in _RESNET_TO_LDM:
        if rest.startswith(ours + "."):
            return theirs + rest[len(ours):]
    raise KeyError(rest)


def unet_to_ldm(state: dict[str, Tensor], config: dict) -> dict[str, Tensor]:
    """diffusers UNet state dict → ldm ``model.diffusion_model.*`` names (the inverse of diffusers' converter)."""
    fixed = DIFFUSERS_TO_LDM_MAPPING["unet"]["layers"]
    per = config["layers_per_block"] + 1
    up_attn = ["CrossAttn" in t for t in config["up_block_types"]]
    out = {}
    for key, value in state.items():
        if key in fixed:
            ldm = fixed[key]
        elif m := re.match(r"down_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", key):
            ldm = f"input_blocks.{1 + int(m[1]) * per + int(m[2])}.0.{_resnet(m[3])}"
        elif m := re.match(r"down_blocks\.(\d+)\.attentions\.(\d+)\.(.*)", key):
            ldm = f"input_blocks.{1 + int(m[1]) * per + int(m[2])}.1.{m[3]}"
        elif m := re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", key):
            ldm = f"input_blocks.{(int(m[1]) + 1) * per}.0.op.{m[2]}"
        elif m := re.match(r"mid_block\.resnets\.(\d+)\.(.*)", key):
            ldm = f"middle_block.{2 * int(m[1])}.{_resnet(m[2])}"
        elif m := re.match(r"mid_block\.attentions\.0\.(.*)", key):
            ldm = f"middle_block.1.{m[1]}"
        elif m := re.match(r"up_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", key):
            ldm = f"output_blocks.{int(m[1]) * per + int(m[2])}.0.{_resnet(m[3])}"
        elif m := re.match(r"up_blocks\.(\d+)\.attentions\.(\d+)\.(.*)", key):
            ldm = f"output_blocks.{int(m[1]) * per + int(m[2])}.1.{m[3]}"
        elif m := re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)", key):
            i = int(m[1])
            ldm = f"output_blocks.{i * per + per - 1}.{2 if up_attn[i] else 1}.conv.{m[2]}"
        else:
            raise KeyError(f"no ldm name for {key}")
        out["model.diffusion_model." + ldm] = value
    return out


def vae_to_ldm(state: dict[str, Tensor], config: dict) -> dict[str, Tensor]:
    """diffusers AutoencoderKL state dict → ldm ``first_stage_model.*`` names (attention as 1×1 convolutions)."""
    fixed = DIFFUSERS_TO_LDM_MAPPING["vae"]
    n = len(config["block_out_channels"])
    attn = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
    out = {}
    for key, value in state.items():
        if key in fixed:
            ldm = fixed[key]
        elif m := re.match(r"(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.*)", key):
            ldm = f"{m[1]}.mid.block_{int(m[2]) + 1}.{m[3].replace('conv_shortcut', 'nin_shortcut')}"
        elif m := re.match(r"(encoder|decoder)\.mid_block\.attentions\.0\.(group_norm|to_q|to_k|to_v|to_out\.0)\.(weight|bias)", key):
            ldm = f"{m[1]}.mid.attn_1.{attn[m[2]]}.{m[3]}"
            if m[3] == "weight" and value.ndim == 2:
                value = value[:, :, None, None]
        elif m := re.match(r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", key):
            ldm = f"encoder.down.{m[1]}.block.{m[2]}.{m[3].replace('conv_shortcut', 'nin_shortcut')}"
        elif m := re.match(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", key):
            ldm = f"encoder.down.{m[1]}.downsample.conv.{m[2]}"
        elif m := re.match(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", key):
            ldm = f"decoder.up.{n - 1 - int(m[1])}.block.{m[2]}.{m[3].replace('conv_shortcut', 'nin_shortcut')}"
        elif m := re.match(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)", key):
            ldm = f"decoder.up.{n - 1 - int(m[1])}.upsample.conv.{m[2]}"
        else:
            raise KeyError(f"no ldm name for {key}")
        out["first_stage_model." + ldm] = value
    return out


def authors_condition_state(seed: int = 0, s: dict = TINY) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Random weights in the authors' names: ``cond_stage_model`` keys and the UNet's ``time_embed_condtion``."""
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape: int, scale: float | None = None) -> Tensor:
        fan_in = math.prod(shape[1:]) if len(shape) > 1 else shape[0]
        return torch.randn(*shape, generator=g) * (scale if scale is not None else fan_in ** -0.5)

    d, hidden, n_tokens = s["d"], int(s["d"] * s["mlp_ratio"]), s["n_times"] // s["patch"]
    cond = {
        "mae.patch_embed.proj.weight": rnd(d, s["n_chans"], s["patch"]), "mae.patch_embed.proj.bias": rnd(d, scale=0.1),
        "mae.cls_token": rnd(1, 1, d, scale=0.02), "mae.mask_token": rnd(1, 1, d, scale=0.02),
        "mae.pos_embed": position_table(n_tokens, d, "authors")[None].clone(),
        "mae.norm.weight": 1 + rnd(d, scale=0.1), "mae.norm.bias": rnd(d, scale=0.1),
    }
    for i in range(s["depth"]):
        b = f"mae.blocks.{i}."
        cond |= {
            b + "norm1.weight": 1 + rnd(d, scale=0.1), b + "norm1.bias": rnd(d, scale=0.1),
            b + "attn.qkv.weight": rnd(3 * d, d), b + "attn.qkv.bias": rnd(3 * d, scale=0.1),
            b + "attn.proj.weight": rnd(d, d), b + "attn.proj.bias": rnd(d, scale=0.1),
            b + "norm2.weight": 1 + rnd(d, scale=0.1), b + "norm2.bias": rnd(d, scale=0.1),
            b + "mlp.fc1.weight": rnd(hidden, d), b + "mlp.fc1.bias": rnd(hidden, scale=0.1),
            b + "mlp.fc2.weight": rnd(d, hidden), b + "mlp.fc2.bias": rnd(d, scale=0.1),
        }
    h, n_cond = s["token_hidden"], s["n_cond"]
    cond |= {
        "channel_mapper.0.weight": rnd(h, n_tokens, 1), "channel_mapper.0.bias": rnd(h, scale=0.1),
        "channel_mapper.1.weight": rnd(n_cond, h, 1), "channel_mapper.1.bias": rnd(n_cond, scale=0.1),
        "dim_mapper.weight": rnd(s["cross"], d), "dim_mapper.bias": rnd(s["cross"], scale=0.1),
        "mapping.maxpool.weight": rnd(1, n_tokens, 1), "mapping.maxpool.bias": rnd(1, scale=0.1),
        "mapping.fc.weight": rnd(s["clip"], d), "mapping.fc.bias": rnd(s["clip"], scale=0.1),
    }
    time = {
        "0.weight": rnd(n_cond // 2, n_cond, 1), "0.bias": rnd(n_cond // 2, scale=0.1),
        "1.weight": rnd(1, n_cond // 2, 1), "1.bias": rnd(1, scale=0.1),
        "2.weight": rnd(s["time_dim"], s["cross"]), "2.bias": rnd(s["time_dim"], scale=0.1),
    }
    return cond, time


def reference_condition(cond: dict[str, Tensor], time: dict[str, Tensor], eeg: Tensor, heads: int = TINY["heads"]):
    """The authors' condition forward in plain ops: (tokens, condition [B, 77, cross], time vector, CLIP embedding).

    Their encoder adds positions to the patch tokens, runs pre-LN blocks (softmax attention, GELU MLP) on the
    patch tokens only (no cls), then the final LayerNorm.
    """
    weight = cond["mae.patch_embed.proj.weight"]
    x = F.conv1d(eeg, weight, cond["mae.patch_embed.proj.bias"], stride=weight.shape[2])
    x = x.transpose(1, 2) + cond["mae.pos_embed"][:, 1:]
    d = x.shape[-1]
    depth = len({k.split(".")[2] for k in cond if k.startswith("mae.blocks.")})
    for i in range(depth):
        p = {k[len(f"mae.blocks.{i}."):]: v for k, v in cond.items() if k.startswith(f"mae.blocks.{i}.")}
        y = F.layer_norm(x, (d,), p["norm1.weight"], p["norm1.bias"], eps=1e-5)
        b, n, _ = y.shape
        q, k, v = F.linear(y, p["attn.qkv.weight"], p["attn.qkv.bias"]).view(b, n, 3, heads, d // heads).permute(2, 0, 3, 1, 4)
        attn = (q @ k.transpose(-2, -1) * (d // heads) ** -0.5).softmax(-1)
        x = x + F.linear((attn @ v).transpose(1, 2).reshape(b, n, d), p["attn.proj.weight"], p["attn.proj.bias"])
        y = F.layer_norm(x, (d,), p["norm2.weight"], p["norm2.bias"], eps=1e-5)
        x = x + F.linear(F.gelu(F.linear(y, p["mlp.fc1.weight"], p["mlp.fc1.bias"])), p["mlp.fc2.weight"], p["mlp.fc2.bias"])
    tokens = F.layer_norm(x, (d,), cond["mae.norm.weight"], cond["mae.norm.bias"], eps=1e-5)
    mapped = F.conv1d(F.conv1d(tokens, cond["channel_mapper.0.weight"], cond["channel_mapper.0.bias"]),
                      cond["channel_mapper.1.weight"], cond["channel_mapper.1.bias"])
    hidden = F.linear(mapped, cond["dim_mapper.weight"], cond["dim_mapper.bias"])
    t = F.conv1d(F.conv1d(hidden, time["0.weight"], time["0.bias"]), time["1.weight"], time["1.bias"])
    time_vector = F.linear(t, time["2.weight"], time["2.bias"])[:, 0]
    pooled = F.conv1d(tokens, cond["mapping.maxpool.weight"], cond["mapping.maxpool.bias"])[:, 0]
    clip = F.linear(pooled, cond["mapping.fc.weight"], cond["mapping.fc.bias"])
    return tokens, hidden, time_vector, clip


def install_config_module(marker_dir) -> type:
    """A module named ``config`` with ``Config_Generative_Model`` as the authors pickled it; unpickling it for
    real would create ``marker_dir/setstate`` (its ``__setstate__``) and ``marker_dir/reduce`` (a field whose
    ``__reduce__`` opens a file for writing)."""
    module = types.ModuleType("config")

    class FileMaker:
        def __reduce__(self):
            return (open, (str(marker_dir / "reduce"), "w"))

    class Config_Generative_Model:
        def __init__(self) -> None:
            self.global_pool, self.use_time_cond, self.clip_tune, self.num_samples = False, True, True, 5
            self.num_heads, self.subject, self.splits_path = TINY["heads"], 4, "datasets/block_splits_by_image_single.pth"
            self.hook = FileMaker()

        def __setstate__(self, state: dict) -> None:
            (marker_dir / "setstate").write_text("executed")
            self.__dict__.update(state)

    for cls in (FileMaker, Config_Generative_Model):
        cls.__module__, cls.__qualname__ = "config", cls.__name__
        setattr(module, cls.__name__, cls)
    sys.modules["config"] = module
    return Config_Generative_Model


def build_authors_checkpoint(path, marker_dir, seed: int = 0, time_condition: bool = True) -> dict[str, Tensor]:
    """Write a tiny checkpoint in the authors' format to ``path``; returns its ``model_state_dict``.

    The ``config`` module is removed from ``sys.modules`` afterwards, as it is absent where a user imports.
    """
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel

    torch.manual_seed(seed)
    unet_config, vae_config = tiny_unet_config(time_condition), tiny_vae_config()
    unet, vae = UNet2DConditionModel(**unet_config), AutoencoderKL(**vae_config)
    cond, time = authors_condition_state(seed)
    state = unet_to_ldm(unet.state_dict(), unet_config) | vae_to_ldm(vae.state_dict(), vae_config)
    state |= {f"cond_stage_model.{k}": v for k, v in cond.items()}
    if time_condition:
        state |= {f"model.diffusion_model.time_embed_condtion.{k}": v for k, v in time.items()}
    betas = DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear").betas
    state |= {"betas": betas.double(), "alphas_cumprod": torch.cumprod(1 - betas.double(), 0)}
    # their LatentDiffusion always holds a frozen CLIP image tower (CLIPVisionModelWithProjection) as image_embedder
    state |= {"image_embedder.transformer.visual_projection.weight": torch.randn(8, 16),
              "image_embedder.transformer.vision_model.post_layernorm.weight": torch.ones(16)}
    state = {k: v.detach().clone().contiguous() for k, v in state.items()}
    config_cls = install_config_module(marker_dir)
    try:
        torch.save({"model_state_dict": state, "config": config_cls(), "state": torch.random.get_rng_state()}, path)
    finally:
        del sys.modules["config"]
    return state
