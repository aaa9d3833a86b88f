"""Collect stage-3 ``metrics.json`` files into one Markdown table (one row per run).

Usage::

    python scripts/collect_metrics.py full=runs/demo/eval no_clip=runs/demo/eval_no_clip
    python scripts/collect_metrics.py --paper-table2 'runs/table2/*/eval/metrics.json'

Each argument is ``LABEL=PATH`` or ``PATH``; ``PATH`` is an evaluation folder (holding ``metrics.json``),
a ``metrics.json`` file or a glob of either. Without a label a row is named after the folder holding
``metrics.json`` — or, when that folder is called ``eval``, after its parent (``runs/table2/no_clip/eval``
→ ``no_clip``). Rows keep the order of the arguments (a glob's matches sorted).

Columns: generated-image n-way top-1 (mean over samples, as the paper's Table 2) and EEG→CLIP retrieval
top-1, each with its 95% bootstrap interval over trials and its chance level; FID and IS with the Inception
network they were measured with; SSIM; PSNR. A figure measured with a random network is labelled "random
network — not meaningful" (``meaningful: false`` in metrics.json). Below the runs: the shuffled-EEG and
null-condition control rows of one run (``--controls-from LABEL``, default the first run), then notes: a
capped n-way, and every failure a run reported (a control above chance). ``--paper-table2`` adds the
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


NOT_MEANINGFUL = "random network — not meaningful"
CONTROL_ROWS = {"shuffled_eeg": "shuffled EEG", "null_condition": "null condition"}


def fmt(value, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def percent(value) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def with_ci(value, bounds, show) -> str:
    """``value [low, high]`` with ``show`` formatting each number; no interval when the file has none."""
    text = show(value)
    return text + f" [{show(bounds[0])}, {show(bounds[1])}]" if value is not None and bounds else text


def labelled(text: str, results: dict, key: str) -> str:
    """A figure from a random network says so (``meaningful: false`` in metrics.json)."""
    return f"{text} ({NOT_MEANINGFUL})" if results.get("meaningful", {}).get(key, {}).get("meaningful") is False else text


def chance_note(value, chance) -> str:
    return f"{value} (chance {percent(chance)})" if chance else value


def network_name(results: dict) -> str:
    inception = results["settings"].get("inception", {})
    return inception.get("architecture", "?") if isinstance(inception, dict) else "?"


def run_cells(r: dict, same_way: bool) -> list[str]:
    """n-way top-1, retrieval, FID, IS, SSIM, PSNR of one run, with intervals, chance and labels."""
    m, st, ci = r["metrics"], r["settings"], r.get("ci", {})
    way = chance_note(with_ci(m.get("top1_mean"), ci.get("top1_mean"), percent), st["top_k"] / st["n_way"])
    if not same_way:
        way += f" ({st['n_way']}-way top-{st['top_k']})"
    candidates = m.get("retrieval_candidates")
    retrieval = chance_note(with_ci(m.get("retrieval_top1"), ci.get("retrieval_top1"), percent), 1 / candidates if candidates else None)
    return [
        labelled(way, r, "top1_mean"),
        retrieval,
        labelled(with_ci(m.get("fid"), ci.get("fid"), lambda v: fmt(v, 2)), r, "fid"),
        labelled(with_ci(m.get("inception_score"), ci.get("inception_score"), lambda v: fmt(v, 2)), r, "inception_score"),
        with_ci(m.get("ssim"), ci.get("ssim"), lambda v: fmt(v, 3)),
        with_ci(m.get("psnr"), ci.get("psnr"), lambda v: fmt(v, 1)),
    ]


def control_cells(r: dict, name: str) -> list[str] | None:
    """The same columns for a control of run ``r`` (FID/IS are not computed for controls)."""
    control = r.get("controls", {}).get(name)
    if not control:
        return None
    m, ci, chance = control["metrics"], control["ci"], control["chance"]
    way = chance_note(with_ci(m.get("top1_mean"), ci.get("top1_mean"), percent), chance.get("top1_mean"))
    return [
        labelled(way, r, "top1_mean"),
        chance_note(with_ci(m.get("retrieval_top1"), ci.get("retrieval_top1"), percent), chance.get("retrieval_top1")),
        "–",
        "–",
        with_ci(m.get("ssim"), ci.get("ssim"), lambda v: fmt(v, 3)),
        with_ci(m.get("psnr"), ci.get("psnr"), lambda v: fmt(v, 1)),
    ]


def table(rows: list[tuple[str, dict]], paper_table2: bool = False, controls_of: str | None = None) -> str:
    """The Markdown table for ``[(label, metrics.json contents)]``, then the controls of run ``controls_of``
    (default: the first run), the runs' failures and the notes the figures need (capped n-way, random networks)."""
    ways = {(r["settings"]["n_way"], r["settings"]["top_k"]) for _, r in rows}
    same_way = len(ways) == 1
    way_head = "{}-way top-{}".format(*next(iter(ways))) if same_way else "n-way top-k"
    networks = {network_name(r) for _, r in rows}
    net = f" [{next(iter(networks))}]" if len(networks) == 1 else ""
    head = ["run", f"{way_head} (mean of samples) ↑", "EEG→CLIP retrieval top-1 ↑", f"FID{net} ↓", f"IS{net} ↑", "SSIM ↑", "PSNR ↑"]
    if paper_table2:
        head.append("paper Table 2 top-1")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, r in rows:
        cells = [label, *run_cells(r, same_way)]
        if not net:
            cells[3] += f" ({network_name(r)})"
            cells[4] += f" ({network_name(r)})"
        if paper_table2:
            cells.append(f"{TABLE2[label]}%" if label in TABLE2 else "–")
        lines.append("| " + " | ".join(cells) + " |")
    by_label = dict(rows)
    source = controls_of if controls_of is not None else rows[0][0]
    if source not in by_label:
        raise ValueError(f"--controls-from {source!r} is not one of the runs ({', '.join(by_label)})")
    for name, title in CONTROL_ROWS.items():
        cells = control_cells(by_label[source], name)
        if cells is not None:
            lines.append("| " + " | ".join([f"{title} control ({source})", *cells] + (["–"] if paper_table2 else [])) + " |")
    notes = []
    for label, r in rows:
        st = r["settings"]
        if st.get("n_way_requested", st["n_way"]) > st["n_way"]:
            notes.append(
                f"{label}: {st['n_way']}-way, not {st['n_way_requested']}-way — the classifier has only "
                f"{st.get('classifier_classes', st['n_way'])} classes"
            )
        notes += [f"FAILURE of {label}: {f}" for f in r.get("failures", [])]
    intervals = "[low, high]: 95% bootstrap interval over EEG trials; (chance) beside the figures that have one"
    return "\n".join(lines) + "\n\n" + "".join(f"* {n}\n" for n in [intervals, *notes])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", metavar="[LABEL=]PATH", help="evaluation folder, metrics.json, or a glob")
    parser.add_argument("--paper-table2", action="store_true", help="add the paper's Table 2 50-way top-1 per row name")
    parser.add_argument("--controls-from", metavar="LABEL", help="run whose control rows are shown (default: the first)")
    args = parser.parse_args(argv)
    try:
        rows = [(label, read_metrics(path)) for label, path in resolve(args.runs)]
        print(table(rows, paper_table2=args.paper_table2, controls_of=args.controls_from), end="")
    except (OSError, ValueError) as e:
        print(f"collect_metrics: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
