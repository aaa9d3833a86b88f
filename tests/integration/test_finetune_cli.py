"""Stage 2 through the command line and on the synthetic ImageNet-EEG pairs, with tiny real models."""

import json
import re
from pathlib import Path

import pytest
import torch
import yaml
from small_corpus import SMALL_CORPUS

from dreamdiffusion.models.encoder_file import save_encoder
from dreamdiffusion.models.mae import MaskedEEGAutoencoder, preset
from dreamdiffusion.pipeline import DreamDiffusionPipeline

REPO = Path(__file__).resolve().parents[2]
STAGE1_BUDGET = ["--trainer.max_epochs=1", "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1", *SMALL_CORPUS]
ABLATIONS = sorted((REPO / "configs/ablations").glob("finetune_*.yaml"))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run folder as the demo expects it: weights/{sd,clip}, data/ (synthetic pairs), pretrain/ (tiny)."""
    from dreamdiffusion.commands import main as commands_main
    from dreamdiffusion.data.synthetic import write_synthetic_imagenet_eeg

    root = tmp_path_factory.mktemp("run")
    assert commands_main(["weights", "tiny", "--out", str(root / "weights")]) == 0
    write_synthetic_imagenet_eeg(root / "data")
    torch.manual_seed(0)
    save_encoder(MaskedEEGAutoencoder(preset("tiny")).encoder, root / "pretrain", preset="tiny", mask_ratio=0.75)
    return root


def instantiate(monkeypatch, *args):
    """LightningCLI without running: the trainer, model and data module a command line would build."""
    import sys

    from dreamdiffusion.cli import DreamDiffusionCLI

    monkeypatch.setattr(sys, "argv", ["dreamdiffusion"])
    return DreamDiffusionCLI(
        model_class=None, datamodule_class=None, subclass_mode_model=True, subclass_mode_data=True,
        parser_kwargs={"parser_mode": "omegaconf+"}, run=False, args=list(args),
    )


@pytest.mark.slow
def test_stage1_then_stage2_demo_configs_write_a_loadable_pipeline(cli, tmp_path, caplog):
    from dreamdiffusion.data.synthetic import write_synthetic_imagenet_eeg

    assert cli("weights", "tiny", "--out", str(tmp_path / "weights")) == 0
    write_synthetic_imagenet_eeg(tmp_path / "data")
    cli("fit", "-c", str(REPO / "configs/demo/pretrain.yaml"), f"--run_dir={tmp_path}", *STAGE1_BUDGET)
    cli(
        "fit", "-c", str(REPO / "configs/demo/finetune.yaml"), f"--run_dir={tmp_path}",
        "--trainer.max_epochs=2", "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=2",
        "--trainer.check_val_every_n_epoch=1", "--checkpoint.monitor=val/loss",  # the export of the best weights
        "--model.init_args.val_sample_every_n_epochs=1", "--model.init_args.val_num_inference_steps=2",
    )
    stage = tmp_path / "finetune"
    pipe = DreamDiffusionPipeline.from_pretrained(stage / "pipeline")
    export = json.loads((stage / "export.json").read_text())
    assert export["weights"] == "best" and export["monitor"] == "val/loss"
    assert Path(export["checkpoint"]).parent == stage / "checkpoints"
    card = (stage / "pipeline" / "README.md").read_text()  # the model card names the run's data and score
    assert f"ImageNetEEGDataModule ({tmp_path / 'data'}" in card and f"| val/loss | {export['score']:.4g} |" in card
    condition = pipe.encode_eeg(torch.randn(2, 128, 512))
    assert pipe.predict_noise(torch.randn(2, 4, 8, 8), 10, condition).shape == (2, 4, 8, 8)
    # the checkpoint holds the trainable part only: no VAE, no CLIP, no frozen UNet weight
    state = torch.load(export["checkpoint"], map_location="cpu", weights_only=True)["state_dict"]
    assert not any(k.startswith(("vae.", "clip.")) for k in state)
    assert {k for k in state if k.startswith("unet.")} and all(re.search(r"\.(attn2|norm2)\.", k) for k in state if k.startswith("unet."))
    # the validation metrics and the sample grid reached TensorBoard
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(next(stage.glob("lightning_logs/version_*")))).Reload()
    assert {"val/loss", "val/loss_sd", "val/loss_clip", "val/retrieval_top1"} <= set(events.Tags()["scalars"])
    assert "val/samples" in events.Tags()["images"]
    # re-running the command resumes from last.ckpt, whose frozen UNet/VAE/CLIP weights were left out
    cli(
        "fit", "-c", str(REPO / "configs/demo/finetune.yaml"), f"--run_dir={tmp_path}",
        "--trainer.max_epochs=3", "--trainer.limit_train_batches=1", "--trainer.limit_val_batches=2",
        "--trainer.check_val_every_n_epoch=1", "--model.init_args.val_sample_every_n_epochs=0",
    )
    assert f"resuming from {stage / 'checkpoints' / 'last.ckpt'}" in caplog.text
    assert json.loads((stage / "export.json").read_text())["fit_end_global_step"] == 2 * 2 + 1  # afresh: 3


@pytest.mark.slow
def test_loss_falls_on_the_synthetic_pairs(run_dir, monkeypatch, tmp_path):
    built = instantiate(
        monkeypatch, "-c", str(REPO / "configs/demo/finetune.yaml"), f"--run_dir={run_dir}",
        f"--trainer.default_root_dir={tmp_path}", "--trainer.max_epochs=6", "--trainer.check_val_every_n_epoch=1",
        "--trainer.logger=false", "--model.init_args.val_sample_every_n_epochs=0",
    )
    trainer, model, data = built.trainer, built.model, built.datamodule
    before = trainer.validate(model, datamodule=data, verbose=False)[0]
    trainer.fit(model, datamodule=data)
    after = trainer.validate(model, datamodule=data, verbose=False)[0]
    assert after["val/loss_sd"] < before["val/loss_sd"], (before, after)
    assert after["val/loss_clip"] < before["val/loss_clip"], (before, after)
    assert (tmp_path / "pipeline" / "model_index.json").is_file()
    # the demo gives every row the same budget: no selection, the last weights are exported
    assert json.loads((tmp_path / "export.json").read_text())["weights"] == "last"


def test_paper_config_prints_the_paper_values(cli, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli("fit", "-c", str(REPO / "configs/finetune.yaml"), "--print_config")
    assert exit_info.value.code == 0
    config = yaml.safe_load(capsys.readouterr().out)
    model, data, trainer = config["model"]["init_args"], config["data"]["init_args"], config["trainer"]
    from dreamdiffusion.models.backbones import CLIP_VIT_L14, SD15

    assert model["sd_model"] == SD15 and model["clip_model"] == CLIP_VIT_L14  # names only: nothing is fetched
    assert model["lr"] == 5.3e-5 and model["clip_loss_weight"] == 1.0 and model["sd_loss_weight"] == 1.0
    assert model["train_encoder"] and model["train_cross_attention"] and model["encoder_preset"] == "297M"
    assert model["encoder_dir"] == "runs/paper/pretrain"
    assert data["image_size"] == 512 and data["batch_size"] == 25 and data["subject"] == 4
    assert trainer["gradient_clip_val"] == 0.5 and trainer["max_epochs"] == 300 and trainer["precision"] == "bf16-mixed"
    assert trainer["default_root_dir"] == "runs/paper/finetune"
    assert config["checkpoint"]["monitor"] == "val/loss"


@pytest.mark.parametrize("overlay", ABLATIONS, ids=[p.stem for p in ABLATIONS])
def test_each_ablation_overlay_reads_its_stage1_run_and_writes_its_own_folder(cli, capsys, overlay, tmp_path):
    with pytest.raises(SystemExit):
        cli("fit", "-c", str(REPO / "configs/finetune.yaml"), "-c", str(overlay), f"--run_dir={tmp_path}", "--print_config")
    config = yaml.safe_load(capsys.readouterr().out)
    tag = overlay.stem.removeprefix("finetune_")
    model = config["model"]["init_args"]
    assert config["trainer"]["default_root_dir"] == f"{tmp_path}/finetune_{tag}"
    stage1 = REPO / f"configs/ablations/pretrain_{tag}.yaml"
    if stage1.is_file():  # mask ratio and encoder size rows: the matching stage-1 overlay writes what stage 2 reads
        with pytest.raises(SystemExit):
            cli("fit", "-c", str(REPO / "configs/pretrain.yaml"), "-c", str(stage1), f"--run_dir={tmp_path}", "--print_config")
        pre = yaml.safe_load(capsys.readouterr().out)
        assert pre["trainer"]["default_root_dir"] == model["encoder_dir"] == f"{tmp_path}/pretrain_{tag}"
        assert pre["model"]["init_args"]["preset"] == model["encoder_preset"]
        if tag.startswith("mask"):
            assert pre["model"]["init_args"]["mask_ratio"] == float(tag.removeprefix("mask"))
        else:
            assert model["encoder_preset"] == tag
    expected = {
        "no_pretrain": dict(encoder_dir=None), "no_pretrain_18.3M": dict(encoder_dir=None, encoder_preset="18.3M"),
        "no_pretrain_no_clip": dict(encoder_dir=None, clip_loss_weight=0.0),
        "no_pretrain_no_clip_18.3M": dict(encoder_dir=None, clip_loss_weight=0.0, encoder_preset="18.3M"),
        "e_only": dict(train_encoder=True, train_cross_attention=False),
        "a_only": dict(train_encoder=False, train_cross_attention=True, clip_loss_weight=0.0),
        "no_clip": dict(clip_loss_weight=0.0, sd_loss_weight=1.0),
        "clip_only": dict(sd_loss_weight=0.0, clip_loss_weight=1.0, train_cross_attention=False),
    }.get(tag, {})
    for key, value in expected.items():
        assert model[key] == value, key


@pytest.mark.slow
def test_each_ablation_overlay_instantiates_on_the_demo(run_dir, monkeypatch):
    """Every overlay composes with the demo config and builds trainer, module and data (tiny encoders)."""
    for tag in ("mask0.25", "mask0.5", "mask0.85", "458M", "162M", "74M", "18.3M"):
        save_encoder(MaskedEEGAutoencoder(preset("tiny")).encoder, run_dir / f"pretrain_{tag}", preset="tiny")
    for overlay in ABLATIONS:
        built = instantiate(
            monkeypatch, "-c", str(REPO / "configs/demo/finetune.yaml"), "-c", str(overlay), f"--run_dir={run_dir}",
            "--model.init_args.encoder_preset=tiny",  # the demo's encoder size; the paper sizes are checked above
        )
        module = built.model
        tag = overlay.stem.removeprefix("finetune_")
        assert built.trainer.default_root_dir == str(run_dir / f"finetune_{tag}")
        assert built.trainer.checkpoint_callback.dirpath == str(run_dir / f"finetune_{tag}" / "checkpoints")
        assert built.trainer.checkpoint_callback.monitor is None  # same budget for every row: no selection
        assert (module.hparams.encoder_dir is None) == tag.startswith("no_pretrain")
        names = module.trainable_names
        assert any(n.startswith("unet.") for n in names) == module.hparams.train_cross_attention, tag
        assert any(n.startswith("condition_model.encoder.") for n in names) == module.hparams.train_encoder, tag
        assert any(n.startswith("condition_model.clip_proj.") for n in names) == (module.hparams.clip_loss_weight > 0), tag
