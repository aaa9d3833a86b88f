"""A stage killed mid-epoch and re-run with the same command ends with the same weights."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from small_corpus import SMALL_CORPUS

REPO = Path(__file__).resolve().parents[2]
BUDGET = ["--trainer.max_epochs=2", "--trainer.limit_train_batches=8", "--trainer.limit_val_batches=2",
          "--checkpoint.every_n_train_steps=1", "--trainer.enable_progress_bar=false", "--data.init_args.batch_size=8", *SMALL_CORPUS]


def stage1(run_dir: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(REPO), str(Path(__file__).parent)])}
    return subprocess.Popen(
        [sys.executable, "-m", "dreamdiffusion", "fit", "-c", str(REPO / "configs/demo/pretrain.yaml"),
         f"--run_dir={run_dir}", *BUDGET, *extra],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def global_step(ckpt: Path) -> int:
    return int(torch.load(ckpt, map_location="cpu", weights_only=True)["global_step"])


@pytest.mark.slow
def test_killed_mid_epoch_then_resumed_gives_the_same_weights(demo_run_dir):
    import shutil

    tmp_path = demo_run_dir
    for run in ("straight", "interrupted"):
        shutil.copytree(tmp_path / "data", tmp_path / run / "data")
    straight = stage1(tmp_path / "straight")
    # step 11 of 16 is in the middle of the second epoch (8 steps per epoch); the process kills itself there
    interrupted = stage1(tmp_path / "interrupted", "--trainer.callbacks+=kill_at_step.KillAtStep", "--trainer.callbacks.step=11")
    out, _ = interrupted.communicate(timeout=600)
    assert interrupted.returncode == -signal.SIGKILL, out[-3000:]
    last = tmp_path / "interrupted/pretrain/checkpoints/last.ckpt"
    assert global_step(last) == 11
    assert not (tmp_path / "interrupted/pretrain/encoder.json").exists()

    resumed = stage1(tmp_path / "interrupted")
    out, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, out[-3000:]
    assert "resuming from" in out
    assert straight.wait(timeout=600) == 0

    a = load_file(str(tmp_path / "straight/pretrain/encoder.safetensors"))
    b = load_file(str(tmp_path / "interrupted/pretrain/encoder.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
