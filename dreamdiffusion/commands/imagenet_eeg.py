"""``dreamdiffusion data check-imagenet-eeg`` and ``dreamdiffusion data synth-imagenet-eeg``.

``check-imagenet-eeg`` reads the files exactly as :class:`~dreamdiffusion.data.imagenet_eeg.ImageNetEEGDataModule`
does and prints one JSON object: trials per split after filtering, per subject and per class, trials
dropped by the length rule, trials whose EEG window holds NaN or Inf (by index, subject and split),
missing and unreadable images by name, and the errors that would stop a run. Its exit status is 1 when
a run would fail (a missing or unreadable image, an empty split, a bad file, NaN trials with
``--nonfinite-trials error``).

``synth-imagenet-eeg`` writes the synthetic twin (:mod:`dreamdiffusion.data.synthetic`).
"""

from __future__ import annotations

import argparse
import json
from collections import Counter

from dreamdiffusion.data.imagenet_eeg_files import ADDRESSING, load_eeg_file, load_split_file, resolve_addressing
from dreamdiffusion.data.imagenet_eeg_selection import NONFINITE, empty_split_errors, nonfinite_message, select_trials
from dreamdiffusion.data.images import ImageReadError, find_images, read_image
from dreamdiffusion.data.synthetic import SyntheticConfig, write_synthetic_imagenet_eeg


def check(args: argparse.Namespace) -> dict:
    """The report printed by ``check-imagenet-eeg`` (``ok`` is False when a run would fail)."""
    report = {
        "eeg": args.eeg,
        "splits_file": args.splits,
        "images": args.images,
        "subject": args.subject,
        "split_index": args.split_index,
        "errors": [],
    }
    try:
        addressing = resolve_addressing(args.splits, args.split_addressing)
        report["split_addressing"] = addressing
        eeg = load_eeg_file(args.eeg)
        split = load_split_file(args.splits, args.split_index)
        selection = select_trials(
            eeg, split, args.splits, addressing, args.subject, args.min_length, args.max_length, args.window_stop,
            args.exclude_image, args.window_start,
        )
    except (OSError, ValueError, KeyError, IndexError) as err:
        report["errors"].append(str(err).strip("'\""))
        report["ok"] = False
        return report

    trials = {name: [eeg.trials[p] for p in ps] for name, ps in selection.positions.items()}
    report["splits"] = {name: len(t) for name, t in trials.items()}
    report["per_subject"] = {name: dict(sorted(Counter(str(int(x["subject"])) for x in t).items())) for name, t in trials.items()}
    report["per_class"] = {name: dict(sorted(Counter(eeg.labels[int(x["label"])] for x in t).items())) for name, t in trials.items()}
    report["dropped_by_length"] = selection.dropped_by_length
    report["dropped_short_for_window"] = selection.dropped_short_for_window
    report["excluded_by_image"] = selection.excluded_by_image
    report["dropped_nonfinite"] = {name: len(ps) for name, ps in selection.nonfinite.items()}
    report["nonfinite_trials"] = [
        {"index": p, "subject": int(eeg.trials[p]["subject"]), "split": name}
        for name, ps in selection.nonfinite.items() for p in ps
    ]
    report["warnings"] = []
    nonfinite = nonfinite_message(selection, eeg, (args.window_start, args.window_stop), args.nonfinite_trials)
    if nonfinite:
        report["errors" if args.nonfinite_trials == "error" else "warnings"].append(nonfinite)
    report["errors"] += empty_split_errors(selection, args.splits, args.subject, args.split_index)

    names = sorted({eeg.images[int(x["image"])] for t in trials.values() for x in t})
    report["n_images"] = len(names)
    try:
        found, missing = find_images(args.images, names)
    except FileNotFoundError as err:
        found, missing = {}, names
        report["errors"].append(str(err))
    unreadable = []
    for name, path in found.items():
        try:
            read_image(path)
        except ImageReadError:
            unreadable.append(name)
    report["missing_images"] = missing
    report["unreadable_images"] = unreadable
    if missing:
        report["errors"].append(f"{len(missing)} image(s) missing under {args.images} (listed in missing_images)")
    if unreadable:
        report["errors"].append(f"{len(unreadable)} image(s) unreadable (listed in unreadable_images)")
    report["ok"] = not report["errors"]
    return report


def run_check(args: argparse.Namespace) -> int:
    report = check(args)
    print(json.dumps(report, indent=2))
    return 0 if report["ok"] else 1


def run_synth(args: argparse.Namespace) -> int:
    out = write_synthetic_imagenet_eeg(
        args.out, classes=args.classes, images_per_class=args.images_per_class, subjects=args.subjects, seed=args.seed,
        signal_to_noise=args.snr,
    )
    print(
        f"synthetic ImageNet-EEG ({args.classes} classes x {args.images_per_class} images x {args.subjects} subjects, "
        f"signal-to-noise {args.snr}, seed {args.seed}) in {out}; image_root is {out / 'images'}"
    )
    return 0


def register(data_commands: argparse._SubParsersAction) -> None:
    p = data_commands.add_parser(
        "check-imagenet-eeg", help="check ImageNet-EEG files and images as the data module reads them; prints JSON"
    )
    p.add_argument("--eeg", required=True, help="eeg_5_95_std.pth")
    p.add_argument("--splits", required=True, help="block_splits_by_image_single.pth or _all.pth")
    p.add_argument("--images", required=True, help="image root holding <wnid>/<name>.JPEG")
    p.add_argument("--subject", type=int, default=0, help="1..6, or 0 for all (only with _all addressing)")
    p.add_argument("--split-index", type=int, default=0)
    p.add_argument("--split-addressing", default="auto", choices=ADDRESSING)
    p.add_argument("--min-length", type=int, default=450, help="shortest trial kept, samples")
    p.add_argument("--max-length", type=int, default=600, help="longest trial kept, samples")
    p.add_argument("--window-start", type=int, default=20, help="start of the EEG window, samples")
    p.add_argument("--window-stop", type=int, default=460, help="end of the EEG window, samples")
    p.add_argument("--nonfinite-trials", default="drop", choices=NONFINITE,
                   help="trials whose EEG window holds NaN/Inf: dropped (a warning) or an error, as the data module's nonfinite_trials")
    p.add_argument("--exclude-image", action="append", default=[], metavar="NAME",
                   help="leave out the trials of this image (repeatable), as the data module's exclude_images")
    p.set_defaults(func=run_check)

    s = data_commands.add_parser("synth-imagenet-eeg", help="write a synthetic ImageNet-EEG twin (same file formats)")
    s.add_argument("--out", required=True, help="folder to write (replaced if it holds a previous synthetic dataset)")
    s.add_argument("--classes", type=int, default=SyntheticConfig.classes)
    s.add_argument("--images-per-class", type=int, default=SyntheticConfig.images_per_class)
    s.add_argument("--subjects", type=int, default=SyntheticConfig.subjects)
    s.add_argument("--seed", type=int, default=SyntheticConfig.seed)
    s.add_argument(
        "--snr", type=float, default=SyntheticConfig.signal_to_noise,
        help="peak amplitude of a class's evoked components relative to the background noise SD (before "
        "standardisation); higher makes the class easier to read from the EEG",
    )
    s.set_defaults(func=run_synth)
