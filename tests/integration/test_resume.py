"""A stage killed mid-epoch and re-run with the same command ends with the same weights."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from small_corpus import SMALL_CORPUS

REPO = Path(__file__).resolve().parents[2]
BUDGET = ["--trainer.max_epochs=2", "--trainer.limit_train_batches=8", "--trainer.limit_val_batches=2",
          "--checkpoint.every_n_train_steps=1", "--trainer.enable_progress_bar=false", "--data.init_args.batch_size=8", *SMALL_CORPUS]


def stage1(run_dir: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-m", "dreamdiffusion", "fit", "-c", str(REPO / "configs/demo/pretrain.yaml"),
         f"--run_dir={run_dir}", *BUDGET],
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
    interrupted = stage1(tmp_path / "interrupted")
    last = tmp_path / "interrupted/pretrain/checkpoints/last.ckpt"
    deadline = time.time() + 300
    while time.time() < deadline:
        # step 11 of 16 is in the middle of the second epoch (8 steps per epoch)
        if last.is_file() and os.path.getsize(last) > 0:
            try:
                if global_step(last) >= 11:
                    break
            except Exception:  # noqa: BLE001 - a checkpoint being written fails in many ways: look again
                pass
        assert interrupted.poll() is None, interrupted.communicate()[0][-3000:]
        time.sleep(0.05)
    interrupted.send_signal(signal.SIGKILL)
    interrupted.wait()
    killed_at = global_step(last)
    assert 8 < killed_at < 16, f"the kill must land mid-epoch 2, got step {killed_at}"
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
