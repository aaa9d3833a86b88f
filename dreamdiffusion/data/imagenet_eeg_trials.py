"""ImageNet-EEG trials as unpaired EEG for stage 1, through the same MOABB path as any other source.

:class:`ImageNetEEGTrials` offers MOABB's dataset interface (``subject_list``, ``get_data``), so
``MOABBDataModule`` preprocesses and caches it like a MOABB dataset: list it by class path in
``data.init_args.datasets`` (``dreamdiffusion.data.imagenet_eeg_trials.ImageNetEEGTrials``) with its
arguments in ``dataset_kwargs``. Labels and images are dropped: stage 1 is self-supervised.

The demo uses it to pre-train on the synthetic twin's EEG (white noise teaches a masked autoencoder
nothing). Only the trials of the chosen splits are used — ``train`` by default — so no EEG of the
trials that stage 3 evaluates is seen in pre-training.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from dreamdiffusion.data.imagenet_eeg_files import load_eeg_file, load_split_file, resolve_addressing
from dreamdiffusion.data.imagenet_eeg_selection import select_trials

SFREQ = 1000.0  # Hz, the ImageNet-EEG recordings


class ImageNetEEGTrials:
    """One MOABB-style "recording" per subject: its selected trials' windows, back to back.

    Parameters
    ----------
    eeg_path, splits_path
        ``eeg_5_95_std.pth`` and a ``block_splits_by_image_*.pth`` file.
    splits
        Which splits' trials to use (default ``["train"]``).
    split_index, split_addressing
        As for :class:`~dreamdiffusion.data.imagenet_eeg.ImageNetEEGDataModule`.
    window_start, window_stop
        Samples of each trial kept (20..460: 0.44 s at 1 kHz, the stage-2 window), so the consecutive
        0.44 s windows that stage 1 cuts are exactly the trials.
    """

    def __init__(
        self,
        eeg_path: str,
        splits_path: str,
        splits: list[str] = ("train",),
        split_index: int = 0,
        split_addressing: str = "auto",
        window_start: int = 20,
        window_stop: int = 460,
    ) -> None:
        self.eeg_path, self.splits_path = Path(eeg_path), Path(splits_path)
        self.splits = list(splits)
        self.split_index, self.split_addressing = split_index, split_addressing
        self.window_start, self.window_stop = window_start, window_stop
        for path in (self.eeg_path, self.splits_path):
            if not path.is_file():
                raise FileNotFoundError(
                    f"{path} does not exist; write the synthetic twin with `dreamdiffusion data synth-imagenet-eeg` "
                    "or point dataset_kwargs at the ImageNet-EEG files (data/README.md)"
                )
        self._positions: dict[int, list[int]] | None = None
        self._file = None

    @property
    def fingerprint(self) -> dict:
        """Changes when either file changes: part of the stage-1 cache key (names, not paths: a moved
        run folder keeps its cache)."""
        return {p.name: [p.stat().st_size, p.stat().st_mtime_ns] for p in (self.eeg_path, self.splits_path)}

    def _select(self) -> dict[int, list[int]]:
        if self._positions is None:
            self._file = load_eeg_file(self.eeg_path)
            split = load_split_file(self.splits_path, self.split_index)
            addressing = resolve_addressing(self.splits_path, self.split_addressing)
            unknown = sorted(set(self.splits) - set(split))
            if unknown:
                raise ValueError(f"splits {unknown} are not in {self.splits_path} (it has {sorted(split)})")
            subjects = sorted({int(t["subject"]) for t in self._file.trials})
            positions: dict[int, list[int]] = {}
            for subject in subjects if addressing == "single" else [0]:
                selection = select_trials(self._file, split, self.splits_path, addressing, subject,
                                          window_stop=self.window_stop, window_start=self.window_start)
                for name in self.splits:
                    for p in selection.positions[name]:
                        positions.setdefault(int(self._file.trials[p]["subject"]), []).append(p)
            self._positions = {s: sorted(set(p)) for s, p in sorted(positions.items())}
        return self._positions

    @property
    def subject_list(self) -> list[int]:
        return list(self._select())

    def get_data(self, subjects: list[int]) -> dict:
        """``{subject: {"0": {"0": mne.io.RawArray}}}``; values are treated as µV (the file is standardised)."""
        import mne

        positions = self._select()
        out = {}
        for subject in subjects:
            if subject not in positions:
                raise ValueError(f"subject {subject} has no trials in the chosen splits of {self.eeg_path}")
            data = np.concatenate(
                [self._file.trials[p]["eeg"][:, self.window_start : self.window_stop].double().numpy() for p in positions[subject]],
                axis=1,
            )
            info = mne.create_info([f"EEG{i + 1:03d}" for i in range(data.shape[0])], SFREQ, "eeg")
            out[subject] = {"0": {"0": mne.io.RawArray(data * 1e-6, info, verbose="error")}}
        return out

    def __repr__(self) -> str:
        return f"ImageNetEEGTrials({os.fspath(self.eeg_path)!r}, splits={self.splits})"
