"""``dreamdiffusion data moabb-list | moabb-download | moabb-build``: the MOABB pre-training corpus.

* ``moabb-list`` applies the selection rule to MOABB's metadata, offline; ``--write`` pins the result
  (``configs/data/moabb_paper.yaml``), ``--check`` tells whether a pinned list still matches the rule.
* ``moabb-download`` fetches a pinned list into MOABB's cache (``MNE_DATA``), on a machine with internet.
* ``moabb-build -c CONFIG [--key=value ...]`` preprocesses into the shard cache once (what ``prepare_data``
  does before training). It reads the stage config through the parser of ``dreamdiffusion fit``
  (:func:`dreamdiffusion.cli.parse_stage`), so interpolations, ``--run_dir`` and merged ``-c`` files mean
  what they mean to ``fit``, and it builds the cache ``fit`` will read.
"""

from __future__ import annotations

import argparse
import json
import sys

PINNED = "configs/data/moabb_paper.yaml"


def register(subparsers) -> None:
    listing = subparsers.add_parser("moabb-list", help="MOABB EEG datasets with more than N EEG channels (offline)")
    listing.add_argument("--min-channels", type=int, default=30, help="select datasets with more than this many EEG channels")
    listing.add_argument("--include", nargs="*", default=[], help="datasets to add whatever their channel count")
    listing.add_argument("--exclude", nargs="*", default=[], help="datasets to leave out")
    listing.add_argument("--json", action="store_true", help="print a JSON list of {name, paradigm, eeg_channels, sfreq, subjects}")
    listing.add_argument("--write", metavar="PATH", help=f"pin the selection to a YAML list (e.g. {PINNED})")
    listing.add_argument("--check", metavar="PATH", help="exit 1 when a pinned list differs from what the rule selects now")
    listing.set_defaults(func=run_list)

    fetch = subparsers.add_parser("moabb-download", help="download a pinned MOABB list into MNE_DATA (needs internet)")
    fetch.add_argument("--datasets", default=PINNED, help="pinned list YAML, or comma-separated dataset names")
    fetch.add_argument("--exclude", nargs="*", default=[], help="datasets to leave out")
    fetch.add_argument("--accept-licences", action="store_true", help="accept licence terms where a dataset asks (read them first)")
    fetch.set_defaults(func=run_download)

    build = subparsers.add_parser(
        "moabb-build", help="preprocess MOABB recordings into the shard cache (once), as a stage-1 config says",
        usage="dreamdiffusion data moabb-build -c CONFIG [-c CONFIG ...] [--key=value ...] "
        "[--datasets D] [--cache-dir DIR] [--verify HOW] [--quiet]",
        description="Reads the stage config exactly as `dreamdiffusion fit` does (the same parser: several -c files "
        "merge, ${..run_dir} interpolations resolve, --run_dir=DIR and any --key=value of `dreamdiffusion fit --help` "
        "override), builds the data module its data.class_path names (a MOABBDataModule) and runs its prepare_data. "
        "Nothing else is built.",
        allow_abbrev=False,  # --data.init_args.* must not be taken for an abbreviation of --datasets
    )
    build.add_argument("--datasets", help="pinned list YAML, or comma-separated dataset names (overrides data.init_args.datasets)")
    build.add_argument("--cache-dir", help="shard cache folder (overrides data.init_args.cache_dir)")
    build.add_argument("--verify", choices=["checksum", "size"], default=None,
                       help="how reused shards are checked (default: checksum, SHA-256, which catches edited shards, "
                       "unless --data.init_args.verify is given)")
    build.set_defaults(func=run_build, takes_stage_args=True)


def _names(value: str):
    return value if value.endswith((".yaml", ".yml")) else [n for n in value.split(",") if n]


def pinned_yaml(selected, undetermined, min_channels: int, include: list[str], exclude: list[str]) -> str:
    """The pinned list as commented YAML: the rule, MOABB's version, one line per dataset."""
    import moabb

    lines = [
        "# The MOABB pre-training corpus, pinned (the paper: every MOABB EEG dataset with more than 30 channels).",
        "# Generated offline from MOABB's dataset metadata by:",
        f"#   dreamdiffusion data moabb-list --min-channels {min_channels}"
        + (f" --include {' '.join(include)}" if include else "") + (f" --exclude {' '.join(exclude)}" if exclude else "")
        + f" --write {PINNED}",
        "# Check it against a newer MOABB with `dreamdiffusion data moabb-list --check configs/data/moabb_paper.yaml`.",
        f"moabb_version: {moabb.__version__}",
        f"min_channels: {min_channels}",
        f"include: {json.dumps(include)}",
        f"exclude: {json.dumps(exclude)}",
        f"# {len(selected)} datasets, {sum(d.subjects for d in selected)} subjects (name: paradigm, EEG channels, Hz, subjects)",
        "datasets:",
    ]
    lines += [f"  - {d.name}  # {d.paradigm}, {d.eeg_channels} ch, {d.sfreq:g} Hz, {d.subjects} subjects" for d in selected]
    if undetermined:
        lines += [
            "# Not decidable offline: MOABB carries no channel metadata for these classes (known only after a",
            "# download); add them to `include` if they hold more than 30 EEG channels:",
        ] + [f"#   {n}" for n in undetermined]
    return "\n".join(lines) + "\n"


