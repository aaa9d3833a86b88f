"""The demo's configs chain stage 1 → 2 → 3 with the Makefile's paired-data options and learns: EEG→CLIP
retrieval on the synthetic test split reaches at least 3x chance.

Kept inside the test budget: `weights tiny` (random tiny SD, tiny CLIP warmed up) instead of `weights demo`'s
trained base model (tested on its own in tests/unit/test_base_model.py and test_demo_weights.py), and the stage-1
corpus shrunk to 500 windows. Retrieval depends on the EEG encoder and the CLIP head, not on the base model."""

import json
import re
import shlex
from pathlib import Path

import pytest
from small_corpus import SMALL_CORPUS
from tiny_weights import tiny_eval_networks

REPO = Path(__file__).resolve().parents[2]


def makefile_option(name: str) -> list[str]:
    """The arguments ``make demo`` passes through ``NAME ?= ...`` in the Makefile."""
    match = re.search(rf"^{name} \?= (.*)$", (REPO / "Makefile").read_text(), flags=re.MULTILINE)
    assert match, f"Makefile has no {name}"
    return shlex.split(match.group(1))


@pytest.mark.slow
def test_demo_chain_retrieves_test_pictures_from_eeg_above_3x_chance(cli, tmp_path):
    assert cli("weights", "tiny", "--out", str(tmp_path / "weights"), "--clip-warmup-classes", "10") == 0
    assert cli("data", "synth-imagenet-eeg", "--out", str(tmp_path / "data"), *makefile_option("DEMO_DATA")) == 0
    cli("fit", "-c", str(REPO / "configs/demo/pretrain.yaml"), f"--run_dir={tmp_path}", *SMALL_CORPUS,
        "--trainer.max_epochs=2")
    cli("fit", "-c", str(REPO / "configs/demo/finetune.yaml"), f"--run_dir={tmp_path}")
    cli("test", "-c", str(REPO / "configs/demo/eval.yaml"), f"--run_dir={tmp_path}", *tiny_eval_networks(tmp_path))
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())["metrics"]
    assert metrics["retrieval_candidates"] == 10
    assert metrics["retrieval_top1"] >= 3 / metrics["retrieval_candidates"]
