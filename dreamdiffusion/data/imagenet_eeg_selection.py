"""Which trials of ImageNet-EEG each split holds, and their EEG windows.

:func:`select_trials` reads the split's indices as its addressing says
(:mod:`dreamdiffusion.data.imagenet_eeg_files`), keeps one subject's trials (``subject``; 0: all), leaves out
the trials of ``exclude_images``, then drops trials outside ``min_length ≤ L ≤ max_length`` (450..600
samples), trials too short to hold the window (``L < window_stop``) and trials whose window holds NaN or Inf
(what the data module then does: ``nonfinite_trials``, :data:`NONFINITE`). :func:`cut_windows` cuts the EEG
window, samples ``window_start..window_stop`` (20..460), and resamples it linearly to ``n_times`` (512) by
:func:`dreamdiffusion.signal.resample_window`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch

from dreamdiffusion.data.imagenet_eeg_files import SPLITS, EEGFile
from dreamdiffusion.signal import N_CHANS, resample_window

NONFINITE = ("drop", "error")  # what the data module does with trials whose EEG window holds NaN/Inf


@dataclass
class Selection:
    """Trials of each split after addressing, subject filter and length rule (positions in ``dataset``)."""

    positions: dict[str, list[int]]
    dropped_by_length: dict[str, int] = field(default_factory=dict)
    dropped_short_for_window: dict[str, int] = field(default_factory=dict)
    excluded_by_image: dict[str, int] = field(default_factory=dict)
    nonfinite: dict[str, list[int]] = field(default_factory=dict)  # dropped: NaN/Inf in the EEG window

    def nonfinite_listing(self, eeg: EEGFile, limit: int | None = 5) -> str:
        """``trial 17 (subject 4, train), ...``: the trials dropped for NaN/Inf (the first ``limit``)."""
        items = [(p, name) for name in SPLITS for p in self.nonfinite.get(name, [])]
        shown = ", ".join(f"trial {p} (subject {int(eeg.trials[p]['subject'])}, {name})" for p, name in items[:limit])
        return shown + (f" and {len(items) - limit} more" if limit is not None and len(items) > limit else "")


def select_trials(
    eeg: EEGFile,
    split: dict[str, list[int]],
    splits_path: str | os.PathLike,
    addressing: str,
    subject: int = 0,
    min_length: int = 450,
    max_length: int = 600,
    window_stop: int = 460,
    exclude_images: list[str] | tuple[str, ...] = (),
    window_start: int = 20,
) -> Selection:
    """Which trials each split holds. Indices out of range, and a subject without trials, are errors.

    ``exclude_images`` names pictures whose trials are left out on purpose (e.g. an image that cannot
    be repaired); each name must be one of the file's ``images``. Trials whose EEG window (samples
    ``window_start..window_stop``; only the window's own samples count) holds NaN or Inf are left out
    and listed in ``Selection.nonfinite``: training would stop on them mid-epoch.
    """
    subjects = [int(t["subject"]) for t in eeg.trials]
    unknown = sorted(set(exclude_images) - set(eeg.images))
    if unknown:
        raise ValueError(f"exclude_images names {unknown}, which are not in the 'images' list of {eeg.path}; fix the names")
    excluded = {i for i, name in enumerate(eeg.images) if name in set(exclude_images)}
    present = sorted(set(subjects))
    if subject != 0 and subject not in present:
        raise ValueError(
            f"subject {subject} has no trials in {eeg.path} (subjects present: {present}); set subject to one of them or 0 for all"
        )
    if addressing == "single":
        if subject == 0:
            raise ValueError(
                f"{splits_path} uses 'single' addressing (indices into ONE subject's trials), so it needs a subject: "
                f"set subject to one of {present} (subject 4 is the paper's), or use the _all split file for all subjects"
            )
        address = [i for i, s in enumerate(subjects) if s == subject]
        what = f"subject {subject}'s {len(address)} trials"
    elif addressing == "all":
        address = list(range(len(eeg.trials)))
        what = f"the {len(address)} trials of {eeg.path}"
    else:
        raise ValueError(f"addressing must be 'single' or 'all', got {addressing!r}")

    selection = Selection({})
    for name in SPLITS:
        bad = [i for i in split[name] if not 0 <= i < len(address)]
        if bad:
            raise IndexError(
                f"{splits_path}: {name} index {bad[0]} is out of range for {addressing!r} addressing "
                f"({len(bad)} such indices; valid 0..{len(address) - 1}, {what}). Check split_addressing "
                "and subject, or the split file"
            )
        positions = [address[i] for i in split[name]]
        if addressing == "all" and subject != 0:
            positions = [p for p in positions if subjects[p] == subject]
        kept = [p for p in positions if int(eeg.trials[p]["image"]) not in excluded]
        selection.excluded_by_image[name] = len(positions) - len(kept)
        positions = kept
        lengths = [int(eeg.trials[p]["eeg"].shape[1]) for p in positions]
        in_rule = [min_length <= n <= max_length for n in lengths]
        kept = [p for p, ok, n in zip(positions, in_rule, lengths, strict=True) if ok and n >= window_stop]
        finite = [bool(torch.isfinite(eeg.trials[p]["eeg"][:, window_start:window_stop]).all()) for p in kept]
        selection.nonfinite[name] = [p for p, ok in zip(kept, finite, strict=True) if not ok]
        selection.positions[name] = [p for p, ok in zip(kept, finite, strict=True) if ok]
        selection.dropped_by_length[name] = in_rule.count(False)
        selection.dropped_short_for_window[name] = sum(ok and n < window_stop for ok, n in zip(in_rule, lengths, strict=True))
    return selection


def empty_split_errors(selection: Selection, splits_path, subject: int, split_index: int) -> list[str]:
    """One message per split left without trials."""
    return [
        f"the {name} split of {splits_path} (split_index {split_index}, subject {subject or 'all'}) holds no trials "
        f"after filtering ({selection.dropped_by_length[name]} dropped by the length rule, "
        f"{selection.excluded_by_image.get(name, 0)} by exclude_images, {len(selection.nonfinite.get(name, []))} for NaN/Inf "
        "in the EEG window); check subject, split_index, split_addressing, "
        "min_length/max_length and exclude_images"
        for name in SPLITS
        if not selection.positions[name]
    ]


def nonfinite_message(selection: Selection, eeg: EEGFile, window: tuple[int, int], setting: str) -> str | None:
    """What to tell the user about trials left out for NaN/Inf (``None`` when there are none).

    ``setting`` is the data module's ``nonfinite_trials``: ``"drop"`` (a warning) or ``"error"``.
    """
    n = sum(len(v) for v in selection.nonfinite.values())
    if not n:
        return None
    what = (f"{eeg.path}: {n} trial(s) hold NaN or Inf in their EEG window (samples {window[0]}..{window[1]}): "
            f"{selection.nonfinite_listing(eeg)}")
    if setting == "error":
        return (f"{what}. Repair them in the file, leave them out with data.init_args.nonfinite_trials: drop, "
                "or exclude their images with exclude_images")
    return f"{what}; left out (data.init_args.nonfinite_trials: drop); `dreamdiffusion data check-imagenet-eeg` lists them all"


def cut_windows(trials: list[dict], start: int, stop: int, n_times: int, chunk: int = 256) -> torch.Tensor:
    """EEG windows ``[N, 128, n_times]`` float32: samples ``start..stop`` of each trial, resampled.

    Resampled in chunks of ``chunk`` trials so memory holds the output plus one chunk, not two copies
    of the whole dataset.
    """
    out = torch.empty(len(trials), N_CHANS, n_times)
    for first in range(0, len(trials), chunk):
        part = torch.stack([t["eeg"][:, start:stop].float() for t in trials[first : first + chunk]])
        out[first : first + len(part)] = resample_window(part, n_times)
    return out

