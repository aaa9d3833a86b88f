"""Stage-3 files in the stage folder: the generated PNGs, the per-class grids, ``trials.csv`` and the reports.

Written by :class:`~dreamdiffusion.stages.evaluate.EvalModule` (rank 0 for everything but the PNGs, which each
process writes for its own trials); every file is written atomically.

* ``samples/trial<index>_<image>_gt.png``, ``..._sample<k>.png`` (and, with controls,
  ``..._shuffled_sample<k>.png``, ``..._null_sample<k>.png``): :func:`save_pngs` with names from :func:`trial_name`;
  ``predictions/`` holds the same ``..._sample<k>.png`` names for ``predict``;
* ``samples/grid_class<label>.png``: :func:`write_grids`;
* ``trials.csv``: :func:`write_trials`;
* ``metrics.json`` and ``metrics.md`` (:func:`dreamdiffusion.stages.eval_report.metrics_table`): :func:`write_reports`.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

from torch import Tensor

from dreamdiffusion.atomic import atomic_path, write_text
from dreamdiffusion.stages.eval_report import hits_of, metrics_table


def safe_name(text: str) -> str:
    """``text`` with every run of characters other than ``A-Za-z0-9_.-`` replaced by ``-`` (a file-name part)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text)


def trial_name(index: int, image_name: str) -> str:
    """``trial<index, 5 digits>_<image name>``: the stem of every PNG of a trial."""
    return f"trial{index:05d}_{safe_name(image_name)}"


def save_pngs(folder: Path, images: Tensor, names: list[str]) -> list[str]:
    """Write ``images [N, 3, H, W]`` in [0, 1] as ``folder/<name>.png`` (one name per image); returns the paths."""
    from dreamdiffusion.pipeline import to_pil

    paths = []
    for image, name in zip(to_pil(images), names, strict=True):
        path = folder / f"{name}.png"
        with atomic_path(path) as tmp:
            image.save(tmp, format="PNG")
        paths.append(str(path))
    return paths


def write_reports(folder: Path, results: dict) -> None:
    """``metrics.json`` (``results`` as they are) and ``metrics.md`` (:func:`~dreamdiffusion.stages.eval_report.metrics_table`)."""
    write_text(folder / "metrics.json", json.dumps(results, indent=2, ensure_ascii=False, allow_nan=False) + "\n")
    write_text(folder / "metrics.md", metrics_table(results))


def write_trials(
    path: Path, table: dict[str, Tensor], split: dict[int, dict], position_of: dict[int, int], partner: list[int] | None
) -> None:
    """``trials.csv``: one row per trial (sorted by index) with its picture, class, subject and scalar values.

    ``table`` is the computed per-trial table (``index [N]`` and ``[N, width]`` columns; only width-1 columns are
    written, plus the per-trial retrieval hits); ``split`` maps trial index → ``image_name``, ``label``,
    ``subject``; ``position_of`` maps trial index → position in the split and ``partner`` position → the shuffled
    control's partner position (``None`` without controls: no ``shuffled_partner_index`` column).
    """
    table = dict(table)
    names = [split[i]["image_name"] for i in table["index"].tolist()]
    for prefix in ("", "shuffled_"):  # per-trial retrieval hits, for paired comparisons of runs
        found = hits_of(table, prefix, names) if f"{prefix}clip_predicted" in table else None
        if found is not None:
            table[f"{prefix}retrieval_hit"] = found[0][:, None]
    columns = [k for k, v in table.items() if k != "index" and v.shape[1] == 1]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    controls = partner is not None
    writer.writerow(["index", "image_name", "label", "subject"] + (["shuffled_partner_index"] if controls else []) + columns)
    index_at = {p: i for i, p in position_of.items()}
    for row, index in enumerate(table["index"].tolist()):
        info = split[index]
        partner_index = [index_at[partner[position_of[index]]]] if controls else []
        values = [f"{float(table[c][row, 0]):.6g}" for c in columns]
        writer.writerow([index, info["image_name"], info["label"], info["subject"], *partner_index, *values])
    write_text(path, out.getvalue())


def write_grids(folder: Path, labels: dict[int, int], num_samples: int, max_grid_rows: int) -> None:
    """``folder/grid_class<label>.png``: a row per trial of the class (up to ``max_grid_rows``), the ground truth
    then the ``num_samples`` samples, read back from ``folder``'s PNGs. ``labels`` maps trial index → class."""
    from PIL import Image

    by_class: dict[int, list[int]] = {}
    for index in sorted(labels):
        by_class.setdefault(labels[index], []).append(index)
    for label, indices in sorted(by_class.items()):
        rows = []
        for index in indices[:max_grid_rows]:
            (gt,) = folder.glob(f"trial{index:05d}_*_gt.png")
            stem = gt.name[: -len("_gt.png")]
            paths = [gt] + [folder / f"{stem}_sample{k}.png" for k in range(num_samples)]
            rows.append([Image.open(p).convert("RGB") for p in paths])
        w, h = rows[0][0].size
        grid = Image.new("RGB", (w * len(rows[0]), h * len(rows)), "white")
        for r, row in enumerate(rows):
            for c, image in enumerate(row):
                grid.paste(image, (c * w, r * h))
        with atomic_path(folder / f"grid_class{label:03d}.png") as tmp:
            grid.save(tmp, format="PNG")
