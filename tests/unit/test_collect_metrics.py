"""scripts/collect_metrics.py: stage-3 metrics.json files → one Markdown table with intervals, chance, controls."""

import json
import subprocess
import sys

import pytest


@pytest.fixture
def collect(script):
    return script("collect_metrics")


def write_metrics(folder, retrieval, candidates, top1, fid, n_way=10, random_classifier=False, failures=(), inception="tiny"):
    folder.mkdir(parents=True)
    metrics = {
        "fid": fid, "inception_score": 1.5, "inception_score_std": 0.1, "psnr": 11.62, "ssim": 0.1034, "lpips": 0.1666,
        "top1_mean": top1, "top1_best": top1, "retrieval_top1": retrieval, "retrieval_candidates": candidates,
    }
    ci = {"top1_mean": [top1 - 0.1, top1 + 0.05], "retrieval_top1": None if retrieval is None else [retrieval - 0.1, retrieval + 0.1],
          "fid": None if fid is None else [fid, fid + 1], "inception_score": [1.4, 1.6], "ssim": [0.1, 0.11], "psnr": [11.5, 11.7]}
    meaningful = {"top1_mean": {"meaningful": not random_classifier}, "fid": {"meaningful": True}, "inception_score": {"meaningful": True}}
    controls = {
        "shuffled_eeg": {"metrics": {"top1_mean": 0.11, "retrieval_top1": 0.05, "psnr": 11.0, "ssim": 0.09},
                         "ci": {"top1_mean": [0.08, 0.14], "retrieval_top1": [0.02, 0.08], "psnr": [10.9, 11.1], "ssim": [0.08, 0.1]},
                         "chance": {"top1_mean": 1 / n_way, "retrieval_top1": 1 / candidates if candidates else None}},
        "null_condition": {"metrics": {"top1_mean": 0.1, "psnr": 10.0, "ssim": 0.05},
                           "ci": {"top1_mean": [0.1, 0.1], "psnr": [9.9, 10.1], "ssim": [0.04, 0.06]}, "chance": {"top1_mean": 1 / n_way}},
    }
    settings = {"n_way": n_way, "n_way_requested": 50, "top_k": 1, "num_samples": 2, "classifier_classes": n_way,
                "inception": {"architecture": inception}}
    (folder / "metrics.json").write_text(json.dumps({
        "metrics": metrics, "ci": ci, "meaningful": meaningful, "controls": controls, "failures": list(failures),
        "settings": settings, "notes": [],
    }))
    return folder


@pytest.fixture
def runs(tmp_path):
    write_metrics(tmp_path / "run" / "eval", 0.4, 10, 0.8437, 0.0312)
    write_metrics(tmp_path / "run" / "eval_no_clip", 0.1, 10, 0.5, None, random_classifier=True,
                  failures=["null_condition control: top1_mean is above chance"])
    write_metrics(tmp_path / "t2" / "mask0.5" / "eval", None, None, 0.25, 7.0)
    return tmp_path


HEAD = ("| run | 10-way top-1 (mean of samples) ↑ | EEG→CLIP retrieval top-1 ↑ | FID [tiny] ↓ | IS [tiny] ↑ | SSIM ↑ | PSNR ↑ |\n"
        "|---|---|---|---|---|---|---|\n")


def test_runs_with_intervals_chance_labels_controls_and_failures(collect, runs, capsys):
    assert collect.main([f"full={runs}/run/eval", f"no CLIP loss={runs}/run/eval_no_clip/metrics.json"]) == 0
    assert capsys.readouterr().out == HEAD + (
        "| full | 84.4% [74.4%, 89.4%] (chance 10.0%) | 40.0% [30.0%, 50.0%] (chance 10.0%) | 0.03 [0.03, 1.03] "
        "| 1.50 [1.40, 1.60] | 0.103 [0.100, 0.110] | 11.6 [11.5, 11.7] |\n"
        "| no CLIP loss | 50.0% [40.0%, 55.0%] (chance 10.0%) (random network — not meaningful) | 10.0% [0.0%, 20.0%] (chance 10.0%) "
        "| – | 1.50 [1.40, 1.60] | 0.103 [0.100, 0.110] | 11.6 [11.5, 11.7] |\n"
        "| shuffled EEG control (full) | 11.0% [8.0%, 14.0%] (chance 10.0%) | 5.0% [2.0%, 8.0%] (chance 10.0%) | – | – "
        "| 0.090 [0.080, 0.100] | 11.0 [10.9, 11.1] |\n"
        "| null condition control (full) | 10.0% [10.0%, 10.0%] (chance 10.0%) | – | – | – | 0.050 [0.040, 0.060] | 10.0 [9.9, 10.1] |\n"
        "\n"
        "* [low, high]: 95% bootstrap interval over EEG trials; (chance) beside the figures that have one\n"
        "* full: 10-way, not 50-way — the classifier has only 10 classes\n"
        "* no CLIP loss: 10-way, not 50-way — the classifier has only 10 classes\n"
        "* FAILURE of no CLIP loss: null_condition control: top1_mean is above chance\n"
    )


