"""THINGS-EEG2's raw recordings: read one session file, find the image onsets, cut baseline-corrected epochs.

The release's raw files (Gifford et al., 2022, NeuroImage 264:119754; OSF, folder ``raw_data``)::

    <raw_root>/sub-XX/ses-YY/raw_eeg_training.npy    np.save of {"raw_eeg_data": [channels, samples] (63 EEG
    <raw_root>/sub-XX/ses-YY/raw_eeg_test.npy          channels and a stimulus channel), "ch_names": [channels],
                                                        "ch_types": [channels] ("eeg" / "stim"), "sfreq": 1000}

Four sessions per subject. The stimulus channel holds, at each picture's onset, the picture's number in its
partition (1-based: training 1..16540, test 1..200; condition ``i`` of the preprocessed files is number ``i + 1``)
or 99999 for a target trial (a picture the subject had to detect; rejected). Each training picture appears in two
sessions, twice each (4 repetitions); each test picture in every session, 20 times each (80 repetitions).

Epochs follow the release's preprocessing script: −0.2…0.8 s around the onset (1001 samples at 1000 Hz), the mean
of −0.2…0 s subtracted per channel (baseline), then resampled with MNE (``Epochs.resample``, FFT) to ``sfreq``
(100 Hz: 100 samples, −0.2…0.79 s). The raw data are memory-mapped; only the epochs asked for are read.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dreamdiffusion.data.npy_dict import load_npy_dict

log = logging.getLogger(__name__)

RAW_KEYS = ("raw_eeg_data", "ch_names", "ch_types", "sfreq")
RAW_FILES = {"training": "raw_eeg_training.npy", "test": "raw_eeg_test.npy"}
TARGET_EVENT = 99999  # target-detection trials: not an image condition
EPOCH = (-0.2, 0.8)  # s around onset; the baseline is EPOCH[0]..0 s
RELEASE_SFREQ = 1000.0  # Hz, the release's recording rate
# The release's 17 channels: the occipital and parietal ones (names starting with O or P, PO included).
CHANNEL_SETS = {"occipito-parietal": re.compile(r"^[OP]"), "all": re.compile(r".")}


def raw_path(raw_root: str | os.PathLike, subject: int, session: int, part: str) -> Path:
    """``<raw_root>/sub-XX/ses-YY/raw_eeg_<part>.npy``."""
    return Path(raw_root) / f"sub-{subject:02d}" / f"ses-{session:02d}" / RAW_FILES[part]


@dataclass
class RawSession:
    """One raw file: ``data [channels, samples]`` (memory-mapped when large) and its image onsets.

    ``onsets [n]`` are sample numbers and ``conditions [n]`` the pictures' numbers (1-based), target trials removed.
    """

    path: Path
    data: np.ndarray
    ch_names: list[str]
    ch_types: list[str]
    sfreq: float
    onsets: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    conditions: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    targets: int = 0

    def eeg_channels(self, channels: str) -> np.ndarray:
        """Rows of the EEG channels of set ``channels`` (``occipito-parietal`` or ``all``), in file order."""
        if channels not in CHANNEL_SETS:
            raise ValueError(f"channels={channels!r}; use one of {', '.join(CHANNEL_SETS)}")
        rows = [i for i, (name, kind) in enumerate(zip(self.ch_names, self.ch_types, strict=True))
                if kind == "eeg" and CHANNEL_SETS[channels].match(name)]
        if not rows:
            raise ValueError(f"{self.path}: no EEG channel of the set {channels!r} among {self.ch_names}")
        return np.asarray(rows)


def load_raw_session(path: str | os.PathLike, raw_sfreq: float = RELEASE_SFREQ) -> RawSession:
    """Read and check one raw file (keys, shapes, rate, stimulus channel) and find its image onsets.

    ``raw_sfreq``: the rate the file must state (the release's 1000 Hz); a file at another rate is an error.
    """
    path = Path(path)
    content = load_npy_dict(path, "THINGS-EEG2 raw EEG file", keys=RAW_KEYS)
    data = content["raw_eeg_data"]
    ch_names, ch_types = [str(c) for c in content["ch_names"]], [str(t) for t in content["ch_types"]]
    if not isinstance(data, np.ndarray) or data.ndim != 2 or data.shape[0] != len(ch_names):
        raise ValueError(
            f"{path}: 'raw_eeg_data' has shape {list(getattr(data, 'shape', []))}; expected [channels, samples] with "
            f"{len(ch_names)} channels (one per 'ch_names' entry)"
        )
    if len(ch_types) != len(ch_names):
        raise ValueError(f"{path}: 'ch_types' has {len(ch_types)} entries but 'ch_names' has {len(ch_names)}")
    try:
        sfreq = float(content["sfreq"])
    except (TypeError, ValueError):
        raise ValueError(f"{path}: 'sfreq' is {content['sfreq']!r}, not a number of Hz") from None
    if sfreq != raw_sfreq:
        raise ValueError(
            f"{path}: 'sfreq' is {sfreq:g} Hz but THINGS-EEG2's raw files are recorded at {raw_sfreq:g} Hz; the file "
            "is not a release raw file (or pass the rate it was really recorded at: --raw-sfreq)"
        )
    session = RawSession(path, data, ch_names, ch_types, sfreq)
    session.onsets, session.conditions, session.targets = find_onsets(session)
    return session


def find_onsets(session: RawSession) -> tuple[np.ndarray, np.ndarray, int]:
    """``(onsets, conditions, targets)`` from the stimulus channel, with MNE's ``find_events`` (a trigger is a step
    from 0 to the picture's number); target trials (99999) are counted and removed."""
    import mne

    stim = [i for i, kind in enumerate(session.ch_types) if kind == "stim"]
    if len(stim) != 1:
        raise ValueError(
            f"{session.path}: 'ch_types' names {len(stim)} stimulus channel(s) ('stim'); a raw file has exactly one, "
            "holding the picture numbers at the onsets"
        )
    info = mne.create_info([session.ch_names[stim[0]]], session.sfreq, ["stim"])
    raw = mne.io.RawArray(np.asarray(session.data[stim[0]], dtype=np.float64)[None], info, verbose="error")
    try:
        events = mne.find_events(raw, stim_channel=info["ch_names"][0], verbose="error")
    except ValueError as err:
        raise ValueError(f"{session.path}: the stimulus channel cannot be read as triggers ({err})") from None
    if len(events) == 0:
        raise ValueError(
            f"{session.path}: the stimulus channel {info['ch_names'][0]!r} holds no events (no image onsets); the "
            "file is not a THINGS-EEG2 recording or its stimulus channel was lost: fetch it again"
        )
    codes = events[:, 2]
    targets = int((codes == TARGET_EVENT).sum())
    keep = codes != TARGET_EVENT
    if (codes[keep] < 1).any():
        raise ValueError(f"{session.path}: stimulus codes {sorted(set(codes[keep][codes[keep] < 1].tolist()))[:5]} are "
                         "not picture numbers (1-based)")
    return events[keep, 0].astype(np.int64), codes[keep].astype(np.int64), targets


def epoch_samples(sfreq: float) -> np.ndarray:
    """Sample offsets of an epoch relative to onset: ``round(-0.2 sfreq) .. round(0.8 sfreq)`` inclusive."""
    return np.arange(round(EPOCH[0] * sfreq), round(EPOCH[1] * sfreq) + 1)


def cut_epochs(session: RawSession, onsets: np.ndarray, rows: np.ndarray, sfreq: float) -> tuple[np.ndarray, np.ndarray]:
    """Baseline-corrected epochs of channels ``rows`` around ``onsets``, resampled to ``sfreq``.

    Returns ``(epochs [len(onsets), len(rows), T] float64, times [T] s)``; ``T = 100`` at 100 Hz.
    """
    import mne

    offsets = epoch_samples(session.sfreq)
    n_samples = session.data.shape[1]
    outside = onsets[(onsets + offsets[0] < 0) | (onsets + offsets[-1] >= n_samples)]
    if len(outside):
        raise ValueError(
            f"{session.path}: the epoch {EPOCH[0]}..{EPOCH[1]} s around onset sample(s) {outside[:5].tolist()} runs past "
            f"the recording (0..{n_samples - 1}); the file is truncated: fetch it again"
        )
    first = onsets + offsets[0]
    # the channels' rows of the memory-mapped recording, one epoch at a time: reads only the epochs' samples
    epochs = np.stack([np.asarray(session.data[rows, start : start + len(offsets)], dtype=np.float64) for start in first])
    info = mne.create_info([session.ch_names[r] for r in rows], session.sfreq, "eeg")
    array = mne.EpochsArray(epochs, info, tmin=offsets[0] / session.sfreq, baseline=(None, 0), verbose="error")
    if sfreq < session.sfreq:
        array.resample(sfreq, verbose="error")
    elif sfreq > session.sfreq:
        raise ValueError(f"sfreq={sfreq:g} Hz is above the recording's {session.sfreq:g} Hz ({session.path}); choose at most that")
    return array.get_data(copy=False), np.round(array.times, 6)
