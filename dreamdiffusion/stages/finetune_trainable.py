"""Which parameters stage 2 trains (DreamDiffusion Sec. 3.3–3.4, Table 2's E / A / E+A rows).

Everything is frozen first, then these sets are unfrozen (:func:`select_trainable`):

* ``train_encoder`` (E): the stage-1 EEG encoder (``condition_model.encoder.*``).
* ``train_cross_attention`` (A): every UNet ``BasicTransformerBlock``'s ``attn2`` (cross-attention) and
  the ``norm2`` LayerNorm right before it, selected by module type and path
  (:func:`cross_attention_module_names`).
* The condition mappers (``token_mapper``, ``dim_mapper``, and ``time_mapper`` with ``time_condition``)
  train whenever L_SD is on, in E, A and E+A alike: they are freshly initialised, so with "A only" a
  frozen mapper would feed the UNet a random projection. The CLIP head h (``clip_token``,
  ``clip_proj``) trains whenever L_clip is on; the learned null condition trains with
  ``condition_dropout`` > 0. A parameter that no loss reaches is frozen, so "trainable" means "gets a
  gradient".

:func:`check_trainable_settings` refuses the settings under which a set would get no gradient.
"""

from __future__ import annotations

from torch import nn

MAPPERS = ("token_mapper.", "dim_mapper.", "time_mapper.")
CLIP_HEAD = ("clip_token.", "clip_proj.")


def cross_attention_module_names(unet: nn.Module) -> list[str]:
    """Paths of every cross-attention (``attn2``) and the LayerNorm before it (``norm2``) in ``unet``.

    Selected by module type — a diffusers ``BasicTransformerBlock`` that has a cross-attention — never by
    a bare substring: ``'norm2' in name`` would also catch every ResNet block's GroupNorm.
    """
    from diffusers.models.attention import BasicTransformerBlock

    names = []
    for path, module in unet.named_modules():
        if isinstance(module, BasicTransformerBlock) and getattr(module, "attn2", None) is not None:
            names += [f"{path}.attn2", f"{path}.norm2"]
    if not names:
        raise ValueError(
            f"{type(unet).__name__} has no cross-attention (BasicTransformerBlock.attn2): it cannot be "
            "conditioned on EEG; use a Stable Diffusion UNet with cross_attention_dim set"
        )
    return names


def cross_attention_parameter_names(unet: nn.Module) -> list[str]:
    """Names (as in ``unet.named_parameters()``) of the A set: ``attn2`` and its preceding ``norm2``."""
    prefixes = tuple(f"{m}." for m in cross_attention_module_names(unet))
    return [n for n, _ in unet.named_parameters() if n.startswith(prefixes)]


def check_trainable_settings(sd_w: float, clip_w: float, dropout: float, train_encoder: bool, train_cross_attention: bool) -> None:
    """Refuse loss weights (``sd_w``, ``clip_w``), ``condition_dropout`` and E/A switches under which nothing, or a
    set that was asked for, would learn; each error names the ``model.*`` keys and the fix."""
    if sd_w < 0 or clip_w < 0 or sd_w + clip_w == 0:
        raise ValueError(
            f"model.sd_loss_weight={sd_w} and model.clip_loss_weight={clip_w}: both must be >= 0 and "
            "at least one > 0"
        )
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"model.condition_dropout={dropout} must lie in [0, 1)")
    if not (train_encoder or train_cross_attention):
        raise ValueError(
            "model.train_encoder and model.train_cross_attention are both false: nothing would learn "
            "but the mappers; set at least one (the paper's rows are E+A, E only, A only)"
        )
    if train_cross_attention and sd_w == 0:
        raise ValueError(
            "model.train_cross_attention=true with model.sd_loss_weight=0: the cross-attention gets no "
            "gradient without L_SD. For the 'CLIP only' row set train_cross_attention: false"
        )


def select_trainable(
    module: nn.Module,
    train_encoder: bool,
    train_cross_attention: bool,
    sd_loss_weight: float,
    clip_loss_weight: float,
    condition_dropout: float,
) -> list[str]:
    """Freeze all of ``module`` (which holds ``condition_model`` and ``unet``), then unfreeze the configured sets
    (see the module docstring); returns the names of the trainable parameters in ``module``, sorted."""
    module.requires_grad_(False)
    use_sd, use_clip = sd_loss_weight > 0, clip_loss_weight > 0
    for name, p in module.condition_model.named_parameters():
        p.requires_grad_(
            (train_encoder and name.startswith("encoder."))
            or (use_sd and name.startswith(MAPPERS))
            or (use_clip and name.startswith(CLIP_HEAD))
            or (use_sd and condition_dropout > 0 and name == "null_condition")
        )
    if train_cross_attention:
        selected = set(cross_attention_parameter_names(module.unet))
        for name, p in module.unet.named_parameters():
            p.requires_grad_(name in selected)
    return sorted(n for n, p in module.named_parameters() if p.requires_grad)
