"""THINGS-EEG2 end to end through the CLI on the synthetic twin: data check, stage 3 with the zero-shot retrieval
and the reconstruction suite (tiny random networks built in the test and read through the config's paths)."""

import json

import pytest

from dreamdiffusion.pipeline import build_tiny_pipeline


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from dreamdiffusion.commands import main as plain

    root = tmp_path_factory.mktemp("things")
    assert plain(["weights", "tiny", "--out", str(root / "weights")]) == 0
    assert plain(["data", "synth-things-eeg2", "--out", str(root / "data"), "--subjects", "8", "--train-concepts", "6",
                  "--test-concepts", "5"]) == 0
    build_tiny_pipeline(root / "finetune" / "pipeline", seed=0)
    return root


def test_data_check_reports_what_is_there_and_what_is_missing(run_dir, capsys):
    from dreamdiffusion.commands import main as plain

    assert plain(["data", "check-things-eeg2", "--root", str(run_dir / "data"), "--subjects", "8"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["pictures"] == {"training": 12, "test": 5}
    assert report["eeg"]["sub-08/test"] == {"shape": [5, 8, 17, 100], "channels": 17, "times": [-0.2, 0.79]}
    assert plain(["data", "check-things-eeg2", "--root", str(run_dir / "data"), "--subjects", "8", "9"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["eeg"]["sub-09/training"] is None and any("sub-09" in e for e in report["errors"])
    picture = next((run_dir / "data" / "test_images").glob("*/*.jpg"))
    moved = picture.with_suffix(".moved")
    picture.rename(moved)
    try:
        assert plain(["data", "check-things-eeg2", "--root", str(run_dir / "data"), "--subjects", "8"]) == 1
        report = json.loads(capsys.readouterr().out)
        assert report["missing_pictures"] == 1 and report["missing_pictures_first"] == [str(picture)]
    finally:
        moved.rename(picture)


@pytest.mark.slow
def test_things_eval_writes_retrieval_and_the_reconstruction_suite(cli, repo, run_dir):
    assert cli("test", "-c", str(repo / "configs/things/demo/eval.yaml"), f"--run_dir={run_dir}") == 0
    result = json.loads((run_dir / "eval" / "metrics.json").read_text())
    things = result["things"]
    assert result["trials"] == 5 and things["pictures"] == 5  # the mean of the repetitions: one trial per picture
    assert set(things["retrieval"]) == {"top1", "top5", "2way", "4way"}  # 10-way needs 10 pictures
    assert things["retrieval"]["top1"]["chance"] == 0.2 and things["retrieval"]["2way"]["chance"] == 0.5
    assert set(things["reconstruction"]) == {"pixcorr", "ssim", "alexnet_2", "alexnet_5", "inception", "clip", "efficientnet", "swav"}
    for figure in list(things["retrieval"].values()) + list(things["reconstruction"].values()):
        low, high = figure["ci"]
        assert low <= figure["value"] <= high
    for key in ("alexnet_2", "alexnet_5", "inception", "clip"):  # two-way: a share of the 4 other pictures
        assert round(4 * 5 * things["reconstruction"][key]["value"]) == pytest.approx(4 * 5 * things["reconstruction"][key]["value"])
    assert set(things["random_networks"]) == {"alexnet_2", "alexnet_5", "inception", "efficientnet", "swav"}
    assert things["protocol"]["name"] == "leak-free" and things["protocol"]["test_subjects"] == [8]
    assert things["protocol"]["preprocessing"] == {"sub-08": "synthetic"}  # the twin's files, not from raw, not official
    assert any("synthetic twin" in n for n in result["notes"])
    table = (run_dir / "eval" / "metrics.md").read_text()
    assert "| ATM, sub-08 (Li et al., 2024) | 0.160 | 0.345 | 0.776 | 0.866 | 0.734 | 0.786 | – | 0.582 |" in table
    assert "| UBP (Wu et al., 2025) | 50.9% | 79.7% |" in table and "not meaningful" in table


@pytest.mark.parametrize("stage, config", [("fit", "pretrain"), ("fit", "finetune"), ("test", "eval")])
def test_paper_scale_configs_parse_with_the_cross_subject_overlay(cli, repo, capsys, stage, config):
    with pytest.raises(SystemExit) as done:
        cli(stage, "-c", str(repo / f"configs/things/{config}.yaml"), "-c", str(repo / "configs/things/cross_subject.yaml"),
            "--run_dir=/tmp/things-run", "--print_config")
    assert done.value.code in (0, None)
    printed = capsys.readouterr().out
    assert "ThingsEEG2DataModule" in printed and "test_subjects:\n    - 8" in printed
    assert "default_root_dir: /tmp/things-run/" in printed


@pytest.mark.slow
def test_things_eval_on_two_processes_gives_the_same_figures_as_one(cli, repo, run_dir):
    """DDP on CPU (gloo, a subprocess: DDP re-executes argv): retrieval, the reconstruction suite and their
    intervals do not depend on how the trials are split across processes."""
    import os
    import subprocess
    import sys

    config = str(repo / "configs/things/demo/eval.yaml")
    # batches of 3 split 5 trials unevenly across the two processes
    common = [f"--run_dir={run_dir}", "--data.init_args.batch_size=3"]
    assert cli("test", "-c", config, *common, f"--trainer.default_root_dir={run_dir / 'things1'}") == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1"}
    done = subprocess.run(
        [sys.executable, "-m", "dreamdiffusion", "test", "-c", config, *common,
         f"--trainer.default_root_dir={run_dir / 'things2'}", "--trainer.devices=2", "--trainer.strategy=ddp",
         "--trainer.enable_progress_bar=false"],
        cwd=repo, env={**env, "PYTHONPATH": str(repo)}, capture_output=True, text=True, timeout=900,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    one = json.loads((run_dir / "things1" / "metrics.json").read_text())
    two = json.loads((run_dir / "things2" / "metrics.json").read_text())
    assert one["settings"]["world_size"] == 1 and two["settings"]["world_size"] == 2
    assert two["trials"] == one["trials"] == 5
    a, b = one["things"], two["things"]
    assert b["pictures"] == a["pictures"] and b["protocol"] == a["protocol"]
    for section in ("retrieval", "reconstruction"):
        assert set(b[section]) == set(a[section]), section
        for key, figure in a[section].items():
            assert b[section][key]["value"] == pytest.approx(figure["value"], rel=1e-5, abs=1e-6), (section, key)
            assert b[section][key]["ci"] == pytest.approx(figure["ci"], rel=1e-4, abs=1e-4), (section, key)
    for key, value in one["metrics"].items():
        tolerance = 1e-4 if key.startswith("inception_score") else 1e-6  # features gathered in rank order
        assert two["metrics"][key] == pytest.approx(value, rel=1e-5, abs=tolerance), key


def test_preprocess_from_raw_writes_files_the_data_module_reads_as_leak_free(tmp_path, capsys):
    from dreamdiffusion.commands import main as plain
    from dreamdiffusion.data.things_eeg2 import FROM_RAW_NOTE, ThingsEEG2DataModule

    data = tmp_path / "data"
    assert plain(["data", "synth-things-eeg2", "--out", str(data), "--subjects", "8", "--train-concepts", "3",
                  "--test-concepts", "2", "--raw"]) == 0
    assert plain(["data", "preprocess-things-eeg2", "--root", str(data), "--subjects", "8"]) == 0
    summary = json.loads(capsys.readouterr().out.splitlines()[-2])
    assert summary["whitening_fit"] == "training"
    assert summary["shapes"] == {"training": [6, 4, 17, 100], "test": [2, 8, 17, 100], "whitening": [4, 17, 17]}
    assert plain(["data", "check-things-eeg2", "--root", str(data), "--eeg-dir", "preprocessed_from_raw", "--subjects", "8"]) == 0
    dm = ThingsEEG2DataModule(str(data), eeg_dir="preprocessed_from_raw", subjects=[8], val_concepts=1, eeg_only=True,
                              batch_size=8, num_workers=0)
    dm.setup("fit")
    assert dm.protocol["preprocessing"] == {"sub-08": "from-raw"} and FROM_RAW_NOTE in dm.protocol_notes
    assert next(iter(dm.train_dataloader())).shape == (8, 128, 512)  # 2 concepts x 2 pictures x 4 repetitions in train