def test_controls_come_from_the_named_run(collect, runs, capsys):
    assert collect.main([f"full={runs}/run/eval", f"no_clip={runs}/run/eval_no_clip", "--controls-from", "no_clip"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[4].startswith("| shuffled EEG control (no_clip) | 11.0% [8.0%, 14.0%] (chance 10.0%) (random network — not meaningful) |")
    assert collect.main([f"full={runs}/run/eval", "--controls-from", "nope"]) == 1
    assert "--controls-from 'nope' is not one of the runs (full)" in capsys.readouterr().err


def test_globs_are_named_after_their_folder_and_paper_table2_is_matched_by_row_name(collect, runs, capsys):
    assert collect.main(["--paper-table2", f"{runs}/t2/*/eval", f"{runs}/run/eval*/metrics.json"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith("| PSNR ↑ | paper Table 2 top-1 |")
    assert [line.split(" | ")[0] for line in out[2:5]] == ["| mask0.5", "| run", "| eval_no_clip"]
    assert out[2].endswith("| 38.3% |") and out[3].endswith("| – |")
    assert out[5].startswith("| shuffled EEG control (mask0.5) |") and out[5].endswith("| – |")


def test_rows_of_different_n_way_and_networks_say_theirs(collect, runs, capsys):
    write_metrics(runs / "small", 0.2, 5, 0.6, 1.0, n_way=5, inception="inception_v3_fidelity")
    assert collect.main([f"full={runs}/run/eval", f"other={runs}/small"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split(" | ")[1:4] == ["n-way top-k (mean of samples) ↑", "EEG→CLIP retrieval top-1 ↑", "FID ↓"]
    assert out[2].split(" | ")[1] == "84.4% [74.4%, 89.4%] (chance 10.0%) (10-way top-1)"
    assert out[3].split(" | ")[1] == "60.0% [50.0%, 65.0%] (chance 20.0%) (5-way top-1)"
    assert out[3].split(" | ")[3] == "1.00 [1.00, 2.00] (inception_v3_fidelity)"


def test_an_older_metrics_json_without_intervals_still_prints(collect, tmp_path, capsys):
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "metrics.json").write_text(json.dumps({
        "metrics": {"top1_mean": 0.5, "retrieval_top1": 0.2, "retrieval_candidates": 5, "fid": 1.0, "inception_score": 2.0,
                    "ssim": 0.1, "psnr": 12.0}, "settings": {"n_way": 50, "top_k": 1}}))
    assert collect.main([f"old={tmp_path}/old"]) == 0
    assert capsys.readouterr().out.splitlines()[2] == "| old | 50.0% (chance 2.0%) | 20.0% (chance 20.0%) | 1.00 | 2.00 | 0.100 | 12.0 |"


@pytest.mark.parametrize(
    "arg, message",
    [
        ("full={}/nowhere", "nowhere/metrics.json does not exist: run stage 3"),
        ("{}/t2/*/nothing", "matches nothing"),
        ("=x", "expected LABEL=PATH or PATH"),
        ("all={}/run/eval*", "one label for 2 files"),
        ("bad={}/bad", "is not a stage-3 metrics.json"),
    ],
)
def test_bad_arguments_are_clear_errors(collect, runs, capsys, arg, message):
    (runs / "bad").mkdir()
    (runs / "bad" / "metrics.json").write_text("{}")
    assert collect.main([arg.format(runs)]) == 1
    assert message in capsys.readouterr().err


def test_runs_as_a_script(repo, runs):
    out = subprocess.run(
        [sys.executable, str(repo / "scripts" / "collect_metrics.py"), f"full={runs}/run/eval"],
        capture_output=True, text=True, check=True,
    ).stdout
    assert out.splitlines()[2].startswith("| full | 84.4% [74.4%, 89.4%] (chance 10.0%) |")
