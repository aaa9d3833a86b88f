import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from dreamdiffusion.models.mae import (
    PAPER_PARAMETERS,
    PRESETS,
    EEGEncoder,
    MaskedEEGAutoencoder,
    count_parameters,
    flops_per_window,
    preset,
)


@pytest.fixture
def model() -> MaskedEEGAutoencoder:
    torch.manual_seed(0)
    return MaskedEEGAutoencoder(preset("tiny"))


def test_shapes_through_encode_and_forward(model):
    x = torch.randn(3, 128, 512)
    tokens = model.encode(x)
    assert tokens.shape == (3, 128, 64)
    loss, pred, mask = model(x, mask_ratio=0.75)
    assert loss.ndim == 0
    assert pred.shape == (3, 128, 4 * 128)
    assert mask.shape == (3, 128)


def test_patchify_round_trip_and_token_layout(model):
    x = torch.randn(2, 128, 512)
    tokens = model.patchify(x)
    # token 5 holds samples 20..23 of every channel
    assert torch.equal(tokens[0, 5].view(128, 4), x[0, :, 20:24])
    assert torch.equal(model.unpatchify(tokens), x)


@pytest.mark.parametrize("ratio", [0.25, 0.5, 0.75, 0.85])
def test_mask_ratio_is_exact_per_sample(model, ratio):
    _, _, mask = model(torch.randn(4, 128, 512), mask_ratio=ratio)
    expected = 128 - int(128 * (1 - ratio))
    assert mask.sum(dim=1).tolist() == [expected] * 4
    # different samples get different masks
    assert not torch.equal(mask[0], mask[1])


def test_loss_depends_only_on_masked_tokens(model):
    x = torch.randn(2, 128, 512)
    pred = torch.randn(2, 128, 512)
    mask = torch.zeros(2, 128)
    mask[:, ::3] = 1
    base = model.forward_loss(x, pred, mask)
    changed = pred.clone()
    changed[mask == 0] += 10.0  # visible tokens only
    assert torch.equal(model.forward_loss(x, changed, mask), base)
    changed[mask == 1] += 1.0
    assert model.forward_loss(x, changed, mask) > base


def test_normalized_target_option_changes_the_target():
    torch.manual_seed(0)
    x = 5 + 3 * torch.randn(1, 128, 512)
    pred = torch.zeros(1, 128, 512)
    mask = torch.ones(1, 128)
    plain = MaskedEEGAutoencoder(preset("tiny")).forward_loss(x, pred, mask)
    normed = MaskedEEGAutoencoder(preset("tiny"), normalize_target=True).forward_loss(x, pred, mask)
    assert plain > 30  # mean 5, std 3: E[x^2] = 34
    assert normed == pytest.approx(1.0, abs=0.05)


@pytest.mark.parametrize("name", sorted(PAPER_PARAMETERS))
def test_preset_parameter_count_within_10_percent_of_table_2(name):
    with torch.device("meta"):
        encoder = EEGEncoder(PRESETS[name])
    count = count_parameters(encoder)
    assert abs(count - PAPER_PARAMETERS[name]) / PAPER_PARAMETERS[name] < 0.10, (name, count)


@pytest.mark.parametrize(("name", "ratio"), [("tiny", 0.75), ("tiny", 0.5), ("18.3M", 0.75)])
def test_flops_per_window_matches_torch_flop_counter(name, ratio):
    """benchmarks/pretrain_step.py turns this count into achieved GFLOP/s; it must be the real one."""
    torch.manual_seed(0)
    model = MaskedEEGAutoencoder(PRESETS[name])
    # the math backend runs attention as visible bmm's; the fused CPU kernel is not counted by torch
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model(torch.randn(2, 128, 512), mask_ratio=ratio)
    counted = counter.get_total_flops() / 2
    assert flops_per_window(PRESETS[name], ratio) == pytest.approx(counted, rel=0.01)


