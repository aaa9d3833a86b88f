"""One summary picture of stage-3 runs: for one test trial per class, its picture, a sample of each model and a
sample of the shuffled-EEG control, with the table of scripts/collect_metrics.py under it.

Usage::

    python scripts/summary_figure.py full=runs/demo/eval no_pretrain=runs/demo/eval_no_pretrain \\
        no_clip=runs/demo/eval_no_clip --columns full,no_clip --out runs/demo/summary.png

Runs are ``LABEL=EVAL_FOLDER`` (as for collect_metrics.py); the **first** is the reference: its ``trials.csv``
chooses the trials (the lowest trial index of each class) and its ``samples/`` give the ground truth and the
shuffled-EEG control sample (``<trial>_shuffled_sample0.png``). ``--columns`` names the runs drawn as image
columns (default: every run), left to right after the ground truth; every run appears in the table.
Rows: trials; columns: ground truth | sample 0 of each run | shuffled-EEG control sample 0 of the reference.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # collect_metrics.py beside this file

import collect_metrics

PAD = 6
TEXT = (20, 20, 20)


def font(size: int):
    """DejaVu Sans (shipped with matplotlib), so the picture is the same on every machine."""
    from matplotlib import font_manager
    from PIL import ImageFont

    return ImageFont.truetype(font_manager.findfont("DejaVu Sans"), size)


def trials_by_class(eval_dir: Path) -> list[tuple[int, int]]:
    """``[(label, trial index)]``: the lowest-index trial of each class in ``eval_dir/trials.csv``, by class."""
    path = eval_dir / "trials.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: run stage 3 (dreamdiffusion test -c ...) into {eval_dir} first")
    first: dict[int, int] = {}
    with path.open() as f:
        for row in csv.DictReader(f):
            label, index = int(row["label"]), int(row["index"])
            first[label] = min(index, first.get(label, index))
    return sorted(first.items())


def trial_stem(samples: Path, index: int) -> str:
    """``trial<index>_<image>`` of trial ``index`` in a ``samples/`` folder."""
    found = sorted(samples.glob(f"trial{index:05d}_*_gt.png"))
    if len(found) != 1:
        raise FileNotFoundError(f"no single ground-truth picture trial{index:05d}_*_gt.png in {samples}")
    return found[0].name[: -len("_gt.png")]


def tile(path: Path, size: int):
    from PIL import Image

    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: was stage 3 run with controls on the same split?")
    return Image.open(path).convert("RGB").resize((size, size), Image.NEAREST)


def table_cells(markdown: str) -> tuple[list[list[str]], list[str]]:
    """Rows of cells of the first Markdown table in ``markdown`` (separator line dropped) and the lines after it."""
    rows, notes = [], []
    for line in markdown.splitlines():
        if line.startswith("|---"):
            continue
        if line.startswith("| "):
            rows.append([c.strip() for c in line.strip().strip("|").split(" | ")])
        elif line.strip():
            notes.append(line)
    return rows, notes


def draw_table(rows: list[list[str]], notes: list[str], size: int):
    """The table as a picture: a grid with a header row, then the notes."""
    from PIL import Image, ImageDraw

    face = font(size)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    widths = [max(measure.textlength(row[c], font=face) for row in rows if c < len(row)) + 2 * PAD for c in range(len(rows[0]))]
    line_h = size + 2 * PAD
    width = int(max(sum(widths), *(measure.textlength(n, font=face) + 2 * PAD for n in notes))) + 1
    height = line_h * (len(rows) + len(notes)) + PAD
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    for r, row in enumerate(rows):
        x, y = 0, r * line_h
        if r == 0:
            draw.rectangle([0, 0, int(sum(widths)), line_h], fill=(235, 235, 235))
        for c, text in enumerate(row):
            draw.text((x + PAD, y + PAD), text, fill=TEXT, font=face)
            x += widths[c]
        draw.line([0, y + line_h, int(sum(widths)), y + line_h], fill=(200, 200, 200))
    for n, note in enumerate(notes):
        draw.text((PAD, line_h * (len(rows) + n) + PAD), note, fill=TEXT, font=face)
    return image


def summary_figure(runs: list[tuple[str, Path]], columns: list[str], out: Path, tile_size: int = 128, text_size: int = 14) -> Path:
    """Write the summary picture of ``runs`` (``[(label, eval folder)]``, the first is the reference) to ``out``."""
    from PIL import Image, ImageDraw

    folders = dict(runs)
    unknown = [c for c in columns if c not in folders]
    if unknown:
        raise ValueError(f"--columns {', '.join(unknown)}: not among the runs ({', '.join(folders)})")
    reference_label, reference = runs[0]
    heads = ["ground\ntruth", *(f"{c}\nsample 0" for c in columns), f"shuffled EEG\n({reference_label})"]
    picks = trials_by_class(reference)
    face = font(text_size)
    label_w, head_h = 9 * text_size, 3 * text_size + PAD
    grid_w = label_w + len(heads) * (tile_size + PAD)
    grid = Image.new("RGB", (grid_w, head_h + len(picks) * (tile_size + PAD)), "white")
    draw = ImageDraw.Draw(grid)
    for c, head in enumerate(heads):
        draw.text((label_w + c * (tile_size + PAD), PAD), head, fill=TEXT, font=face)
    for r, (label, index) in enumerate(picks):
        stem = trial_stem(reference / "samples", index)
        paths = [reference / "samples" / f"{stem}_gt.png"]
        paths += [folders[c] / "samples" / f"{stem}_sample0.png" for c in columns]
        paths.append(reference / "samples" / f"{stem}_shuffled_sample0.png")
        y = head_h + r * (tile_size + PAD)
        draw.text((PAD, y + tile_size // 2 - text_size), f"class {label}\ntrial {index}", fill=TEXT, font=face)
        for c, path in enumerate(paths):
            grid.paste(tile(path, tile_size), (label_w + c * (tile_size + PAD), y))
    rows = [(label, collect_metrics.read_metrics(collect_metrics.metrics_file(folder))) for label, folder in runs]
    table = draw_table(*table_cells(collect_metrics.table(rows, controls_of=reference_label)), text_size)
    picture = Image.new("RGB", (max(grid.width, table.width), grid.height + table.height + PAD), "white")
    picture.paste(grid, (0, 0))
    picture.paste(table, (0, grid.height + PAD))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    picture.save(tmp, format="PNG")
    tmp.replace(out)  # never a half-written picture
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", metavar="LABEL=EVAL_FOLDER", help="stage-3 folders; the first is the reference")
    parser.add_argument("--columns", help="comma-separated run labels drawn as image columns (default: every run)")
    parser.add_argument("--out", required=True, type=Path, help="PNG to write, e.g. runs/demo/summary.png")
    parser.add_argument("--tile", type=int, default=128, help="side of each picture in pixels (default 128)")
    args = parser.parse_args(argv)
    try:
        runs = [(label, path.parent) for label, path in collect_metrics.resolve(args.runs)]
        columns = args.columns.split(",") if args.columns else [label for label, _ in runs]
        print(summary_figure(runs, columns, args.out, args.tile))
    except (OSError, ValueError) as e:
        print(f"summary_figure: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
