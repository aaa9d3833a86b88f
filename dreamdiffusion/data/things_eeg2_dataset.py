"""THINGS-EEG2 items: one subject's memory-mapped EEG cut to model input, paired with its picture.

An item (same fields as :mod:`dreamdiffusion.data.imagenet_eeg`, so stages 2 and 3 run unchanged)::

    eeg          float32 [128, n_times]   samples with window_start <= time < window_stop (s; default: post-stimulus),
                                          channels harmonised to 128 (signal.harmonise_channels), resampled
    image        float32 [3, S, S] in [-1, 1]       clip_pixels float32 [3, s, s] (the CLIP processor)
    label        int64   concept id: training concepts 0..K-1 in metadata order, test concepts K..K+199
    subject      int64   1..10
    index        int64   (subject * 17_000 + condition) * 81 + repetition (repetition 80: the average); below
                         2**24 for every trial of the release, so it survives stage 3's float32 tables
    image_name   str     "<concept>/<file>"

A row ``(subject, condition, repetition)`` is one repetition of a picture, or with ``repetition == AVERAGE`` the
mean over all its repetitions. Which rows make a split is the protocol's business
(:class:`~dreamdiffusion.data.things_eeg2.ThingsEEG2DataModule`); the files are read by
:mod:`dreamdiffusion.data.things_eeg2_files`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from dreamdiffusion.data.images import random_crop, read_image, to_tensor
from dreamdiffusion.data.things_eeg2_files import EEGFile, Metadata
from dreamdiffusion.signal import harmonise_channels, resample_window

AVERAGE = 80  # the repetition number of an averaged item in its index (the release has at most 80 repetitions)
SUBJECT_STRIDE, CONDITION_STRIDE = 17_000, 81  # conditions per subject (16540 in the release), repetitions + average


def trial_index(subject: int, condition: int, repetition: int) -> int:
    """The item's ``index``: unique per subject, picture and repetition (``AVERAGE`` for the mean)."""
    return (subject * SUBJECT_STRIDE + condition) * CONDITION_STRIDE + repetition


@dataclass
class EEGReader:
    """Turns one subject's ``data [conditions, repetitions, C, T]`` into model input ``[128, n_times]``."""

    file: EEGFile
    samples: np.ndarray  # time points kept (the window)
    channels: np.ndarray  # source channel of each of the 128 inputs
    n_times: int

    def window(self, condition: int, repetition: int) -> torch.Tensor:
        """``[128, n_times]`` float32 of one repetition, or of the mean of all (``repetition == AVERAGE``)."""
        first, last = int(self.samples[0]), int(self.samples[-1]) + 1
        if repetition == AVERAGE:
            x = np.asarray(self.file.data[condition, :, :, first:last], dtype=np.float64).mean(axis=0)
        else:
            x = np.asarray(self.file.data[condition, repetition, :, first:last])
        return resample_window(harmonise_channels(np.ascontiguousarray(x, dtype=np.float32), self.channels), self.n_times)


class ThingsEEG2Dataset(Dataset):
    """Items of one split (module docstring). ``rows``: ``(subject, condition, repetition)`` per item; the EEG is
    read from the memory-mapped file on access. With ``eeg_only`` an item is the EEG tensor alone (stage 1)."""

    def __init__(
        self,
        readers: dict[int, EEGReader],
        rows: list[tuple[int, int, int]],
        part: str,
        metadata: Metadata,
        root: Path,
        labels: list[int],
        image_size: int,
        clip_processor,
        augment_p: float = 0.0,
        crop_fraction: float = 0.8,
        eeg_only: bool = False,
    ) -> None:
        self.readers, self.rows, self.part, self.metadata, self.root = readers, rows, part, metadata, root
        self.labels = labels  # concept id of each condition of ``part``
        self.image_size, self.clip_processor = image_size, clip_processor
        self.augment_p, self.crop_fraction, self.eeg_only = augment_p, crop_fraction, eeg_only

    def __len__(self) -> int:
        return len(self.rows)

    def trial_info(self, i: int) -> dict:
        """Item ``i`` without its picture: ``eeg``, ``label``, ``subject``, ``image_name``, ``index``."""
        subject, condition, repetition = self.rows[i]
        return {
            "eeg": self.readers[subject].window(condition, repetition),
            "label": torch.tensor(self.labels[condition], dtype=torch.long),
            "subject": torch.tensor(subject, dtype=torch.long),
            "image_name": self.metadata.image_name(self.part, condition),
            "index": torch.tensor(trial_index(subject, condition, repetition), dtype=torch.long),
        }

    def image_path(self, i: int) -> Path:
        return self.metadata.image_path(self.root, self.part, self.rows[i][1])

    def __getitem__(self, i: int) -> dict | torch.Tensor:
        if self.eeg_only:
            subject, condition, repetition = self.rows[i]
            return self.readers[subject].window(condition, repetition)
        picture = read_image(self.image_path(i))
        shown = picture
        if self.augment_p > 0 and float(torch.rand(())) < self.augment_p:
            shown = random_crop(picture, self.crop_fraction)
        return {
            **self.trial_info(i),
            "image": to_tensor(shown, self.image_size),
            "clip_pixels": self.clip_processor(images=picture, return_tensors="pt").pixel_values[0].float(),
        }