def test_unknown_preset_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown encoder preset 'huge'"):
        preset("huge")


def test_nan_window_is_refused(model):
    x = torch.randn(2, 128, 512)
    x[1, 7, 100] = float("nan")
    with pytest.raises(ValueError, match="NaN or Inf"):
        model(x)
    with pytest.raises(ValueError, match="NaN or Inf"):
        model.encode(x)


def test_wrong_channel_count_is_refused(model):
    with pytest.raises(ValueError, match=r"shape \(2, 64, 512\).*128 channels"):
        model.encode(torch.randn(2, 64, 512))


@pytest.mark.slow
def test_loss_falls_on_a_learnable_signal():
    """Sums of a few sines with random phases: masked parts are predictable from the visible ones."""
    torch.manual_seed(0)
    model = MaskedEEGAutoencoder(preset("tiny"))
    t = torch.arange(512) / 512
    freqs = torch.tensor([3.0, 7.0, 11.0])
    mixing = torch.randn(128, 3)

    def batch(n: int) -> torch.Tensor:
        phase = 2 * torch.pi * torch.rand(n, 3, 1)
        sources = torch.sin(2 * torch.pi * freqs[None, :, None] * t + phase)  # [n, 3, T]
        return torch.einsum("cs,nst->nct", mixing, sources)

    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    val = batch(16)
    with torch.no_grad():
        before = model(val)[0].item()
    for _ in range(400):  # the tiny model first learns the mean, then the phases (~250 steps)
        loss, _, _ = model(batch(16))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        after = model(val)[0].item()
    assert after < 0.6 * before, (before, after)


def test_authors_152M_preset_has_their_parameter_count():
    from dreamdiffusion.models.mae import AUTHORS_PARAMETERS

    with torch.device("meta"):
        encoder = EEGEncoder(PRESETS["152M"])
    assert PRESETS["152M"].mlp_ratio == 1.0
    assert abs(count_parameters(encoder) - AUTHORS_PARAMETERS["152M"]) / AUTHORS_PARAMETERS["152M"] < 0.02


@pytest.mark.parametrize(
    ("device", "dtype", "kernel"),
    [
        ("cpu", torch.bfloat16, "matmul"),
        ("cpu", torch.float16, "matmul"),
        ("cpu", torch.float32, "sdpa"),
        ("cuda", torch.bfloat16, "sdpa"),
        ("cuda", torch.float32, "sdpa"),
    ],
)
def test_attention_kernel_per_device_and_dtype(device, dtype, kernel):
    from dreamdiffusion.models.mae import attention_kernel

    assert attention_kernel(torch.device(device), dtype) == kernel


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)])
def test_matmul_attention_gives_the_fused_kernels_output_and_gradients(dtype, tol):
    from dreamdiffusion.models.mae import matmul_attention

    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 4, 33, 64, requires_grad=True) for _ in range(3))
    grad = torch.randn(2, 4, 33, 64)
    outputs = []
    for attention in (matmul_attention, torch.nn.functional.scaled_dot_product_attention):
        low = [t.detach().to(dtype).requires_grad_() for t in (q, k, v)]
        out = attention(*low)
        out.backward(grad.to(dtype))
        outputs.append([out.float()] + [t.grad.float() for t in low])
    for mine, fused in zip(*outputs, strict=True):
        torch.testing.assert_close(mine, fused, rtol=tol, atol=tol)


def _tiny_loss(monkeypatch, kernel: str | None, bf16: bool) -> torch.Tensor:
    import dreamdiffusion.models.mae as mae

    if kernel is not None:
        monkeypatch.setattr(mae, "attention_kernel", lambda device, dtype: kernel)
    torch.manual_seed(0)
    model = MaskedEEGAutoencoder(preset("tiny"))
    x = torch.randn(4, 128, 512)
    torch.manual_seed(1)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        return model(x, mask_ratio=0.75)[0]


