"""Collect stage-3 ``metrics.json`` files into one Markdown table (one row per run).

Usage::

    python scripts/collect_metrics.py full=runs/demo/eval no_clip=runs/demo/eval_no_clip
    python scripts/collect_metrics.py --paper-table2 'runs/table2/*/eval/metrics.json'

Each argument is ``LABEL=PATH`` or ``PATH``; ``PATH`` is an evaluation folder (holding ``metrics.json``),
a ``metrics.json`` file or a glob of either. Without a label a row is named after the folder holding
``metrics.json`` — or, when that folder is called ``eval``, after its parent (``runs/table2/no_clip/eval``
→ ``no_clip``). Rows keep the order of the arguments (a glob's matches sorted).

Columns: EEG→CLIP retrieval top-1 with its chance level (1 / number of candidate images), n-way top-1
(mean over samples, as the paper's Table 2), FID, IS, PSNR, SSIM, LPIPS. ``--paper-table2`` adds the
paper's Table 2 50-way top-1 (%) beside each row whose label is a Table 2 row name (see ``TABLE2``).
"""

from __future__ import annotations

import argparse
import glob
import json
import sys
from pathlib import Path

# DreamDiffusion Table 2: 50-way top-1 accuracy (%) per row name (the ablation config names).
TABLE2 = {
    "full": 45.8,
    "no_pretrain_no_clip": 4.2,
    "no_pretrain_no_clip_18.3M": 3.7,
    "no_pretrain": 32.3,
    "no_pretrain_18.3M": 24.5,
    "mask0.25": 19.7,
    "mask0.5": 38.3,
    "mask0.85": 33.4,
    "458M": 38.5,
    "162M": 36.6,
    "74M": 29.8,
    "18.3M": 28.7,
    "e_only": 22.4,
    "no_clip": 28.3,
    "a_only": 20.9,
}
METRICS = "metrics.json"


def default_label(metrics_file: Path) -> str:
    folder = metrics_file.parent.resolve()
    return folder.parent.name if folder.name == "eval" else folder.name


def metrics_file(path: Path) -> Path:
    return path if path.suffix == ".json" and not path.is_dir() else path / METRICS


def resolve(items: list[str]) -> list[tuple[str, Path]]:
    """``[(label, metrics.json path)]`` for the command-line items; an item that finds no file is an error."""
    rows = []
    for item in items:
        label, sep, spec = item.partition("=")
        if not sep:
            label, spec = "", item
        elif not label or not spec:
            raise ValueError(f"{item!r}: expected LABEL=PATH or PATH")
        matches = sorted(glob.glob(spec)) if glob.has_magic(spec) else [spec]
        files = [metrics_file(Path(m)) for m in matches]
        if not files:
            raise FileNotFoundError(f"{spec!r} matches nothing; give an evaluation folder or its {METRICS}")
        if label and len(files) > 1:
            raise ValueError(f"{item!r}: one label for {len(files)} files; label each run or drop the label")
        for f in files:
            if not f.is_file():
                raise FileNotFoundError(f"{f} does not exist: run stage 3 (dreamdiffusion test -c ...) into {f.parent} first")
            rows.append((label or default_label(f), f))
    return rows


def read_metrics(path: Path) -> dict:
    try:
        results = json.loads(path.read_text())
        results["metrics"], results["settings"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"{path} is not a stage-3 metrics.json (needs 'metrics' and 'settings'): {e}") from None
    return results


def fmt(value, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def percent(value) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def table(rows: list[tuple[str, dict]], paper_table2: bool = False) -> str:
    """The Markdown table for ``[(label, metrics.json contents)]``."""
    ways = {(r["settings"]["n_way"], r["settings"]["top_k"]) for _, r in rows}
    same_way = len(ways) == 1
    way_head = "{}-way top-{}".format(*next(iter(ways))) if same_way else "n-way top-k"
    head = ["run", "EEG→CLIP retrieval top-1 (chance)", f"{way_head} ↑", "FID ↓", "IS ↑", "PSNR ↑", "SSIM ↑", "LPIPS ↓"]
    if paper_table2:
        head.append("paper Table 2 top-1")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, r in rows:
        m, st = r["metrics"], r["settings"]
        retrieval = percent(m.get("retrieval_top1"))
        if m.get("retrieval_candidates"):
            retrieval += f" ({percent(1 / m['retrieval_candidates'])})"
        way = percent(m.get("top1_mean"))
        if not same_way:
            way += f" ({st['n_way']}-way top-{st['top_k']})"
        cells = [
            label, retrieval, way, fmt(m.get("fid"), 2), fmt(m.get("inception_score"), 2), fmt(m.get("psnr"), 1),
            fmt(m.get("ssim"), 3), fmt(m.get("lpips"), 3),
        ]
        if paper_table2:
            cells.append(f"{TABLE2[label]}%" if label in TABLE2 else "–")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", metavar="[LABEL=]PATH", help="evaluation folder, metrics.json, or a glob")
    parser.add_argument("--paper-table2", action="store_true", help="add the paper's Table 2 50-way top-1 per row name")
    args = parser.parse_args(argv)
    try:
        rows = [(label, read_metrics(path)) for label, path in resolve(args.runs)]
    except (OSError, ValueError) as e:
        print(f"collect_metrics: {e}", file=sys.stderr)
        return 1
    print(table(rows, paper_table2=args.paper_table2), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
