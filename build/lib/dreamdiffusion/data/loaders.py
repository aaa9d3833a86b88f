"""The project's DataLoaders: a training loader Lightning can resume in the middle of an epoch, and the
plain un-shuffled loader of validation, test and predict. Every data module builds its loaders here.

Lightning saves ``state_dict()`` of any loader that has one with its checkpoints and hands it back on
restart. Ours records how many batches of the current epoch were served; on restart the same epoch is
replayed in the same order (:class:`EpochShuffleSampler` draws the order from ``(seed, epoch)``, not
from the global RNG) and the batches already trained on are skipped. Together with the RNG state the
training modules keep in their checkpoints, a run killed mid-epoch and resumed ends with the same
weights as an uninterrupted one (tests/integration/test_resume.py).

Sized loaders are not pre-fetched by Lightning, so "served" equals "trained on" when a checkpoint is
written after a training batch.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Dataset, Sampler


class EpochShuffleSampler(Sampler[int]):
    """A permutation of ``range(n)`` that depends only on ``(seed, epoch)``; Lightning calls ``set_epoch``."""

    def __init__(self, n: int, seed: int = 0) -> None:
        self.n = n
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(torch.randperm(self.n, generator=generator).tolist())

    def __len__(self) -> int:
        return self.n


class ResumableDataLoader(DataLoader):
    """A :class:`~torch.utils.data.DataLoader` with ``state_dict``/``load_state_dict`` (batches served this epoch)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._served = 0
        self._skip = 0

    def __iter__(self) -> Iterator:
        skip, self._skip = self._skip, 0
        return self._serve(super().__iter__(), skip)

    def _serve(self, iterator: Iterator, skip: int) -> Iterator:
        # Lazy on purpose: Lightning may create the iterator before it sets the sampler's epoch.
        for _ in range(skip):  # replay the epoch's order and drop what was already trained on
            next(iterator)
        self._served = skip
        for batch in iterator:
            self._served += 1
            yield batch

    def state_dict(self) -> dict:
        return {"served": self._served}

    def load_state_dict(self, state: dict) -> None:
        self._skip = int(state.get("served", 0))


def train_loader(dataset: Dataset, batch_size: int, seed: int, num_workers: int = 0, **kwargs) -> ResumableDataLoader:
    """Shuffled, resumable training loader over ``dataset``; a trailing partial batch is dropped when the
    dataset holds more than one batch (so batch statistics stay comparable), kept otherwise."""
    return ResumableDataLoader(
        dataset,
        batch_size=batch_size,
        sampler=EpochShuffleSampler(len(dataset), seed),
        num_workers=num_workers,
        drop_last=len(dataset) > batch_size,
        persistent_workers=num_workers > 0,
        **kwargs,
    )


def eval_loader(dataset: Dataset, batch_size: int, num_workers: int = 0, **kwargs) -> DataLoader:
    """Un-shuffled loader over every item of ``dataset`` (validation, test, predict)."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        **kwargs,
    )
