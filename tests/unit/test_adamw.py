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
            for p, g in zip(params, step, strict=True):
                p.grad = g.clone()
            optimizer.step()
        results.append(params)
    for fused, default in zip(*results, strict=True):
        torch.testing.assert_close(fused, default, rtol=1e-6, atol=1e-7)


def test_a_detached_module_has_no_grad_scaler():
    assert uses_grad_scaler(L.LightningModule()) is False


@pytest.mark.parametrize(("precision", "scaler"), [("bf16-mixed", False), ("32-true", False)])
def test_grad_scaler_is_read_from_the_trainer(precision, scaler, tmp_path):
    module = L.LightningModule()
    trainer = L.Trainer(precision=precision, accelerator="cpu", logger=False, default_root_dir=tmp_path)
    module.trainer = trainer
    assert uses_grad_scaler(module) is scaler


@pytest.mark.parametrize("precision", ["bf16-mixed", "32-true"])
def test_stage1_fits_with_gradient_clipping_and_the_fused_adamw(precision, tmp_path, monkeypatch):
    """Lightning's mixed-precision plugin refuses to clip for a fused optimizer; the module clips itself."""
    from torch.utils.data import DataLoader

    from dreamdiffusion.stages.pretrain import MSMPretrainModule

    class NoExport(MSMPretrainModule):
        def on_fit_end(self) -> None:
            pass

    torch.manual_seed(0)
    module = NoExport(preset="tiny", warmup_epochs=0)
    before = {n: p.detach().clone() for n, p in module.named_parameters()}
    clipped = []
    original = torch.nn.utils.clip_grad_norm_
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_",
                        lambda params, value, **kw: clipped.append(value) or original(params, value, **kw))
    trainer = L.Trainer(accelerator="cpu", precision=precision, gradient_clip_val=0.8, max_steps=2, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=tmp_path)
    trainer.fit(module, train_dataloaders=DataLoader(torch.randn(8, 128, 512), batch_size=4))
    assert trainer.optimizers[0].defaults["fused"] is True
    assert clipped == [0.8, 0.8]
    assert any(not torch.equal(p, before[n]) for n, p in module.named_parameters())


def test_clip_by_value_and_unknown_algorithm():
    from dreamdiffusion.stages.adamw import clip_gradients

    p = torch.nn.Parameter(torch.zeros(3))
    p.grad = torch.tensor([-2.0, 0.1, 3.0])
    optimizer = torch.optim.AdamW([p], fused=True)
    clip_gradients(L.LightningModule(), optimizer, 0.5, "value")
    assert p.grad.tolist() == pytest.approx([-0.5, 0.1, 0.5])
    with pytest.raises(ValueError, match="gradient_clip_algorithm='max'; use 'norm' or 'value'"):
        clip_gradients(L.LightningModule(), optimizer, 0.5, "max")


def test_fused_adamw_under_a_grad_scaler_is_refused_clearly(tmp_path):
    from dreamdiffusion.stages.adamw import clip_gradients

    module = L.LightningModule()
    module.trainer = L.Trainer(precision="16-mixed", accelerator="cpu", logger=False, default_root_dir=tmp_path)
    module.trainer.precision_plugin.scaler = torch.amp.GradScaler("cpu")  # what 16-mixed has on a GPU
    assert uses_grad_scaler(module)
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(3))], fused=True)
    with pytest.raises(RuntimeError, match="fused AdamW under a gradient scaler cannot clip"):
        clip_gradients(module, optimizer, 0.5, "norm")
