"""The demo's full chain (the Makefile's data and weights options, the demo configs) learns: EEG→CLIP
retrieval on the synthetic test split reaches at least 3x chance (issue 7's acceptance figure)."""

import json
import re
import shlex
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def makefile_option(name: str) -> list[str]:
    """The arguments ``make demo`` passes through ``NAME ?= ...`` in the Makefile."""
    match = re.search(rf"^{name} \?= (.*)$", (REPO / "Makefile").read_text(), flags=re.MULTILINE)
    assert match, f"Makefile has no {name}"
    return shlex.split(match.group(1))


@pytest.mark.slow
def test_full_demo_chain_retrieves_test_pictures_from_eeg_above_3x_chance(cli, tmp_path):
    assert cli("weights", "tiny", "--out", str(tmp_path / "weights"), *makefile_option("DEMO_WEIGHTS")) == 0
    assert cli("data", "synth-imagenet-eeg", "--out", str(tmp_path / "data"), *makefile_option("DEMO_DATA")) == 0
    cli("fit", "-c", str(REPO / "configs/demo/pretrain.yaml"), f"--run_dir={tmp_path}")
    cli("fit", "-c", str(REPO / "configs/demo/finetune.yaml"), f"--run_dir={tmp_path}")
    cli("test", "-c", str(REPO / "configs/demo/eval.yaml"), f"--run_dir={tmp_path}")
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())["metrics"]
    assert metrics["retrieval_candidates"] == 10
    assert metrics["retrieval_top1"] >= 3 / metrics["retrieval_candidates"]
