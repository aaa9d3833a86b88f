"""THINGS-EEG2 training EEG as unpaired data for stage 1, through the same MOABB path as any other source.

:class:`ThingsEEG2Trials` offers MOABB's dataset interface (``subject_list``, ``get_data``), so
``MOABBDataModule`` preprocesses and caches it beside the MOABB corpus: list it by class path in
``data.init_args.datasets`` (``dreamdiffusion.data.things_eeg2_trials.ThingsEEG2Trials``) with its arguments in
``dataset_kwargs``. Pictures and labels are dropped: stage 1 is self-supervised.

Only the **train** split of the leak-free protocol is used — training concepts minus the ``val_concepts`` held
out with ``split_seed`` (pass the values stage 2 uses) — and never the test EEG. Each trial contributes its first
``window_seconds`` after stimulus onset (0.44 s, the window stage 1 cuts), trials back to back, so the consecutive
windows stage 1 cuts are exactly the trials. A subject's trials come as several "runs" of ``trials_per_run``
trials each, built one at a time from the memory-mapped file, so memory holds one run, not a subject.

The files' ``ch_names`` name the channels (17 or 63 electrodes); stage 1's ``channel_map`` maps them to 128.
Values are whitened, unit-variance data; they are passed to MNE as µV, as the standardised ImageNet-EEG file is.
Stage 1's 5–95 Hz band-pass is lowered below Nyquist for the 100 Hz files (MNE's warning says so).
(``ThingsEEG2DataModule(eeg_only=True)`` is the other way to pre-train on this EEG, without the MOABB cache.)
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np

from dreamdiffusion.data.things_eeg2 import validation_concepts
from dreamdiffusion.data.things_eeg2_files import EEGFile, eeg_path, load_eeg_file, load_metadata


class _Runs(Mapping):
    """Run name -> ``mne.io.RawArray`` of ``trials_per_run`` trials, each built when it is asked for."""

    def __init__(self, file: EEGFile, conditions: list[int], samples: slice, trials_per_run: int) -> None:
        self.file, self.samples = file, samples
        pairs = [(c, r) for c in conditions for r in range(file.data.shape[1])]
        self.chunks = [pairs[i : i + trials_per_run] for i in range(0, len(pairs), trials_per_run)]

    def __len__(self) -> int:
        return len(self.chunks)

    def __iter__(self) -> Iterator[str]:
        return iter(str(i) for i in range(len(self.chunks)))

    def __getitem__(self, run: str):
        import mne

        pairs = self.chunks[int(run)]
        data = np.concatenate([np.asarray(self.file.data[c, r, :, self.samples], dtype=np.float64) for c, r in pairs], axis=1)
        sfreq = 1.0 / float(np.median(np.diff(self.file.times)))
        info = mne.create_info(self.file.ch_names, sfreq, "eeg")
        return mne.io.RawArray(data * 1e-6, info, verbose="error")


class ThingsEEG2Trials:
    """One MOABB-style subject per THINGS-EEG2 subject: its train-split trials, back to back, in runs.

    Parameters
    ----------
    root, eeg_dir
        As for :class:`~dreamdiffusion.data.things_eeg2.ThingsEEG2DataModule` (the metadata and the EEG folder).
    subjects
        Subjects to use (default: every subject with a training file under ``eeg_dir``).
    val_concepts, split_seed
        The validation concepts left out (the same values as stage 2's, so stage 1 never sees them).
    window_seconds
        Seconds of each trial kept from stimulus onset (0.44: one stage-1 window per trial).
    trials_per_run
        Trials per run (memory holds one run at a time).
    """

    def __init__(
        self,
        root: str,
        eeg_dir: str = "preprocessed_data",
        subjects: list[int] | None = None,
        val_concepts: int = 100,
        split_seed: int = 0,
        window_seconds: float = 0.44,
        trials_per_run: int = 2000,
    ) -> None:
        self.root, self.eeg_dir = Path(root), eeg_dir
        self.val_concepts, self.split_seed = val_concepts, split_seed
        self.window_seconds, self.trials_per_run = window_seconds, trials_per_run
        if subjects is None:
            subjects = [s for s in range(1, 11) if eeg_path(root, eeg_dir, s, "training").is_file()]
        self.subjects = list(subjects)
        training = [eeg_path(root, eeg_dir, s, "training") for s in self.subjects]
        missing = [str(path) for path in training if not path.is_file()]
        if not self.subjects or missing:
            raise FileNotFoundError(
                f"THINGS-EEG2 training file(s) {missing or 'sub-XX/preprocessed_eeg_training.npy'} not found under "
                f"{self.root / eeg_dir}; see data/README.md (THINGS-EEG2) or write the twin with `dreamdiffusion data synth-things-eeg2`"
            )

    @property
    def fingerprint(self) -> dict:
        """Changes when a file changes: part of the stage-1 cache key."""
        paths = [self.root / "image_metadata.npy"] + [eeg_path(self.root, self.eeg_dir, s, "training") for s in self.subjects]
        return {str(p): [p.stat().st_size, p.stat().st_mtime_ns] for p in paths}

    @property
    def subject_list(self) -> list[int]:
        return list(self.subjects)

    def train_conditions(self) -> list[int]:
        metadata = load_metadata(self.root / "image_metadata.npy")
        held_out = validation_concepts(metadata.concepts["training"], self.val_concepts, self.split_seed)
        return [i for i, c in enumerate(metadata.concepts["training"]) if c not in held_out]

    def get_data(self, subjects: list[int]) -> dict:
        """``{subject: {"0": {run: mne.io.RawArray}}}``; the runs are built when iterated."""
        conditions = self.train_conditions()
        out = {}
        for subject in subjects:
            if subject not in self.subjects:
                raise ValueError(f"subject {subject} is not one of {self.subjects} (THINGS-EEG2 under {self.root})")
            file = load_eeg_file(eeg_path(self.root, self.eeg_dir, subject, "training"))
            onset = int(np.searchsorted(file.times, 0.0))
            sfreq = 1.0 / float(np.median(np.diff(file.times)))
            length = int(round(self.window_seconds * sfreq))
            if onset + length > len(file.times):
                raise ValueError(f"{file.path}: {self.window_seconds} s after onset exceeds the epoch ({file.times[-1]:.3f} s)")
            out[subject] = {"0": _Runs(file, conditions, slice(onset, onset + length), self.trials_per_run)}
        return out

    def __repr__(self) -> str:
        return f"ThingsEEG2Trials({os.fspath(self.root)!r}, subjects={self.subjects})"
