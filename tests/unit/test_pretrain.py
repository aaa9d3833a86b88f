import pytest
import torch

from dreamdiffusion.stages.pretrain import MSMPretrainModule, param_groups, warmup_cosine


def test_no_weight_decay_on_biases_norms_and_tokens():
    module = MSMPretrainModule(preset="tiny")
    decay, no_decay = param_groups(module.model, 0.05)
    names = {id(p): n for n, p in module.model.named_parameters()}
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    no_decay_names = {names[id(p)] for p in no_decay["params"]}
    decay_names = {names[id(p)] for p in decay["params"]}
    assert "encoder.cls_token" in no_decay_names and "mask_token" in no_decay_names
    assert all(n.endswith("bias") or "norm" in n or n.endswith("token") for n in no_decay_names)
    assert "encoder.blocks.0.attn.qkv.weight" in decay_names
    assert "encoder.patch_embed.weight" in decay_names


def test_warmup_then_half_cosine():
    lrs = [warmup_cosine(s, warmup_steps=10, total_steps=110) for s in range(110)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a <= b for a, b in zip(lrs[:9], lrs[1:10], strict=True))
    assert lrs[60] == pytest.approx(0.5, abs=0.02)
    assert all(a >= b for a, b in zip(lrs[10:-1], lrs[11:], strict=True))
    assert lrs[-1] < 0.01


def test_bad_mask_ratio_names_the_key():
    with pytest.raises(ValueError, match=r"model.mask_ratio=1.2"):
        MSMPretrainModule(preset="tiny", mask_ratio=1.2)


def test_reconstruction_figure_has_one_axis_per_channel():
    module = MSMPretrainModule(preset="tiny", plot_channels=3)
    fig = module.reconstruction_figure(torch.randn(1, 128, 512))
    assert len(fig.axes) == 3
    assert [len(ax.lines) for ax in fig.axes] == [3, 3, 3]
