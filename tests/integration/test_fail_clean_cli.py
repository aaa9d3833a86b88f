"""User mistakes and faults through the real `dreamdiffusion` command: one line, exit 2, nothing lost or mislabelled."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from small_corpus import SMALL_CORPUS

from dreamdiffusion.atomic import host_tag

REPO = Path(__file__).resolve().parents[2]
DEMO = str(REPO / "configs/demo/pretrain.yaml")
BUDGET = ["--trainer.max_epochs=1", "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1",
          "--trainer.enable_progress_bar=false"]


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err[-3000:]
    return lines[0]


@pytest.mark.slow
def test_resume_refuses_other_settings_and_damaged_checkpoints_and_continues_a_longer_budget(cli, demo_run_dir, capsys, caplog):
    run = demo_run_dir
    assert cli("fit", "-c", DEMO, f"--run_dir={run}", *BUDGET) == 0
    stage = run / "pretrain"
    exported = {name: (stage / name).read_bytes() for name in ("encoder.json", "encoder.safetensors")}
    last = stage / "checkpoints" / "last.ckpt"
    capsys.readouterr()

    assert cli("fit", "-c", DEMO, f"--run_dir={run}", *BUDGET, "--model.init_args.mask_ratio=0.5") == 2
    line = one_error_line(capsys)
    assert "model.init_args.mask_ratio: 0.75 in the checkpoint, 0.5 now" in line and "--resume=false" in line
    assert cli("fit", "-c", DEMO, f"--run_dir={run}", *BUDGET, "--model.init_args.preset=18.3M") == 2
    assert "model.init_args.preset: 'tiny' in the checkpoint, '18.3M' now" in one_error_line(capsys)
    good = last.read_bytes()
    last.write_bytes(good[: len(good) // 2])
    assert cli("fit", "-c", DEMO, f"--run_dir={run}", *BUDGET) == 2
    assert f"cannot resume from {last}" in one_error_line(capsys)
    # nothing was rewritten by the refused runs, and they left no lock behind
    assert {name: (stage / name).read_bytes() for name in exported} == exported
    assert not (stage / ".dreamdiffusion.lock").exists()

    last.write_bytes(good)
    # what a run killed during its export leaves: a temporary of this host's dead writer, and an old-style one
    killed = subprocess.Popen([sys.executable, "-c", "pass"])
    killed.wait()
    litter = [stage / f".encoder.safetensors.tmp-{killed.pid}-{host_tag()}-x1", stage / ".pipeline.tmp-q8w7"]
    litter[0].write_bytes(b"half an export")
    litter[1].mkdir()
    os.utime(litter[1], (1, 1))
    assert cli("fit", "-c", DEMO, f"--run_dir={run}", *BUDGET, "--trainer.max_epochs=2") == 0
    assert not any(path.exists() for path in litter)
    assert "larger budget (trainer.max_epochs 1 -> 2)" in caplog.text
    assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] == 4
    assert json.loads((stage / "encoder.json").read_text())["global_step"] == 4


def test_ckpt_path_of_other_settings_or_absent_is_refused_before_training(cli, capsys, tmp_path):
    from dreamdiffusion.cli import parse_stage
    from dreamdiffusion.resume_check import CHECKPOINT_KEY, stage_settings

    run = [f"--run_dir={tmp_path}", *BUDGET, *SMALL_CORPUS]
    kept = tmp_path / "elsewhere" / "kept.ckpt"
    kept.parent.mkdir()
    # what fit records in its checkpoints, for the very same command line
    torch.save({"state_dict": {}, CHECKPOINT_KEY: stage_settings(parse_stage(["-c", DEMO, *run]).as_dict())}, kept)
    assert cli("fit", "-c", DEMO, *run, f"--ckpt_path={kept}", "--model.init_args.mask_ratio=0.5") == 2
    line = one_error_line(capsys)
    assert f"{kept} was trained with other settings" in line
    assert "model.init_args.mask_ratio: 0.75 in the checkpoint, 0.5 now" in line and "leave --ckpt_path out" in line
    assert cli("fit", "-c", DEMO, *run, f"--ckpt_path={tmp_path / 'absent.ckpt'}") == 2
    assert f"--ckpt_path={tmp_path / 'absent.ckpt'}: no such checkpoint file" in one_error_line(capsys)
    assert not (tmp_path / "pretrain" / "lightning_logs").exists() and not (tmp_path / "moabb_cache").exists()


@pytest.mark.slow
def test_ckpt_path_continues_a_given_checkpoint_of_the_same_settings(cli, demo_run_dir, capsys, caplog, tmp_path):
    import shutil

    from dreamdiffusion.resume_check import last_checkpoint

    run = [f"--run_dir={demo_run_dir}", *BUDGET, *SMALL_CORPUS]
    assert cli("fit", "-c", DEMO, *run, "--resume=false") == 0
    checkpoints = demo_run_dir / "pretrain" / "checkpoints"
    kept = tmp_path / "epoch0.ckpt"  # a checkpoint kept aside: the one to continue, whatever the folder holds
    shutil.copy(next(checkpoints.glob("epoch=0-*.ckpt")), kept)
    capsys.readouterr()
    # Lightning alone would build the model from the checkpoint's hyper-parameters and drop this mask_ratio
    assert cli("fit", "-c", DEMO, *run, f"--ckpt_path={kept}", "--model.init_args.mask_ratio=0.5", "--trainer.max_epochs=2") == 2
    assert "model.init_args.mask_ratio: 0.75 in the checkpoint, 0.5 now" in one_error_line(capsys)

    assert cli("fit", "-c", DEMO, *run, "--resume=false", f"--ckpt_path={kept}", "--trainer.max_epochs=2") == 0
    assert f"resuming from {kept} with a larger budget (trainer.max_epochs 1 -> 2); from --ckpt_path" in caplog.text
    assert f"Restored all states from the checkpoint at {kept}" in caplog.text  # Lightning loaded the file checked
    last = torch.load(last_checkpoint(checkpoints), map_location="cpu", weights_only=True)
    # the epoch count went on: epoch 0 came from the checkpoint, one more epoch (2 steps) was trained
    assert last["global_step"] == 4 and last["loops"]["fit_loop"]["epoch_progress"]["total"]["completed"] == 2
    assert json.loads((demo_run_dir / "pretrain" / "encoder.json").read_text())["global_step"] == 4


def test_a_second_run_on_one_stage_folder_is_refused_with_the_holder(cli, demo_run_dir, capsys, hold_lock):
    holder = hold_lock(demo_run_dir / "pretrain")
    assert cli("fit", "-c", DEMO, f"--run_dir={demo_run_dir}", *BUDGET) == 2
    line = one_error_line(capsys)
    assert f"pid {holder.pid}" in line and "in use" in line
    assert not (demo_run_dir / "pretrain" / "lightning_logs").exists()


def test_a_bad_value_is_one_line_without_the_jsonargparse_dump(cli, capsys, tmp_path):
    assert cli("fit", "-c", DEMO, f"--run_dir={tmp_path}", "--model.init_args.mask_ratio=1.5") == 2
    assert one_error_line(capsys) == "error: model.mask_ratio=1.5 must lie in [0, 1)"


def test_config_mistakes_name_the_config_file(cli, capsys, tmp_path):
    typo = tmp_path / "typo.yaml"
    typo.write_text(Path(DEMO).read_text().replace("mask_ratio: 0.75", "mask_ration: 0.75"))
    assert cli("fit", "-c", str(typo)) == 2
    line = one_error_line(capsys)
    assert "'mask_ration' is not accepted" in line and str(typo) in line
    broken = tmp_path / "broken.yaml"
    broken.write_text("run_dir: x\ntrainer: [\n  max_epochs: 1\n")
    assert cli("fit", "-c", DEMO, "-c", str(broken)) == 2
    line = one_error_line(capsys)
    assert f"{broken}: not valid YAML at line 4" in line
    assert cli("fit", "-c", str(tmp_path / "absent.yaml")) == 2
    assert "absent.yaml cannot be read" in one_error_line(capsys)


def test_an_unexpected_exception_keeps_its_traceback(cli, tmp_path, monkeypatch):
    from dreamdiffusion.stages import pretrain

    def broken(*args, **kwargs):
        raise RuntimeError("a bug, not a user mistake")

    monkeypatch.setattr(pretrain.MSMPretrainModule, "__init__", broken)
    with pytest.raises(Exception) as info:
        cli("fit", "-c", DEMO, f"--run_dir={tmp_path}")
    assert any("a bug" in str(e) for e in [info.value, info.value.__cause__, info.value.__context__] if e)


def test_debug_shows_the_traceback_of_a_user_error(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("DREAMDIFFUSION_DEBUG", "1")
    with pytest.raises(ValueError):
        cli("fit", "-c", DEMO, f"--run_dir={tmp_path}", "--model.init_args.mask_ratio=1.5")


@pytest.mark.slow
def test_the_entry_point_prints_one_line_and_exits_2(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("run_dir: x\ntrainer: [\n  max_epochs: 1\n")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "dreamdiffusion", "fit", "-c", str(broken)],
                            cwd=REPO, env=env, capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {broken}: not valid YAML at line 4, column 1: expected ',' or ']', but got '<stream end>'; fix the file"
    ]


@pytest.mark.slow
def test_two_fit_processes_on_one_run_folder_the_second_is_refused(demo_run_dir):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "dreamdiffusion", "fit", "-c", DEMO, f"--run_dir={demo_run_dir}",
               "--trainer.enable_progress_bar=false"]
    first = subprocess.Popen([*command, "--trainer.max_epochs=50"], cwd=REPO, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        lock = demo_run_dir / "pretrain" / ".dreamdiffusion.lock"
        deadline = time.time() + 120
        while not lock.is_file() and time.time() < deadline:
            assert first.poll() is None
            time.sleep(0.1)
        second = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
        assert first.poll() is None, "the first run must still hold the folder"
        assert second.returncode == 2
        assert f"error: {demo_run_dir / 'pretrain'} is in use by pid {first.pid}" in second.stderr
        assert "Traceback" not in second.stderr
    finally:
        first.kill()
        first.wait()
    assert len(list((demo_run_dir / "pretrain" / "lightning_logs").glob("version_*"))) <= 1
