"""``dreamdiffusion weights import-authors --checkpoint checkpoint.pth --out DIR [--sd-config config15.yaml]``.

Turns the DreamDiffusion authors' released generation checkpoint into a pipeline folder that ``generate``,
``dreamdiffusion test -c configs/eval_authors.yaml`` and ``DreamDiffusionPipeline.from_pretrained`` read.
Nothing from the file is executed (see :mod:`dreamdiffusion.models.authors_checkpoint`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

BASE_MODEL = "the DreamDiffusion authors' released generation checkpoint (Bai et al. 2023; SD-1.5 fine-tuned on ImageNet-EEG)"


def training_data(config_fields: dict[str, str]) -> str:
    """The model card's data line, from their pickled config's fields (read as data) when it has them."""
    subject, splits = config_fields.get("subject"), config_fields.get("splits_path")
    if subject is None:
        return "ImageNet-EEG (the authors' training; subject and split not recorded in the file)"
    return f"ImageNet-EEG, subject {subject}" + (f", splits {splits}" if splits else "") + " (as recorded in the authors' config)"


def import_authors(args: argparse.Namespace) -> int:
    from dreamdiffusion.models.authors_checkpoint import import_authors_checkpoint

    out = Path(args.out)
    if (out.is_file() or (out.is_dir() and any(out.iterdir()))) and not args.overwrite:
        print(f"{out} exists and is not empty; choose another --out or pass --overwrite", file=sys.stderr)
        return 1
    try:
        pipe, report = import_authors_checkpoint(args.checkpoint, args.sd_config, num_heads=args.encoder_heads, ignore=args.ignore)
    except (FileNotFoundError, ValueError) as e:
        print(f"could not import {args.checkpoint}: {e}", file=sys.stderr)
        return 1
    pipe.save_pretrained(out, base_model=BASE_MODEL, data=training_data(report.config_fields))
    for line in report.lines():
        print(line)
    if report.config_fields:
        print("their config (read, not executed): " + ", ".join(f"{k}={v}" for k, v in sorted(report.config_fields.items())))
    print(f"pipeline written to {out}; sampler: PLMS (as the authors); try: dreamdiffusion generate --pipeline {out} ...")
    return 0


def register(weights_commands: argparse._SubParsersAction) -> None:
    """Add ``import-authors`` to the ``weights`` subcommands."""
    p = weights_commands.add_parser("import-authors", help="convert the authors' released checkpoint.pth to a pipeline folder (safely)")
    p.add_argument("--checkpoint", required=True, help="their pretrains/models/checkpoint.pth")
    p.add_argument("--out", required=True, help="pipeline folder to write")
    p.add_argument("--sd-config", default=None, help="their pretrains/models/config15.yaml (default: Stable Diffusion 1.5's ldm values)")
    p.add_argument("--encoder-heads", type=int, default=None,
                   help="attention heads of their EEG encoder (not in the weights; default: their config's num_heads, else 16)")
    p.add_argument("--ignore", action="append", default=[], metavar="PREFIX",
                   help="leave out state-dict keys starting with PREFIX (repeatable; each is listed). Unknown keys are an error otherwise")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    p.set_defaults(func=import_authors)
