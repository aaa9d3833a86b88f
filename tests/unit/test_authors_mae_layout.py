"""Our autoencoder's weights in the authors' ``MAEforEEG`` layout, and the same loss from their code.

The equality test needs the authors' code and timm 0.5.4, which the project never installs: it runs when
``DREAMDIFFUSION_AUTHORS_MAE`` names a folder holding their ``sc_mbm/`` package (their repository's ``code/``
folder) and ``DREAMDIFFUSION_TIMM054`` a folder holding timm 0.5.4 (``pip install --no-deps --target DIR
timm==0.5.4``); otherwise it is skipped with that reason (as in CI).
"""

import os
import sys
from pathlib import Path

import pytest
import torch

from dreamdiffusion.models.authors_mae_layout import (
    authors_prediction_order,
    from_authors_state_dict,
    to_authors_state_dict,
)
from dreamdiffusion.models.mae import MaskedEEGAutoencoder, preset

BLOCK_KEYS = ["norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight", "attn.proj.bias",
              "norm2.weight", "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias"]


def authors_keys(depth: int, decoder_depth: int) -> set[str]:
    """The state-dict keys of the authors' MAEforEEG (timm 0.5.4 blocks, no nature-image decoder)."""
    keys = {"cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias", "norm.weight", "norm.bias",
            "mask_token", "decoder_pos_embed", "decoder_embed.weight", "decoder_embed.bias", "decoder_norm.weight",
            "decoder_norm.bias", "decoder_pred.weight", "decoder_pred.bias"}
    keys |= {f"blocks.{i}.{k}" for i in range(depth) for k in BLOCK_KEYS}
    keys |= {f"decoder_blocks.{i}.{k}" for i in range(decoder_depth) for k in BLOCK_KEYS}
    return keys


@pytest.fixture
def model() -> MaskedEEGAutoencoder:
    torch.manual_seed(0)
    return MaskedEEGAutoencoder(preset("tiny"))


def test_names_are_the_authors_and_the_mapping_round_trips(model):
    theirs = to_authors_state_dict(model)
    assert set(theirs) == authors_keys(model.config.depth, model.config.decoder_depth)
    back = from_authors_state_dict(theirs, model.config)
    ours = model.state_dict()
    assert set(back) == set(ours)
    for key, value in ours.items():
        assert torch.equal(back[key], value), key
    fresh = MaskedEEGAutoencoder(model.config)
    fresh.load_state_dict(back, strict=True)


def test_prediction_head_is_reordered_to_their_time_major_tokens(model):
    """Their token target is x.transpose(1, 2) cut into [patch, channel]; ours is [channel, patch]."""
    x = torch.randn(2, 128, 512)
    p = model.config.patch_size
    their_target = x.transpose(1, 2).reshape(2, 512 // p, -1)  # MAEforEEG.forward_loss + patchify
    perm = authors_prediction_order(model.config)
    assert torch.equal(model.patchify(x)[..., perm], their_target)
    theirs = to_authors_state_dict(model)
    tokens = torch.randn(3, model.config.decoder_embed_dim)
    ours_pred = torch.nn.functional.linear(tokens, model.decoder_pred.weight, model.decoder_pred.bias)
    their_pred = torch.nn.functional.linear(tokens, theirs["decoder_pred.weight"], theirs["decoder_pred.bias"])
    assert torch.equal(their_pred, ours_pred[:, perm])


def test_a_foreign_position_table_is_refused(model):
    theirs = to_authors_state_dict(model)
    table = theirs["pos_embed"].clone()
    theirs["pos_embed"] = torch.cat([torch.zeros_like(table[:, :1]), table[:, :-1]], dim=1)  # the authors' own
    with pytest.raises(ValueError, match="pos_embed .* is not this model's fixed sine-cosine table"):
        from_authors_state_dict(theirs, model.config)


def test_unknown_missing_and_misshapen_tensors_are_named(model):
    theirs = to_authors_state_dict(model)
    extra = dict(theirs, **{"nature_img_mask_token": torch.zeros(1, 1, 32)})
    with pytest.raises(ValueError, match="no counterpart.*nature_img_mask_token.*use_nature_img_loss=False"):
        from_authors_state_dict(extra, model.config)
    lacking = {k: v for k, v in theirs.items() if k != "blocks.1.mlp.fc2.bias"}
    with pytest.raises(ValueError, match=r"lacks \['encoder.blocks.1.mlp.2.bias'\]"):
        from_authors_state_dict(lacking, model.config)
    misshapen = dict(theirs, **{"norm.weight": torch.ones(7)})
    with pytest.raises(ValueError, match=r"norm.weight has shape \(7,\), the encoder.norm.weight .* \(64,\)"):
        from_authors_state_dict(misshapen, model.config)


def _authors_mae_class():
    """The authors' MAEforEEG class, or a skip naming the environment variables that provide it."""
    code, timm_dir = os.environ.get("DREAMDIFFUSION_AUTHORS_MAE"), os.environ.get("DREAMDIFFUSION_TIMM054")
    how = ("set DREAMDIFFUSION_AUTHORS_MAE to a folder holding the authors' sc_mbm/ (their repository's code/) and "
           "DREAMDIFFUSION_TIMM054 to a folder with timm 0.5.4 (pip install --no-deps --target DIR timm==0.5.4)")
    if not code or not timm_dir:
        pytest.skip(f"the authors' code is not available: {how}")
    for folder in (code, timm_dir):
        if not Path(folder).is_dir():
            pytest.skip(f"{folder} is not a folder: {how}")
    saved = list(sys.path)
    sys.path[:0] = [timm_dir, code]
    try:
        import timm
        from sc_mbm.mae_for_eeg import MAEforEEG
    except ImportError as error:
        pytest.skip(f"cannot import the authors' MAEforEEG ({error}): {how}")
    finally:
        sys.path[:] = saved
    if timm.__version__ != "0.5.4":
        pytest.skip(f"timm {timm.__version__} was imported from {timm.__file__}, the authors' code needs 0.5.4: {how}")
    return MAEforEEG


@pytest.mark.parametrize("name", ["tiny", pytest.param("18.3M", marks=pytest.mark.slow)])
def test_same_loss_as_the_authors_code_on_the_same_weights_input_and_mask(name):
    MAEforEEG = _authors_mae_class()
    config = preset(name)
    torch.manual_seed(0)
    ours = MaskedEEGAutoencoder(config)
    theirs = MAEforEEG(
        time_len=config.n_times, patch_size=config.patch_size, embed_dim=config.embed_dim, in_chans=config.n_chans,
        depth=config.depth, num_heads=config.num_heads, decoder_embed_dim=config.decoder_embed_dim,
        decoder_depth=config.decoder_depth, decoder_num_heads=config.decoder_num_heads, mlp_ratio=config.mlp_ratio,
    )
    theirs.load_state_dict(to_authors_state_dict(ours), strict=True)
    x = torch.randn(4, config.n_chans, config.n_times)
    results = []
    for m in (ours, theirs):
        torch.manual_seed(7)  # both draw torch.rand(B, L) once per forward: the same mask
        with torch.no_grad():
            results.append(m(x, mask_ratio=0.75))
    (loss, pred, mask), (their_loss, their_pred, their_mask) = results
    assert torch.equal(mask, their_mask)
    torch.testing.assert_close(loss, their_loss, rtol=1e-5, atol=0)
    torch.testing.assert_close(pred[..., authors_prediction_order(config)], their_pred, rtol=1e-4, atol=1e-5)
