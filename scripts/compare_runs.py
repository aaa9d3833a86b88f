"""Paired comparison of two evaluated models over the same test trials, pooled over seeds.

Each stage-3 folder holds ``trials.csv`` (one row per EEG trial, same trials in every run of a split). For
each seed, rows of run A and run B are matched by trial index; the per-trial difference ``A − B`` of a
column (``top1_mean``: generated-image n-way top-1, mean of samples; ``retrieval_hit``: EEG→CLIP
retrieval) is averaged, and its 95% interval is a percentile bootstrap over trials, resampled within each
seed (paired: a trial's A and B values stay together).

    python scripts/compare_runs.py --a runs/seeds/s0/eval runs/seeds/s1/eval runs/seeds/s2/eval \\
        --b runs/seeds/s0/eval_no_pretrain runs/seeds/s1/eval_no_pretrain runs/seeds/s2/eval_no_pretrain \\
        --names full no_pretrain

Prints a Markdown table: a row per seed and one for all seeds pooled.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import torch

COLUMNS = ("top1_mean", "retrieval_hit")


def read_trials(folder: Path) -> dict[int, dict[str, float]]:
    """``trials.csv`` of an evaluation folder as ``{trial index: {column: value}}``."""
    path = Path(folder) / "trials.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: run stage 3 (dreamdiffusion test) into {folder} first")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    out = {}
    for row in rows:
        out[int(row["index"])] = {k: float(v) for k, v in row.items() if k in COLUMNS and v != ""}
    return out


def paired_differences(a: Path, b: Path, column: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-trial values of ``column`` in runs ``a`` and ``b`` over the trials both scored (``[n]`` each)."""
    rows_a, rows_b = read_trials(a), read_trials(b)
    if set(rows_a) != set(rows_b):
        raise ValueError(f"{a} and {b} scored different trials: compare runs on the same test split")
    shared = sorted(i for i in rows_a if column in rows_a[i] and column in rows_b[i])
    if not shared:
        raise ValueError(f"no trial of {a} and {b} has a {column!r} value")
    values_a = torch.tensor([rows_a[i][column] for i in shared], dtype=torch.float64)
    values_b = torch.tensor([rows_b[i][column] for i in shared], dtype=torch.float64)
    return values_a, values_b


def stratified_interval(differences: list[torch.Tensor], n_resamples: int, level: float, seed: int) -> tuple[float, float]:
    """Percentile interval of the pooled mean of ``differences`` (one tensor per seed), resampling within each seed."""
    generator = torch.Generator().manual_seed(seed)
    total = sum(d.numel() for d in differences)
    sums = torch.zeros(n_resamples, dtype=torch.float64)
    for d in differences:
        draws = torch.randint(0, d.numel(), (n_resamples, d.numel()), generator=generator)
        sums += d[draws].sum(dim=1)
    means = sums / total
    tail = (1 - level) / 2
    low, high = torch.quantile(means, torch.tensor([tail, 1 - tail], dtype=torch.float64)).tolist()
    return low, high


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--a", nargs="+", type=Path, required=True, help="stage-3 folders of model A, one per seed")
    parser.add_argument("--b", nargs="+", type=Path, required=True, help="stage-3 folders of model B, same seeds in the same order")
    parser.add_argument("--names", nargs=2, default=["A", "B"], metavar=("A", "B"))
    parser.add_argument("--columns", nargs="+", default=list(COLUMNS), choices=COLUMNS)
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--level", type=float, default=0.95)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if len(args.a) != len(args.b):
        parser.error(f"--a has {len(args.a)} folders and --b {len(args.b)}: give one of each per seed")
    name_a, name_b = args.names
    try:
        pairs = {c: [paired_differences(a, b, c) for a, b in zip(args.a, args.b, strict=True)] for c in args.columns}
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    header = "| seed | " + " | ".join(f"{c}: {name_a} | {name_b} | {name_a} − {name_b}" for c in args.columns) + " |"
    print(header)
    print("|---" * (1 + 3 * len(args.columns)) + "|")
    for s in range(len(args.a)):
        cells = []
        for c in args.columns:
            va, vb = pairs[c][s]
            cells += [f"{100 * va.mean():.1f}%", f"{100 * vb.mean():.1f}%", f"{100 * (va - vb).mean():+.1f}"]
        print(f"| {s} ({args.a[s]}) | " + " | ".join(cells) + " |")
    cells = []
    for c in args.columns:
        va = torch.cat([p[0] for p in pairs[c]])
        vb = torch.cat([p[1] for p in pairs[c]])
        low, high = stratified_interval([p[0] - p[1] for p in pairs[c]], args.resamples, args.level, args.seed)
        cells += [f"{100 * va.mean():.1f}%", f"{100 * vb.mean():.1f}%",
                  f"{100 * (va - vb).mean():+.1f} [{100 * low:+.1f}, {100 * high:+.1f}]"]
    print(f"| all {len(args.a)} seeds ({int(args.level * 100)}% CI) | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
