"""``dreamdiffusion data check-things-eeg2`` and ``dreamdiffusion data synth-things-eeg2``.

``check-things-eeg2`` reads the files as :class:`~dreamdiffusion.data.things_eeg2.ThingsEEG2DataModule` does and
prints one JSON object: the metadata's picture and concept counts, each subject's EEG files (shape, channels,
time range) or why they cannot be read, the pictures missing on disk (counted, the first ones named), and the
errors that would stop a run. Exit status 1 when a run would fail. Nothing is loaded into memory beyond the
metadata (the EEG is memory-mapped).

``synth-things-eeg2`` writes the synthetic twin (:mod:`dreamdiffusion.data.things_eeg2_synthetic`).

``preprocess-things-eeg2`` preprocesses the raw recordings with the whitening fit on training EEG only
(:mod:`dreamdiffusion.data.things_eeg2_preprocess`), one subject folder at a time, and prints each manifest's summary.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from dreamdiffusion.data import things_eeg2_files as te
from dreamdiffusion.data.things_eeg2_preprocess import MANIFEST, RawPreprocessing, preprocess_subject
from dreamdiffusion.data.things_eeg2_synthetic import ThingsSyntheticConfig, write_synthetic_things_eeg2

SHOWN = 20  # missing pictures named in the report


def check(args: argparse.Namespace) -> dict:
    """The report printed by ``check-things-eeg2`` (``ok`` is False when a run would fail)."""
    root = Path(args.root)
    report: dict = {"root": str(root), "eeg_dir": args.eeg_dir, "subjects": args.subjects, "errors": []}
    try:
        metadata = te.load_metadata(root / "image_metadata.npy")
    except (OSError, ValueError, KeyError) as err:
        report["errors"].append(str(err).strip("'\""))
        report["ok"] = False
        return report
    report["pictures"] = {part: len(metadata.files[part]) for part in ("training", "test")}
    report["concepts"] = {part: len(set(metadata.concepts[part])) for part in ("training", "test")}
    report["eeg"] = {}
    for subject in args.subjects:
        for part in ("training", "test"):
            path = te.eeg_path(root, args.eeg_dir, subject, part)
            key = f"sub-{subject:02d}/{part}"
            try:
                file = te.load_eeg_file(path)
            except (OSError, ValueError, KeyError) as err:
                report["eeg"][key] = None
                report["errors"].append(str(err).strip("'\""))
                continue
            report["eeg"][key] = {
                "shape": list(file.data.shape), "channels": len(file.ch_names),
                "times": [round(float(file.times[0]), 4), round(float(file.times[-1]), 4)],
            }
            if file.data.shape[0] != len(metadata.files[part]):
                report["errors"].append(
                    f"{path}: {file.data.shape[0]} conditions but the metadata lists {len(metadata.files[part])} {part} pictures"
                )
    missing = [
        str(metadata.image_path(root, part, i)) for part in ("training", "test") for i in range(len(metadata.files[part]))
        if not metadata.image_path(root, part, i).is_file()
    ]
    report["missing_pictures"] = len(missing)
    report["missing_pictures_first"] = missing[:SHOWN]
    if missing:
        report["errors"].append(f"{len(missing)} picture(s) missing under {root}/training_images or test_images")
    report["ok"] = not report["errors"]
    return report


def run_check(args: argparse.Namespace) -> int:
    """Print the report as JSON; exit status 1 when a run would fail."""
    report = check(args)
    print(json.dumps(report, indent=2))
    return int(not report["ok"])


def run_synth(args: argparse.Namespace) -> int:
    config = ThingsSyntheticConfig(
        subjects=tuple(args.subjects), train_concepts=args.train_concepts, images_per_concept=args.images_per_concept,
        test_concepts=args.test_concepts, train_repetitions=args.train_repetitions,
        test_repetitions=args.test_repetitions, channels=args.channels, sfreq=args.sfreq, signal_to_noise=args.snr,
        seed=args.seed, raw=args.raw, raw_sessions=args.raw_sessions,
    )
    out = write_synthetic_things_eeg2(args.out, config)
    print(f"synthetic THINGS-EEG2 ({config}) in {out}")
    return 0


def run_preprocess(args: argparse.Namespace) -> int:
    """Preprocess each subject's raw sessions into ``--out/sub-XX`` (each folder written atomically)."""
    root = Path(args.root)
    raw_dir, out = root / args.raw_dir, root / args.out
    config = RawPreprocessing(sessions=tuple(args.sessions), channels=args.channels, sfreq=args.sfreq,
                              raw_sfreq=args.raw_sfreq, mvnn_dim=args.mvnn_dim, seed=args.seed,
                              chunk_conditions=args.chunk_conditions)
    metadata = te.load_metadata(root / "image_metadata.npy")  # picture i of the metadata is condition i of the EEG
    pictures = {part: len(metadata.files[part]) for part in ("training", "test")}
    for subject in args.subjects:
        folder = preprocess_subject(raw_dir, subject, out, config, pictures)
        manifest = json.loads((folder / MANIFEST).read_text())
        print(json.dumps({"subject": subject, "folder": str(folder), "whitening_fit": manifest["whitening_fit"],
                          "shapes": {k: v["shape"] for k, v in manifest["outputs"].items()}}))
    print(f"use it with --data.init_args.eeg_dir={out} (whitening fit on training EEG only)")
    return 0


