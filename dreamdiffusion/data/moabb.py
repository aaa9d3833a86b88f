"""Unpaired EEG for stage 1 (masked signal modeling) from MOABB datasets.

``MOABBDataModule`` turns MOABB recordings into ``[128, 512]`` float32 windows through the shared
:mod:`dreamdiffusion.signal` steps. Train and validation are split **by subject**, deterministically
from ``seed``, so no subject's EEG is seen in both.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from dreamdiffusion.data.resumable import train_loader
from dreamdiffusion.signal import N_CHANS, Preprocessing, harmonise_channels, montage_index, preprocess_raw, replication_index

log = logging.getLogger(__name__)


def make_dataset(name: str, kwargs: dict | None = None):
    """Instantiate a MOABB dataset class by its class name (e.g. ``"BNCI2014_001"``, ``"FakeDataset"``)."""
    import moabb.datasets

    cls = getattr(moabb.datasets, name, None)
    if cls is None or not isinstance(cls, type):
        raise ValueError(
            f"{name!r} is not a dataset class of moabb.datasets; `dreamdiffusion data moabb-list` "
            "prints the names this project selects"
        )
    return cls(**(kwargs or {}))


def split_subjects(keys: list[tuple[str, int]], val_fraction: float, seed: int) -> tuple[list, list]:
    """Deterministic split of ``(dataset, subject)`` pairs into train and val (at least one each)."""
    if len(keys) < 2:
        raise ValueError(
            f"a train/val split by subject needs at least 2 subjects, got {len(keys)}; add subjects or datasets"
        )
    order = np.random.default_rng(seed).permutation(len(keys))
    n_val = min(max(1, int(round(val_fraction * len(keys)))), len(keys) - 1)
    val = sorted(keys[i] for i in order[:n_val])
    train = sorted(keys[i] for i in order[n_val:])
    return train, val


@dataclass
class Recording:
    """Preprocessed windows of one recording ``[N, C_source, n_times]`` and its source channel names."""

    dataset: str
    subject: int
    session: str
    run: str
    windows: np.ndarray
    ch_names: list[str]


class WindowDataset(Dataset):
    """Windows of many recordings, harmonised to ``n_chans`` channels on access: ``[n_chans, n_times]``."""

    def __init__(self, recordings: list[Recording], n_chans: int = N_CHANS, channel_map: str | list[str] = "replicate"):
        self.recordings = recordings
        self.index = [
            replication_index(len(r.ch_names), n_chans) if channel_map == "replicate" else montage_index(r.ch_names, channel_map)
            for r in recordings
        ]
        counts = np.array([len(r.windows) for r in recordings], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(counts)])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, i: int) -> torch.Tensor:
        r = int(np.searchsorted(self.offsets, i, side="right") - 1)
        window = self.recordings[r].windows[i - self.offsets[r]]
        return harmonise_channels(window, self.index[r])


class MOABBDataModule(L.LightningDataModule):
    """EEG windows ``[batch, 128, 512]`` (standardised per channel) from MOABB datasets.

    Parameters
    ----------
    datasets
        MOABB dataset class names, e.g. ``["FakeDataset"]`` or the pinned paper list.
    dataset_kwargs
        Constructor arguments per dataset name (``FakeDataset`` takes ``channels``, ``sfreq``, ...).
    subjects
        Optional subset of subjects per dataset name; all of the dataset's subjects otherwise.
    val_fraction, seed
        Share of subjects held out for validation and the seed of that split.
    l_freq, h_freq, window_seconds, n_times
        Preprocessing (:class:`dreamdiffusion.signal.Preprocessing`): band-pass in Hz, window length
        in seconds, samples per window after resampling.
    n_chans, channel_map
        Channels the model sees, and how a recording's channels become them: ``"replicate"`` (the
        paper) or a list of electrode names to map by montage.
    """

    def __init__(
        self,
        datasets: list[str] = ["FakeDataset"],
        dataset_kwargs: dict[str, dict] | None = None,
        subjects: dict[str, list[int]] | None = None,
        val_fraction: float = 0.2,
        seed: int = 0,
        batch_size: int = 100,
        num_workers: int = 0,
        l_freq: float = 5.0,
        h_freq: float = 95.0,
        window_seconds: float = 0.44,
        n_times: int = 512,
        n_chans: int = N_CHANS,
        channel_map: str | list[str] = "replicate",
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.preprocessing = Preprocessing(l_freq=l_freq, h_freq=h_freq, window_seconds=window_seconds, n_times=n_times)
        self.train_set: WindowDataset | None = None
        self.val_set: WindowDataset | None = None

    def _keys(self) -> list[tuple[str, int]]:
        keys = []
        for name in self.hparams.datasets:
            dataset = make_dataset(name, (self.hparams.dataset_kwargs or {}).get(name))
            wanted = (self.hparams.subjects or {}).get(name)
            available = list(dataset.subject_list)
            if wanted is not None:
                unknown = sorted(set(wanted) - set(available))
                if unknown:
                    raise ValueError(f"subjects {unknown} are not in {name} (it has {available})")
                available = [s for s in available if s in wanted]
            keys += [(name, int(s)) for s in available]
        return keys

    def _load(self, keys: list[tuple[str, int]]) -> list[Recording]:
        recordings = []
        for name, subject in keys:
            dataset = make_dataset(name, (self.hparams.dataset_kwargs or {}).get(name))
            for session, runs in dataset.get_data([subject])[subject].items():
                for run, raw in runs.items():
                    source = f"{name} subject {subject} session {session} run {run}"
                    w = preprocess_raw(raw, self.preprocessing, source)
                    if w.n_nonfinite or w.n_flat:
                        log.info("%s: dropped %d NaN/Inf and %d flat windows", source, w.n_nonfinite, w.n_flat)
                    recordings.append(Recording(name, subject, session, run, w.data, w.ch_names))
        return recordings

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        train_keys, val_keys = split_subjects(self._keys(), self.hparams.val_fraction, self.hparams.seed)
        self.split = {"train": train_keys, "val": val_keys}
        n_chans, channel_map = self.hparams.n_chans, self.hparams.channel_map
        self.train_set = WindowDataset(self._load(train_keys), n_chans, channel_map)
        self.val_set = WindowDataset(self._load(val_keys), n_chans, channel_map)
        for split, data in (("train", self.train_set), ("val", self.val_set)):
            if len(data) == 0:
                raise ValueError(f"the {split} split holds no windows; add subjects or check the recordings' length")

    def _loader(self, data: Dataset, shuffle: bool) -> DataLoader:
        return DataLoader(
            data,
            batch_size=self.hparams.batch_size,
            shuffle=shuffle,
            num_workers=self.hparams.num_workers,
            drop_last=shuffle and len(data) > self.hparams.batch_size,
            persistent_workers=self.hparams.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        drop_last = len(self.train_set) > self.hparams.batch_size
        return train_loader(self.train_set, self.hparams.batch_size, self.hparams.seed, self.hparams.num_workers, drop_last)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)
