"""scripts/collect_metrics.py: stage-3 metrics.json files → one Markdown table."""

import importlib.util
import json
import subprocess
import sys

import pytest


@pytest.fixture
def collect(repo):
    spec = importlib.util.spec_from_file_location("collect_metrics", repo / "scripts" / "collect_metrics.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_metrics(folder, retrieval, candidates, top1, fid, n_way=50):
    folder.mkdir(parents=True)
    metrics = {
        "fid": fid, "inception_score": 1.5, "inception_score_std": 0.1, "psnr": 11.62, "ssim": 0.1034, "lpips": 0.1666,
        "top1_mean": top1, "top1_best": top1, "retrieval_top1": retrieval, "retrieval_candidates": candidates,
    }
    settings = {"n_way": n_way, "top_k": 1, "num_samples": 2}
    (folder / "metrics.json").write_text(json.dumps({"metrics": metrics, "settings": settings, "notes": []}))
    return folder


@pytest.fixture
def runs(tmp_path):
    write_metrics(tmp_path / "run" / "eval", 0.4, 10, 0.8437, 0.0312)
    write_metrics(tmp_path / "run" / "eval_no_clip", 0.1, 10, 0.5, None)
    write_metrics(tmp_path / "t2" / "mask0.5" / "eval", None, None, 0.25, 7.0)
    return tmp_path


def test_labelled_folders_give_one_row_each_in_argument_order(collect, runs, capsys):
    assert collect.main([f"full={runs}/run/eval", f"no CLIP loss={runs}/run/eval_no_clip/metrics.json"]) == 0
    assert capsys.readouterr().out == (
        "| run | EEG→CLIP retrieval top-1 (chance) | 50-way top-1 ↑ | FID ↓ | IS ↑ | PSNR ↑ | SSIM ↑ | LPIPS ↓ |\n"
        "|---|---|---|---|---|---|---|---|\n"
        "| full | 40.0% (10.0%) | 84.4% | 0.03 | 1.50 | 11.6 | 0.103 | 0.167 |\n"
        "| no CLIP loss | 10.0% (10.0%) | 50.0% | – | 1.50 | 11.6 | 0.103 | 0.167 |\n"
    )


def test_globs_are_named_after_their_folder_and_paper_table2_is_matched_by_row_name(collect, runs, capsys):
    assert collect.main(["--paper-table2", f"{runs}/t2/*/eval", f"{runs}/run/eval*/metrics.json"]) == 0
    assert capsys.readouterr().out == (
        "| run | EEG→CLIP retrieval top-1 (chance) | 50-way top-1 ↑ | FID ↓ | IS ↑ | PSNR ↑ | SSIM ↑ | LPIPS ↓ "
        "| paper Table 2 top-1 |\n"
        "|---|---|---|---|---|---|---|---|---|\n"
        "| mask0.5 | – | 25.0% | 7.00 | 1.50 | 11.6 | 0.103 | 0.167 | 38.3% |\n"
        "| run | 40.0% (10.0%) | 84.4% | 0.03 | 1.50 | 11.6 | 0.103 | 0.167 | – |\n"
        "| eval_no_clip | 10.0% (10.0%) | 50.0% | – | 1.50 | 11.6 | 0.103 | 0.167 | – |\n"
    )


def test_rows_of_different_n_way_say_theirs(collect, runs, capsys):
    write_metrics(runs / "small", 0.2, 5, 0.6, 1.0, n_way=10)
    assert collect.main([f"full={runs}/run/eval", f"no_clip={runs}/small"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split(" | ")[2] == "n-way top-k ↑"
    assert out[2].split(" | ")[2] == "84.4% (50-way top-1)" and out[3].split(" | ")[2] == "60.0% (10-way top-1)"
    assert out[3].split(" | ")[1] == "20.0% (20.0%)"


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
    assert out.splitlines()[2] == "| full | 40.0% (10.0%) | 84.4% | 0.03 | 1.50 | 11.6 | 0.103 | 0.167 |"
