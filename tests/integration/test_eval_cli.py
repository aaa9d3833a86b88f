"""`dreamdiffusion test|predict -c configs/demo/eval.yaml` in-process on a tiny pipeline, synthetic data and
tiny evaluation networks, all built in the test and read through the config's paths."""

import json

import pytest
from tiny_weights import tiny_eval_networks

from dreamdiffusion.pipeline import build_tiny_pipeline


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from dreamdiffusion.commands import main as plain
    from dreamdiffusion.data.synthetic import write_synthetic_imagenet_eeg

    root = tmp_path_factory.mktemp("demo")
    assert plain(["weights", "tiny", "--out", str(root / "weights")]) == 0
    write_synthetic_imagenet_eeg(root / "data", classes=3, images_per_class=6, subjects=1, seed=0)
    build_tiny_pipeline(root / "finetune" / "pipeline", seed=0)
    return root


@pytest.mark.slow
def test_demo_eval_writes_metrics_and_samples(cli, repo, run_dir):
    assert cli("test", "-c", str(repo / "configs/demo/eval.yaml"), f"--run_dir={run_dir}", *tiny_eval_networks(run_dir)) == 0
    out = run_dir / "eval"
    result = json.loads((out / "metrics.json").read_text())
    assert result["pipeline"] == str((run_dir / "finetune" / "pipeline").resolve())
    assert result["trials"] >= 2 and result["generated_images"] == 2 * result["trials"]
    for key in ("fid", "inception_score", "psnr", "ssim", "lpips", "top1_mean", "top1_best", "retrieval_top1"):
        assert isinstance(result["metrics"][key], float), key
    assert result["settings"]["n_way"] == 50 and result["settings"]["classifier"]["architecture"] == "squeezenet1_1"
    assert result["settings"]["inception"]["weights_path"] == str(run_dir / "weights/eval/inception.safetensors")
    table = (out / "metrics.md").read_text()
    # the demo's evaluation networks are random: labelled, never bold beside the paper
    assert "| ours |" in table and "| **ours** |" not in table and "| DreamDiffusion (paper) | 3.61 |" in table
    assert result["meaningful"]["top1_mean"] == {
        "network": "classifier", "provenance": "random", "meaningful": False,
        "reason": "random network — not meaningful: the classifier network has random weights",
    }
    for key in ("fid", "inception_score", "psnr", "ssim", "lpips", "top1_mean", "top1_best", "retrieval_top1"):
        low, high = result["ci"][key]
        assert low <= high, key
    shuffled = result["controls"]["shuffled_eeg"]
    assert shuffled["chance"]["retrieval_top1"] == 1 / result["metrics"]["retrieval_candidates"]
    assert set(result["per_subject"]) == {"1"} and result["per_subject"]["1"]["trials"] == result["trials"]
    samples = out / "samples"
    assert len(list(samples.glob("trial*_gt.png"))) == result["trials"]
    real = [p for p in samples.glob("trial*_sample*.png") if "_shuffled_" not in p.name and "_null_" not in p.name]
    assert len(real) == result["generated_images"]
    assert len(list(samples.glob("trial*_shuffled_sample*.png"))) == result["generated_images"]
    assert len(list(samples.glob("trial*_null_sample*.png"))) == result["generated_images"]
    assert len((out / "trials.csv").read_text().splitlines()) == 1 + result["trials"]
    classes = {p.name.split("_")[1] for p in samples.glob("trial*_gt.png")}  # trial<index>_<wnid>_<n>_gt.png
    assert len(list(samples.glob("grid_class*.png"))) == len(classes) >= 2


@pytest.mark.slow
def test_demo_predict_writes_images(cli, repo, run_dir):
    assert cli("predict", "-c", str(repo / "configs/demo/eval.yaml"), f"--run_dir={run_dir}") == 0
    images = list((run_dir / "eval" / "predictions").glob("trial*_sample*.png"))
    assert images and len(images) % 2 == 0


@pytest.mark.slow
def test_two_processes_give_the_same_figures_as_one(cli, repo, run_dir):
    """DDP on CPU (a subprocess: DDP re-executes argv): every trial counted once, the same figures."""
    import os
    import subprocess
    import sys

    config = str(repo / "configs/demo/eval.yaml")
    assert cli("test", "-c", config, f"--run_dir={run_dir}", f"--trainer.default_root_dir={run_dir / 'eval1'}",
               "--data.init_args.batch_size=3", *tiny_eval_networks(run_dir)) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "dreamdiffusion", "test", "-c", config, f"--run_dir={run_dir}",
         f"--trainer.default_root_dir={run_dir / 'eval2'}", "--trainer.devices=2", "--trainer.strategy=ddp",
         *tiny_eval_networks(run_dir)],
        cwd=repo, env=env, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    one = json.loads((run_dir / "eval1" / "metrics.json").read_text())
    two = json.loads((run_dir / "eval2" / "metrics.json").read_text())
    assert two["settings"]["world_size"] == 2 and one["settings"]["world_size"] == 1
    assert two["trials"] == one["trials"] and two["fid_images"] == one["fid_images"]
    for key, value in one["metrics"].items():
        if key.startswith("inception_score"):
            assert two["metrics"][key] == pytest.approx(value, abs=1e-4), key  # features gathered in rank order
        else:
            assert two["metrics"][key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    # intervals, controls (partners' EEG fetched across processes) and per-subject figures do not depend on it either
    for key, bounds in one["ci"].items():
        assert two["ci"][key] == pytest.approx(bounds, rel=1e-4, abs=1e-4), key
    for name, control in one["controls"].items():
        assert two["controls"][name]["metrics"] == pytest.approx(control["metrics"], rel=1e-5, abs=1e-6), name
        for key, bounds in control["ci"].items():
            assert two["controls"][name]["ci"][key] == pytest.approx(bounds, rel=1e-5, abs=1e-6), (name, key)
    assert two["per_subject"]["1"]["metrics"] == pytest.approx(one["per_subject"]["1"]["metrics"], rel=1e-5, abs=1e-6)
    import csv

    def rows(folder):
        with open(folder / "trials.csv") as f:
            return list(csv.DictReader(f))

    one_rows, two_rows = rows(run_dir / "eval1"), rows(run_dir / "eval2")
    assert [list(r) for r in two_rows] == [list(r) for r in one_rows] and len(two_rows) == len(one_rows)
    for a, b in zip(one_rows, two_rows, strict=True):  # the same trials and partners; values printed to 6 digits: compare as numbers
        assert a["image_name"] == b["image_name"]
        keys = [k for k in a if k != "image_name"]
        assert [float(b[k]) for k in keys] == pytest.approx([float(a[k]) for k in keys], rel=1e-5, abs=1e-5)
    assert sorted(p.name for p in (run_dir / "eval2" / "samples").iterdir()) == sorted(
        p.name for p in (run_dir / "eval1" / "samples").iterdir()
    )