def run_list(args: argparse.Namespace) -> int:
    from dreamdiffusion.atomic import write_text
    from dreamdiffusion.data.moabb_catalog import load_pinned, select_datasets

    selected, undetermined = select_datasets(args.min_channels, args.include, args.exclude)
    if args.check:
        pinned, now = load_pinned(args.check), [d.name for d in selected]
        added, removed = sorted(set(now) - set(pinned)), sorted(set(pinned) - set(now))
        if added or removed:
            print(f"{args.check} differs from the rule: MOABB now adds {added}, drops {removed}")
            return 1
        print(f"{args.check} matches the rule ({len(pinned)} datasets)")
        return 0
    if args.write:
        write_text(args.write, pinned_yaml(selected, undetermined, args.min_channels, args.include, args.exclude))
        print(f"pinned {len(selected)} datasets to {args.write}", file=sys.stderr)
    if args.json:
        print(json.dumps([d.to_json() for d in selected], indent=1))
        return 0
    print(f"{'name':<26} {'paradigm':<26} {'EEG ch':>6} {'sfreq':>7} {'subjects':>8}")
    for d in selected:
        print(f"{d.name:<26} {d.paradigm:<26} {d.eeg_channels:>6} {d.sfreq:>7g} {d.subjects:>8}")
    print(f"{len(selected)} datasets with more than {args.min_channels} EEG channels, "
          f"{sum(d.subjects for d in selected)} subjects")
    if undetermined:
        print(f"undetermined offline (no channel metadata in MOABB): {', '.join(undetermined)}")
    return 0


def run_download(args: argparse.Namespace) -> int:
    from dreamdiffusion.data.moabb_sources import download, mne_data_path, resolve_datasets

    names = resolve_datasets(_names(args.datasets), args.exclude)
    print(f"downloading {len(names)} datasets into MNE_DATA={mne_data_path()}", file=sys.stderr)
    failures = download(names, accept=args.accept_licences)
    for f in failures:
        print(f"FAILED {f['dataset']} subject {f['subject']} (cache {f['cache']}): {f['error']}", file=sys.stderr)
    print(f"{len(names)} datasets; {len(failures)} subject download(s) failed", file=sys.stderr)
    return 1 if failures else 0


def run_build(args: argparse.Namespace) -> int:
    import importlib
    import logging

    from dreamdiffusion.cli import config_files, parse_stage
    from dreamdiffusion.data.moabb import MOABBDataModule
    from dreamdiffusion.errors import UserError

    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(levelname)s %(message)s")
    files = config_files(args.stage_args)
    if not files:
        raise UserError(
            "dreamdiffusion data moabb-build reads a stage-1 config: pass -c configs/pretrain.yaml "
            "(or configs/demo/pretrain.yaml), then any --key=value to override it"
        )
    data = parse_stage(args.stage_args).get("data")  # class_path and init_args, checked against the class's signature
    class_path = data.get("class_path") if data is not None else None
    module_name, _, class_name = (class_path or "").rpartition(".")
    cls = getattr(importlib.import_module(module_name), class_name) if module_name else None
    if not (isinstance(cls, type) and issubclass(cls, MOABBDataModule)):
        raise UserError(
            f"{', '.join(files)}: data.class_path is {class_path}; moabb-build builds the corpus of a stage-1 config "
            "(data.class_path: dreamdiffusion.data.moabb.MOABBDataModule)"
        )
    init_args = dict(data.as_dict().get("init_args") or {})
    if args.datasets:
        init_args["datasets"] = _names(args.datasets)
    if args.cache_dir:
        init_args["cache_dir"] = args.cache_dir
    # fit checks reused shards by their size (fast); a build on its own checks their SHA-256 unless told otherwise
    if args.verify or not any(a.startswith("--data.init_args.verify") for a in args.stage_args):
        init_args["verify"] = args.verify or "checksum"
    module = cls(**init_args)
    module.prepare_data()
    counts = module.manifest["counts"]
    print(f"{counts['windows']} windows from {counts['recordings']} recordings in {module.cache.root} "
          f"({module.report['subjects_reused']} subjects reused, {module.report['subjects_built']} built, "
          f"{counts['skipped_recordings']} recordings skipped)")
    return 0
