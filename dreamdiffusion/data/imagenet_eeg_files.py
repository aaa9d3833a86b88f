"""The two ImageNet-EEG files (Spampinato et al., 2017), read and checked, and what a split index addresses.

Files (the formats of the published ImageNet-EEG release)::

    eeg_5_95_std.pth   {"dataset": [{"eeg": FloatTensor[128, L] (1 kHz), "label": int, "image": int,
                         "subject": int 1..6}], "labels": [wnid], "images": [name like n02106662_1451]}
    block_splits_by_image_{single,all}.pth   {"splits": [{"train": [i], "val": [i], "test": [i]}, ...]}
    <image_root>/<wnid>/<name>.JPEG

How a split index is read (``split_addressing``; applied by
:func:`~dreamdiffusion.data.imagenet_eeg_selection.select_trials`):

* ``all`` — an index addresses the whole ``dataset`` list. A subject filter keeps the split's trials
  of that subject, **without re-indexing**.
* ``single`` — an index addresses the trials of **one** subject, in stored order; so it needs a
  subject (``subject != 0``).
* ``auto`` (default) — read from the file name (``..._single.pth`` / ``..._all.pth``).

Both files are read as plain data (:func:`dreamdiffusion.data.plain_load.load_plain`); every malformed part is
an error that names the file, the key or trial, and the expected format.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from dreamdiffusion.data.plain_load import load_plain
from dreamdiffusion.signal import N_CHANS

SPLITS = ("train", "val", "test")
ADDRESSING = ("auto", "single", "all")
TRIAL_KEYS = ("eeg", "label", "image", "subject")


@dataclass
class EEGFile:
    """The contents of ``eeg_5_95_std.pth``, checked."""

    path: Path
    trials: list[dict]
    labels: list[str]
    images: list[str]


def load_eeg_file(path: str | os.PathLike) -> EEGFile:
    """Read and check ``eeg_5_95_std.pth``: keys, EEG rank and channel count, label/image ranges."""
    path = Path(path)
    content = load_plain(path, "ImageNet-EEG file")
    fix = "an ImageNet-EEG EEG file is a dict with 'dataset', 'labels' and 'images' (see data/README.md)"
    if not isinstance(content, dict):
        raise ValueError(f"{path} holds a {type(content).__name__}, not a dict; {fix}")
    missing = [k for k in ("dataset", "labels", "images") if k not in content]
    if missing:
        raise KeyError(f"{path} lacks key(s) {', '.join(repr(k) for k in missing)} (it has {sorted(map(str, content))}); {fix}")
    trials, labels, images = content["dataset"], list(content["labels"]), list(content["images"])
    if not isinstance(trials, list) or not trials:
        length = len(trials) if hasattr(trials, "__len__") else "?"
        raise ValueError(f"{path}: 'dataset' must be a non-empty list of trials, got {type(trials).__name__} of length {length}")
    for i, trial in enumerate(trials):
        where = f"{path}: dataset[{i}]"
        if not isinstance(trial, dict):
            raise ValueError(f"{where} is a {type(trial).__name__}, not a dict with keys {', '.join(TRIAL_KEYS)}")
        absent = [k for k in TRIAL_KEYS if k not in trial]
        if absent:
            raise KeyError(f"{where} lacks key(s) {', '.join(repr(k) for k in absent)}; a trial is a dict with {', '.join(TRIAL_KEYS)}")
        eeg = trial["eeg"]
        if not isinstance(eeg, torch.Tensor):
            raise ValueError(f"{where}['eeg'] is a {type(eeg).__name__}, not a tensor [channels, samples]")
        if eeg.ndim != 2 or eeg.shape[0] != N_CHANS:
            raise ValueError(
                f"{where}['eeg'] has shape {list(eeg.shape)}; expected [{N_CHANS} channels, samples] "
                f"(rank 2, {N_CHANS} channels first)"
            )
        if not 0 <= int(trial["label"]) < len(labels):
            raise ValueError(f"{where}['label'] = {trial['label']} is outside 0..{len(labels) - 1} (the file's 'labels')")
        if not 0 <= int(trial["image"]) < len(images):
            raise ValueError(f"{where}['image'] = {trial['image']} is outside 0..{len(images) - 1} (the file's 'images')")
    return EEGFile(path, trials, [str(x) for x in labels], [str(x) for x in images])


def load_split_file(path: str | os.PathLike, split_index: int) -> dict[str, list[int]]:
    """Split ``split_index`` of a ``block_splits_by_image_*.pth`` file: ``{"train", "val", "test": [int]}``."""
    path = Path(path)
    content = load_plain(path, "ImageNet-EEG split file")
    fix = "a split file is a dict {'splits': [{'train': [...], 'val': [...], 'test': [...]}, ...]}"
    if not isinstance(content, dict) or "splits" not in content:
        have = sorted(map(str, content)) if isinstance(content, dict) else type(content).__name__
        raise KeyError(f"{path} lacks key 'splits' (it has {have}); {fix}")
    splits = content["splits"]
    if not isinstance(splits, list) or not 0 <= split_index < len(splits):
        n = len(splits) if isinstance(splits, list) else 0
        raise IndexError(f"split_index {split_index} is out of range: {path} holds {n} split(s) (0..{n - 1})")
    split = splits[split_index]
    absent = [k for k in SPLITS if not isinstance(split, dict) or k not in split]
    if absent:
        raise KeyError(f"{path}: splits[{split_index}] lacks key(s) {', '.join(repr(k) for k in absent)}; {fix}")
    return {k: [int(i) for i in split[k]] for k in SPLITS}


def resolve_addressing(splits_path: str | os.PathLike, split_addressing: str) -> str:
    """``"single"`` or ``"all"``: as configured, or read from the split file's name when ``"auto"``."""
    if split_addressing not in ADDRESSING:
        raise ValueError(f"split_addressing={split_addressing!r}; use one of {', '.join(ADDRESSING)}")
    if split_addressing != "auto":
        return split_addressing
    name = Path(splits_path).name
    hits = [a for a in ("single", "all") if f"_{a}" in name]
    if len(hits) != 1:
        raise ValueError(
            f"split_addressing='auto' cannot tell from the name {name!r} whether its indices address one subject's "
            "trials or the whole dataset list; set split_addressing to 'single' (indices into one subject's trials, "
            "like block_splits_by_image_single.pth) or 'all' (indices into the whole list, like ..._all.pth)"
        )
    return hits[0]