def register(data_commands: argparse._SubParsersAction) -> None:
    p = data_commands.add_parser("check-things-eeg2",
                                 help="check THINGS-EEG2 files and pictures as the data module reads them; prints JSON")
    p.add_argument("--root", required=True, help="folder of image_metadata.npy, training_images/, test_images/")
    p.add_argument("--eeg-dir", default="preprocessed_data", help="EEG folder inside root holding sub-XX/")
    p.add_argument("--subjects", type=int, nargs="+", default=list(range(1, 11)), help="subjects to check (1..10)")
    p.set_defaults(func=run_check)

    d = ThingsSyntheticConfig()
    s = data_commands.add_parser("synth-things-eeg2", help="write a synthetic THINGS-EEG2 twin (same file formats)")
    s.add_argument("--out", required=True, help="folder to write (replaced if it exists)")
    s.add_argument("--subjects", type=int, nargs="+", default=list(d.subjects))
    s.add_argument("--train-concepts", type=int, default=d.train_concepts)
    s.add_argument("--images-per-concept", type=int, default=d.images_per_concept)
    s.add_argument("--test-concepts", type=int, default=d.test_concepts)
    s.add_argument("--train-repetitions", type=int, default=d.train_repetitions)
    s.add_argument("--test-repetitions", type=int, default=d.test_repetitions)
    s.add_argument("--channels", type=int, default=d.channels, choices=(17, 63))
    s.add_argument("--sfreq", type=float, default=d.sfreq, help="100 (official files) or 250 (NICE/ATM variant)")
    s.add_argument("--snr", type=float, default=d.signal_to_noise, help="evoked peak relative to the noise SD")
    s.add_argument("--seed", type=int, default=d.seed)
    s.add_argument("--raw", action="store_true", help="also write raw recordings (raw_data/sub-XX/ses-YY/, 1000 Hz)")
    s.add_argument("--raw-sessions", type=int, default=d.raw_sessions, help="sessions of the raw recordings (even)")
    s.set_defaults(func=run_synth)

    r = RawPreprocessing()
    q = data_commands.add_parser(
        "preprocess-things-eeg2",
        help="preprocess THINGS-EEG2's raw recordings with the whitening fit on training EEG only (no test-EEG leak)")
    q.add_argument("--root", required=True, help="THINGS-EEG2 folder (the one holding image_metadata.npy)")
    q.add_argument("--raw-dir", default="raw_data", help="raw recordings inside root (or absolute): sub-XX/ses-YY/raw_eeg_*.npy")
    q.add_argument("--out", default="preprocessed_from_raw", help="EEG folder to write inside root (or absolute); sub-XX/ replaced")
    q.add_argument("--subjects", type=int, nargs="+", default=list(range(1, 11)), help="subjects (1..10)")
    q.add_argument("--sessions", type=int, nargs="+", default=list(r.sessions), help="session numbers (the release has 1-4)")
    q.add_argument("--channels", default=r.channels, choices=("occipito-parietal", "all"),
                   help="the 17 O/P channels of the official files, or all 63 EEG channels (NICE/ATM)")
    q.add_argument("--sfreq", type=float, default=r.sfreq, help="output rate in Hz (100 official, 250 NICE/ATM)")
    q.add_argument("--raw-sfreq", type=float, default=r.raw_sfreq, help="the rate the raw files must state (Hz)")
    q.add_argument("--mvnn-dim", default=r.mvnn_dim, choices=("time", "epochs"),
                   help="noise covariance over repetitions per time point (the release's) or over time per epoch")
    q.add_argument("--seed", type=int, default=r.seed, help="draws the kept repetitions and their order")
    q.add_argument("--chunk-conditions", type=int, default=r.chunk_conditions, help="pictures per chunk (memory)")
    q.set_defaults(func=run_preprocess)