def test_model_takes_the_matmul_path_in_bf16_on_cpu_and_sdpa_in_fp32(monkeypatch):
    calls = []
    sdpa = torch.nn.functional.scaled_dot_product_attention
    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", lambda *a, **kw: calls.append(1) or sdpa(*a, **kw))
    _tiny_loss(monkeypatch, None, bf16=True)
    assert calls == []
    _tiny_loss(monkeypatch, None, bf16=False)
    assert len(calls) == preset("tiny").depth + preset("tiny").decoder_depth


def test_loss_is_unchanged_by_the_attention_kernel(monkeypatch):
    """fp32 (the fused kernel either way) is bit-identical; bf16 autocast agrees to bf16 precision."""
    fp32 = _tiny_loss(monkeypatch, None, bf16=False)
    assert torch.equal(fp32, _tiny_loss(monkeypatch, "sdpa", bf16=False))
    matmul, fused = _tiny_loss(monkeypatch, "matmul", bf16=True), _tiny_loss(monkeypatch, "sdpa", bf16=True)
    torch.testing.assert_close(matmul, fused, rtol=5e-3, atol=0)
    torch.testing.assert_close(matmul, fp32, rtol=2e-2, atol=0)


def test_positions_follow_the_authors_table_zero_for_cls_then_patches_from_zero():
    """The authors' MAEforEEG: get_1d_sincos_pos_embed(D, L, cls_token=True) — a zero row, then sin | cos of
    positions 0..L-1 at frequencies 1 / 10000^(2i/D)."""
    import numpy as np

    from dreamdiffusion.models.mae import MAEConfig, MaskedEEGAutoencoder, position_table

    n_tokens, dim = 6, 8
    omega = 1.0 / 10000 ** (np.arange(dim // 2) / (dim / 2))
    angles = np.arange(n_tokens)[:, None] * omega[None, :]
    expected = np.concatenate([np.zeros((1, dim)), np.concatenate([np.sin(angles), np.cos(angles)], axis=1)])
    assert np.allclose(position_table(n_tokens, dim).numpy(), expected, atol=1e-6)
    shifted = position_table(n_tokens, dim, "shifted")
    assert torch.allclose(shifted[1:-1], position_table(n_tokens, dim)[2:]) and shifted[0].abs().sum() > 0
    config = MAEConfig(n_chans=4, n_times=24, patch_size=4, embed_dim=8, depth=1, num_heads=2,
                       decoder_embed_dim=8, decoder_depth=1, decoder_num_heads=2)
    model = MaskedEEGAutoencoder(config)
    assert torch.equal(model.encoder.pos_embed[0], position_table(6, 8)) and config.position_layout == "authors"
    with pytest.raises(ValueError, match="position_layout='diagonal'"):
        MAEConfig(position_layout="diagonal")


def test_forward_loss_gives_the_plain_squared_error_value_and_gradient(model):
    """The fused ``mse_loss`` in ``forward_loss`` against the formula written out: masked mean of per-token MSE."""
    torch.manual_seed(0)
    x = torch.randn(3, model.config.n_chans, model.config.n_times)
    pred = torch.randn(3, model.config.n_tokens, model.config.n_chans * model.config.patch_size, requires_grad=True)
    mask = (torch.rand(3, model.config.n_tokens) < 0.75).float()
    loss = model.forward_loss(x, pred, mask)
    (grad,) = torch.autograd.grad(loss, pred)
    plain_pred = pred.detach().clone().requires_grad_(True)
    per_token = (plain_pred - model.patchify(x)).pow(2).mean(dim=-1)
    plain = (per_token * mask).sum() / mask.sum()
    (plain_grad,) = torch.autograd.grad(plain, plain_pred)
    assert torch.allclose(loss, plain, rtol=1e-6, atol=0) and torch.allclose(grad, plain_grad, rtol=1e-6, atol=1e-12)
    assert grad[mask.bool()].abs().sum() > 0 and grad[~mask.bool()].abs().sum() == 0  # kept tokens get no gradient
