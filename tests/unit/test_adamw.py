import lightning as L
import pytest
import torch

from dreamdiffusion.stages.adamw import adamw_implementation, build_adamw, uses_grad_scaler


@pytest.mark.parametrize(
    ("devices", "scaler", "expected"),
    [
        ({"cpu"}, False, {"fused": True}),
        ({"cuda"}, False, {"fused": True}),
        ({"cuda"}, True, {}),  # Lightning refuses clipping with a fused optimizer under a gradient scaler
        ({"cpu", "cuda"}, False, {}),
        ({"mps"}, False, {}),
        (set(), False, {}),
    ],
)
def test_adamw_implementation_per_device_and_scaler(devices, scaler, expected):
    assert adamw_implementation(devices, scaler) == expected


def test_fused_adamw_steps_like_the_default_one():
    """The chosen implementation changes the speed, not the update (fixed gradients, 5 steps, two groups)."""
    torch.manual_seed(0)
    weights = [torch.randn(64, 32), torch.randn(32)]
    grads = [[torch.randn_like(w) for w in weights] for _ in range(5)]
    results = []
    for chosen in (True, False):
        params = [torch.nn.Parameter(w.clone()) for w in weights]
        groups = [{"params": params[:1], "weight_decay": 0.05}, {"params": params[1:], "weight_decay": 0.0}]
        kwargs = dict(lr=1e-2, betas=(0.9, 0.95))
        optimizer = build_adamw(L.LightningModule(), groups, **kwargs) if chosen else torch.optim.AdamW(groups, **kwargs)
        assert optimizer.defaults["fused"] is (True if chosen else None)
        for step in grads:
            for p, g in zip(params, step):
                p.grad = g.clone()
            optimizer.step()
        results.append(params)
    for fused, default in zip(*results):
        torch.testing.assert_close(fused, default, rtol=1e-6, atol=1e-7)


def test_a_detached_module_has_no_grad_scaler():
    assert uses_grad_scaler(L.LightningModule()) is False


@pytest.mark.parametrize(("precision", "scaler"), [("bf16-mixed", False), ("32-true", False)])
def test_grad_scaler_is_read_from_the_trainer(precision, scaler, tmp_path):
    module = L.LightningModule()
    trainer = L.Trainer(precision=precision, accelerator="cpu", logger=False, default_root_dir=tmp_path)
    module.trainer = trainer
    assert uses_grad_scaler(module) is scaler
