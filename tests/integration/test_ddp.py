"""Every stage runs unchanged under DDP: 2 CPU processes (gloo), started through the CLI in a subprocess."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DDP = ["--trainer", str(REPO / "configs/trainer/ddp.yaml"), "--trainer.accelerator=cpu", "--trainer.devices=2",
       "--trainer.enable_progress_bar=false"]


def dreamdiffusion(*args: str, timeout: int = 600) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "MASTER_ADDR": "127.0.0.1"}
    proc = subprocess.run([sys.executable, "-m", "dreamdiffusion", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc.stdout + proc.stderr


@pytest.mark.slow
def test_pretrain_under_ddp_writes_one_encoder(tmp_path):
    out = dreamdiffusion("fit", "-c", str(REPO / "configs/demo/pretrain.yaml"), f"--run_dir={tmp_path}", *DDP,
                         "--trainer.max_epochs=1", "--trainer.limit_train_batches=3", "--trainer.limit_val_batches=2")
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in out
    meta = json.loads((tmp_path / "pretrain/encoder.json").read_text())
    assert meta["preset"] == "tiny"
    # 3 steps per rank: global_step counts optimizer steps, which DDP keeps in lockstep
    assert meta["global_step"] == 3
