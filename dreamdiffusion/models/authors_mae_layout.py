"""Our masked EEG autoencoder's weights in the parameter layout of the authors' ``MAEforEEG`` and back.

The DreamDiffusion authors' stage-1 model (``code/sc_mbm/mae_for_eeg.py`` of their repository, timm 0.5.4
``Block``s) has the same architecture as :class:`~dreamdiffusion.models.mae.MaskedEEGAutoencoder`; only
names and two layouts differ:

* names: ``encoder.patch_embed`` ↔ ``patch_embed.proj``, ``encoder.blocks.i`` ↔ ``blocks.i``,
  ``encoder.cls_token``/``encoder.norm`` ↔ ``cls_token``/``norm``, ``mlp.0``/``mlp.2`` ↔ ``mlp.fc1``/``mlp.fc2``;
* the prediction head: their token target is ``x.transpose(1, 2)`` cut into ``[patch_size, n_chans]``
  (time-major), ours is ``[n_chans, patch_size]`` (channel-major, :meth:`MaskedEEGAutoencoder.patchify`),
  so the rows of ``decoder_pred`` are permuted;
* the position tables: theirs are (frozen) parameters in the state dict, ours fixed buffers outside it.
  They are not the same table: theirs put a zero row at the cls token and positions ``0 .. L-1`` on the
  patches, ours the sine-cosine of ``0`` on cls and ``1 .. L`` on the patches. :func:`to_authors_state_dict`
  writes **our** tables into theirs, so their model computes our function; :func:`from_authors_state_dict`
  refuses a table that is not ours (weights trained with their table would be read with shifted positions).

With the mapped weights, the same input and the same random mask (same RNG state: both draw
``torch.rand(B, L)`` once per forward), their ``loss`` equals ours and their prediction is ours with the
features reordered (:func:`authors_prediction_order`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from torch import Tensor

from dreamdiffusion.models.mae import MAEConfig, MaskedEEGAutoencoder, position_table

# ours -> theirs; every rule is applied in turn (encoder.blocks.3.mlp.0 -> blocks.3.mlp.0 -> blocks.3.mlp.fc1)
_TO_AUTHORS: list[tuple[str, str]] = [
    (r"^encoder\.patch_embed\.", "patch_embed.proj."),
    (r"^encoder\.(cls_token|norm\.weight|norm\.bias)$", r"\1"),
    (r"^encoder\.blocks\.", "blocks."),
    (r"^((?:decoder_)?blocks\.\d+\.)mlp\.0\.", r"\1mlp.fc1."),
    (r"^((?:decoder_)?blocks\.\d+\.)mlp\.2\.", r"\1mlp.fc2."),
]
_FROM_AUTHORS: list[tuple[str, str]] = [
    (r"^patch_embed\.proj\.", "encoder.patch_embed."),
    (r"^(cls_token|norm\.weight|norm\.bias)$", r"encoder.\1"),
    (r"^((?:decoder_)?blocks\.\d+\.)mlp\.fc1\.", r"\1mlp.0."),
    (r"^((?:decoder_)?blocks\.\d+\.)mlp\.fc2\.", r"\1mlp.2."),
    (r"^blocks\.", "encoder.blocks."),
]
POSITION_KEYS = ("pos_embed", "decoder_pos_embed")


def _rename(key: str, rules: list[tuple[str, str]]) -> str:
    for pattern, target in rules:
        key = re.sub(pattern, target, key)
    return key


def authors_prediction_order(config: MAEConfig) -> Tensor:
    """Index ``perm [C * p]`` with ``theirs[..., i] = ours[..., perm[i]]`` for a token's features.

    Their feature ``j * C + c`` (sample ``j`` of the patch, channel ``c``) is our feature ``c * p + j``.
    """
    c, p = config.n_chans, config.patch_size
    return torch.arange(c * p).view(c, p).t().reshape(-1)


def to_authors_state_dict(model: MaskedEEGAutoencoder) -> dict[str, Tensor]:
    """Our weights under the authors' ``MAEforEEG`` names, ready for ``their_model.load_state_dict(.., strict=True)``.

    ``decoder_pred`` rows are reordered to their time-major token layout; ``pos_embed [1, 1 + L, D]`` and
    ``decoder_pos_embed [1, 1 + L, D_dec]`` hold our position tables (see the module docstring).
    """
    perm = authors_prediction_order(model.config)
    out: dict[str, Tensor] = {}
    for key, value in model.state_dict().items():
        if key.startswith("decoder_pred."):
            value = value[perm]
        out[_rename(key, _TO_AUTHORS)] = value.detach().clone()
    out["pos_embed"] = model.encoder.pos_embed.detach().clone()
    out["decoder_pos_embed"] = model.decoder_pos_embed.detach().clone()
    return out


def from_authors_state_dict(state: Mapping[str, Tensor], config: MAEConfig) -> dict[str, Tensor]:
    """The authors' ``MAEforEEG`` state dict as ours, for ``MaskedEEGAutoencoder(config).load_state_dict(.., strict=True)``.

    Raises ``ValueError`` naming the key when a tensor has no counterpart (e.g. their optional
    ``nature_img_*`` decoder), when ours are missing, when a shape does not fit ``config``, or when a position
    table is not ours.
    """
    with torch.device("meta"):  # names and shapes only
        expected = MaskedEEGAutoencoder(config).state_dict()
    tables = {
        "pos_embed": position_table(config.n_tokens, config.embed_dim, config.position_layout)[None],
        "decoder_pos_embed": position_table(config.n_tokens, config.decoder_embed_dim, config.position_layout)[None],
    }
    inverse = torch.argsort(authors_prediction_order(config))
    out: dict[str, Tensor] = {}
    unknown = []
    for key, value in state.items():
        if key in POSITION_KEYS:
            table = tables[key]
            if value.shape != table.shape or not torch.allclose(value.float(), table, atol=1e-6):
                raise ValueError(
                    f"{key} {tuple(value.shape)} is not this model's fixed sine-cosine table "
                    f"{tuple(table.shape)} (cls at position 0, patches at 1..{config.n_tokens}); the authors' own "
                    "table (zero row for cls, patches at 0..L-1) would shift every position, so these weights "
                    "cannot be loaded unchanged"
                )
            continue
        ours = _rename(key, _FROM_AUTHORS)
        if ours not in expected:
            unknown.append(key)
            continue
        if ours.startswith("decoder_pred."):
            value = value[inverse]
        if value.shape != expected[ours].shape:
            raise ValueError(
                f"{key} has shape {tuple(value.shape)}, the {ours} of this configuration {tuple(expected[ours].shape)}; "
                "build the model with the configuration the weights were trained with"
            )
        out[ours] = value.detach().clone()
    if unknown:
        raise ValueError(f"tensors with no counterpart in MaskedEEGAutoencoder: {unknown[:8]}; only MAEforEEG without "
                         "the nature-image decoder (use_nature_img_loss=False) maps onto it")
    missing = sorted(set(expected) - set(out))
    if missing:
        raise ValueError(f"the authors' state dict lacks {missing[:8]} (of {len(missing)} missing)")
    return out


__all__ = ["authors_prediction_order", "to_authors_state_dict", "from_authors_state_dict", "POSITION_KEYS"]
