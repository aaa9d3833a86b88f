"""Cached MOABB windows as a map-style dataset: memory-mapped shards, channels harmonised to 128 on access.

A :class:`Shard` is one recording of the shard cache (:mod:`dreamdiffusion.data.cache`), stored in its own
channel count ``[N, C_source, n_times]`` and opened as a read-only memory map on first use in each process
(a DataLoader worker started by spawn receives the path, never the data). :class:`WindowDataset` concatenates
shards (or in-memory :class:`Recording` objects) and returns ``[n_chans, n_times]`` float32 windows, a whole
batch at once through ``__getitems__``; memory does not grow with the corpus.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from dreamdiffusion.data.cache import open_shard
from dreamdiffusion.signal import N_CHANS, harmonise_channels, montage_index, replication_index


@dataclass
class Recording:
    """Preprocessed windows of one recording ``[N, C_source, n_times]`` and its source channel names."""

    dataset: str
    subject: int
    session: str
    run: str
    windows: np.ndarray
    ch_names: list[str]


class Shard:
    """One cached recording; ``windows`` is a read-only memory map opened on first use in each process."""

    def __init__(self, root: Path, entry: dict):
        self.root, self.entry = root, entry
        self.ch_names: list[str] = entry["ch_names"]
        self._windows: np.ndarray | None = None

    @property
    def windows(self) -> np.ndarray:
        if self._windows is None:
            self._windows = open_shard(self.root, self.entry)
        return self._windows

    def __len__(self) -> int:
        return int(self.entry["n_windows"])

    def __getstate__(self) -> dict:
        # A DataLoader worker started by spawn gets the path, never a copy of the mapped data.
        return {**self.__dict__, "_windows": None}


class WindowDataset(Dataset):
    """Windows of many recordings, harmonised to ``n_chans`` channels on access: ``[n_chans, n_times]`` float32.

    ``recordings``: :class:`Shard` (memory-mapped cache) or :class:`Recording` (in memory) objects.
    """

    def __init__(self, recordings: list[Shard | Recording], n_chans: int = N_CHANS, channel_map: str | list[str] = "replicate"):
        self.recordings = recordings
        self.index = [
            replication_index(len(r.ch_names), n_chans) if channel_map == "replicate" else montage_index(r.ch_names, channel_map)
            for r in recordings
        ]
        counts = np.array([len(r) if isinstance(r, Shard) else len(r.windows) for r in recordings], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(counts)])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, i: int) -> torch.Tensor:
        r = int(np.searchsorted(self.offsets, i, side="right") - 1)
        # A copy of one window [C, n_times] (the memory map itself is read-only and stays on disk).
        window = np.array(self.recordings[r].windows[i - self.offsets[r]])
        return harmonise_channels(window, self.index[r])

    def __getitems__(self, indices: list[int]) -> torch.Tensor:
        """A whole batch ``[B, n_chans, n_times]`` at once (the DataLoader uses this): one sorted read per
        recording, cast to float32 by torch (several times faster than numpy for a float16 cache) with the
        channels replicated."""
        indices = np.asarray(indices, dtype=np.int64)
        owner = np.searchsorted(self.offsets, indices, side="right") - 1
        out = None
        for r in np.unique(owner):
            positions = np.nonzero(owner == r)[0]
            local = indices[positions] - self.offsets[r]
            order = np.argsort(local, kind="stable")
            block = harmonise_channels(torch.from_numpy(self.recordings[r].windows[local[order]]), self.index[r])
            if out is None:
                out = torch.empty((len(indices), *block.shape[1:]), dtype=torch.float32)
                if torch.utils.data.get_worker_info() is not None:
                    out.share_memory_()  # filled in place, then handed to the main process without a copy
            out[torch.from_numpy(positions[order])] = block
        return out


def collate_windows(batch: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
    """Batches from :meth:`WindowDataset.__getitems__` are already stacked; lists are stacked here."""
    return batch if isinstance(batch, torch.Tensor) else torch.stack(batch)
