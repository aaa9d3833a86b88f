"""THINGS-EEG2's preprocessed files (Gifford et al., 2022, NeuroImage 264:119754), read and checked.

Files (the OSF release; ``root`` holds them)::

    <root>/<eeg_dir>/sub-XX/preprocessed_eeg_training.npy   np.save of {"preprocessed_eeg_data": [16540, 4, C, T],
    <root>/<eeg_dir>/sub-XX/preprocessed_eeg_test.npy        "ch_names": [C], "times": [T] (s)}; test [200, 80, C, T]
    <root>/image_metadata.npy      {"train_img_concepts", "train_img_files", "test_img_concepts", "test_img_files"}
    <root>/training_images/<concept>/<file>    <root>/test_images/<concept>/<file>

The official files hold 17 occipito-parietal channels at 100 Hz (``T = 100``, −0.2…0.79 s); the variant used by
NICE/ATM holds all 63 channels at 250 Hz (``T = 250``) under the same keys. Every ``.npy`` is a pickle and is read
by :func:`dreamdiffusion.data.npy_dict.load_npy_dict` (plain data only; the EEG is memory-mapped, never loaded).
Condition ``i`` of an EEG file is picture ``i`` of the metadata: paths are built from the metadata, never from a
directory listing. A test concept that also appears among the training concepts (by name, numeric prefix
ignored) is an error.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dreamdiffusion.data.npy_dict import load_npy_dict

EEG_KEYS = ("preprocessed_eeg_data", "ch_names", "times")
METADATA_KEYS = ("train_img_concepts", "train_img_files", "test_img_concepts", "test_img_files")
EEG_FILES = {"training": "preprocessed_eeg_training.npy", "test": "preprocessed_eeg_test.npy"}
IMAGE_DIRS = {"training": "training_images", "test": "test_images"}


@dataclass
class EEGFile:
    """One ``preprocessed_eeg_*.npy``: ``data [conditions, repetitions, channels, times]`` (memory-mapped when large)."""

    path: Path
    data: np.ndarray
    ch_names: list[str]
    times: np.ndarray


def eeg_path(root: str | os.PathLike, eeg_dir: str, subject: int, part: str) -> Path:
    """``<root>/<eeg_dir>/sub-XX/preprocessed_eeg_<part>.npy`` (``eeg_dir`` may be absolute)."""
    return Path(root) / eeg_dir / f"sub-{subject:02d}" / EEG_FILES[part]


def load_eeg_file(path: str | os.PathLike) -> EEGFile:
    """Read and check one EEG file: its keys, a rank-4 array, channel names and times that match it."""
    path = Path(path)
    content = load_npy_dict(path, "THINGS-EEG2 EEG file", keys=EEG_KEYS)
    data, times = content["preprocessed_eeg_data"], np.asarray(content["times"], dtype=np.float64)
    ch_names = [str(c) for c in content["ch_names"]]
    if not isinstance(data, np.ndarray) or data.ndim != 4:
        shape = list(getattr(data, "shape", []))
        raise ValueError(f"{path}: 'preprocessed_eeg_data' has shape {shape}; expected [conditions, repetitions, channels, times]")
    if data.shape[2] != len(ch_names) or data.shape[3] != len(times):
        raise ValueError(
            f"{path}: 'preprocessed_eeg_data' is {list(data.shape)} but the file names {len(ch_names)} channels and "
            f"{len(times)} time points; the file is inconsistent: fetch it again"
        )
    return EEGFile(path, data, ch_names, times)


@dataclass
class Metadata:
    """``image_metadata.npy``: concept and file name of every training and test picture, in EEG order."""

    path: Path
    concepts: dict[str, list[str]]  # "training" / "test" -> concept of picture i
    files: dict[str, list[str]]

    def image_path(self, root: str | os.PathLike, part: str, i: int) -> Path:
        return Path(root) / IMAGE_DIRS[part] / self.concepts[part][i] / self.files[part][i]

    def image_name(self, part: str, i: int) -> str:
        return f"{self.concepts[part][i]}/{self.files[part][i]}"


def concept_name(concept: str) -> str:
    """``00001_aardvark`` -> ``aardvark`` (the numbering differs between the training and the test list)."""
    head, _, tail = concept.partition("_")
    return tail if head.isdigit() and tail else concept


def load_metadata(path: str | os.PathLike) -> Metadata:
    """Read and check ``image_metadata.npy``; a test concept among the training concepts is an error."""
    path = Path(path)
    content = load_npy_dict(path, "THINGS-EEG2 image metadata", keys=METADATA_KEYS)
    concepts, files = {}, {}
    for part, prefix in (("training", "train"), ("test", "test")):
        concepts[part] = [str(c) for c in content[f"{prefix}_img_concepts"]]
        files[part] = [str(f) for f in content[f"{prefix}_img_files"]]
        if len(concepts[part]) != len(files[part]):
            raise ValueError(
                f"{path}: {prefix}_img_concepts has {len(concepts[part])} entries but {prefix}_img_files has "
                f"{len(files[part])}; they must pair up picture by picture"
            )
    shared = sorted({concept_name(c) for c in concepts["test"]} & {concept_name(c) for c in concepts["training"]})
    if shared:
        raise ValueError(
            f"{path}: test concept(s) {shared[:5]} also appear among the training concepts; the zero-shot test "
            "would leak. Use the release's metadata file"
        )
    return Metadata(path, concepts, files)
