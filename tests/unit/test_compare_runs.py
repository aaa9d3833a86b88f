"""scripts/compare_runs.py: paired per-trial differences of two models over seeds, with a stratified bootstrap."""

import pytest


def write_trials(folder, top1: list[float], hits: list[float]):
    folder.mkdir(parents=True)
    lines = ["index,image_name,label,subject,top1_mean,retrieval_hit"]
    lines += [f"{i},img{i},0,1,{t},{h}" for i, (t, h) in enumerate(zip(top1, hits, strict=True))]
    (folder / "trials.csv").write_text("\n".join(lines) + "\n")


def test_a_better_model_on_every_seed_has_an_interval_above_zero(script, tmp_path, capsys):
    compare = script("compare_runs")
    a, b = [], []
    for seed in range(3):
        write_trials(tmp_path / f"s{seed}" / "a", [1.0] * 15 + [0.0] * 5, [1.0] * 12 + [0.0] * 8)
        write_trials(tmp_path / f"s{seed}" / "b", [1.0] * 5 + [0.0] * 15, [1.0] * 12 + [0.0] * 8)
        a.append(str(tmp_path / f"s{seed}" / "a"))
        b.append(str(tmp_path / f"s{seed}" / "b"))
    assert compare.main(["--a", *a, "--b", *b, "--names", "full", "no_pretrain"]) == 0
    pooled = capsys.readouterr().out.strip().splitlines()[-1]
    assert pooled.startswith("| all 3 seeds (95% CI) | 75.0% | 25.0% | +50.0 [")
    # identical retrieval hits: a zero difference with a zero-width interval
    assert pooled.endswith("| 60.0% | 60.0% | +0.0 [+0.0, +0.0] |")


def test_the_stratified_interval_covers_the_true_difference(script):
    import torch

    compare = script("compare_runs")
    generator = torch.Generator().manual_seed(1)
    covered = 0
    for trial in range(100):
        differences = [(torch.rand(60, generator=generator) < 0.6).double() - (torch.rand(60, generator=generator) < 0.5).double()
                       for _ in range(3)]
        low, high = compare.stratified_interval(differences, 500, 0.95, seed=trial)
        covered += low <= 0.1 <= high
    assert 88 <= covered <= 100


def test_runs_over_different_trials_or_a_missing_folder_are_refused(script, tmp_path, capsys):
    compare = script("compare_runs")
    write_trials(tmp_path / "a", [1.0, 0.0], [1.0, 0.0])
    write_trials(tmp_path / "b", [1.0, 0.0, 1.0], [1.0, 0.0, 1.0])
    assert compare.main(["--a", str(tmp_path / "a"), "--b", str(tmp_path / "b")]) == 2
    assert "scored different trials" in capsys.readouterr().err
    assert compare.main(["--a", str(tmp_path / "a"), "--b", str(tmp_path / "missing")]) == 2
    assert "trials.csv does not exist: run stage 3" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        compare.main(["--a", str(tmp_path / "a"), "--b", str(tmp_path / "a"), str(tmp_path / "b")])
