"""Stage 1 through the command line, in-process, on the demo config with a tiny budget."""

import json

import pytest
import yaml
from small_corpus import SMALL_CORPUS

from dreamdiffusion.models.encoder_file import load_encoder
from dreamdiffusion.models.mae import preset

TINY_BUDGET = ["--trainer.max_epochs=1", "--trainer.limit_train_batches=3", "--trainer.limit_val_batches=1", *SMALL_CORPUS]


@pytest.mark.slow
def test_fit_demo_config_writes_the_encoder_under_run_dir(cli, repo, demo_run_dir):
    tmp_path = demo_run_dir
    cli("fit", "-c", str(repo / "configs/demo/pretrain.yaml"), f"--run_dir={tmp_path}", *TINY_BUDGET)
    stage = tmp_path / "pretrain"
    assert (stage / "encoder.safetensors").is_file()
    meta = json.loads((stage / "encoder.json").read_text())
    assert meta["preset"] == "tiny" and meta["mask_ratio"] == 0.75
    encoder = load_encoder(stage, expected=preset("tiny"))
    assert encoder.config.embed_dim == 64
    # logs went under the stage folder too, not the default runs/demo
    assert list(stage.glob("lightning_logs/version_*/events.out.tfevents.*"))


def test_print_config_shows_the_paper_values(cli, repo, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli("fit", "-c", str(repo / "configs/pretrain.yaml"), "--print_config")
    assert exit_info.value.code == 0
    config = yaml.safe_load(capsys.readouterr().out)
    model = config["model"]["init_args"]
    assert model["preset"] == "297M" and model["mask_ratio"] == 0.75
    assert model["lr"] == 2.5e-4 and model["warmup_epochs"] == 40 and list(model["betas"]) == [0.9, 0.95]
    assert config["trainer"]["max_epochs"] == 500 and config["trainer"]["gradient_clip_val"] == 0.8
    assert config["data"]["init_args"]["batch_size"] == 100
    assert config["trainer"]["default_root_dir"] == "runs/paper/pretrain"


def test_run_dir_on_the_command_line_moves_the_stage_folder(cli, repo, capsys, tmp_path):
    with pytest.raises(SystemExit):
        cli("fit", "-c", str(repo / "configs/pretrain.yaml"), f"--run_dir={tmp_path}/x", "--print_config")
    config = yaml.safe_load(capsys.readouterr().out)
    assert config["trainer"]["default_root_dir"] == f"{tmp_path}/x/pretrain"


def test_unknown_command_is_refused_with_the_choices(cli, capsys):
    assert cli("train") == 2
    assert "use one of fit, validate, test, predict" in capsys.readouterr().err
