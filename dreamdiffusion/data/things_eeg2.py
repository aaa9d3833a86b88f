"""EEG–image pairs of THINGS-EEG2 (Gifford et al., 2022, NeuroImage 264:119754) with a leak-free protocol.

Files (the OSF release; ``root`` holds them)::

    <root>/<eeg_dir>/sub-XX/preprocessed_eeg_training.npy   np.save of {"preprocessed_eeg_data": [16540, 4, C, T],
    <root>/<eeg_dir>/sub-XX/preprocessed_eeg_test.npy        "ch_names": [C], "times": [T] (s)}; test [200, 80, C, T]
    <root>/image_metadata.npy      {"train_img_concepts", "train_img_files", "test_img_concepts", "test_img_files"}
    <root>/training_images/<concept>/<file>    <root>/test_images/<concept>/<file>

The official files hold 17 occipito-parietal channels at 100 Hz (``T = 100``, −0.2…0.79 s); the variant used by
NICE/ATM holds all 63 channels at 250 Hz (``T = 250``) under the same keys. Every ``.npy`` is a pickle and is read
by :func:`dreamdiffusion.data.npy_dict.load_npy_dict` (plain data only; the EEG is memory-mapped, never loaded).
Condition ``i`` of an EEG file is picture ``i`` of the metadata: paths are built from the metadata, never from a
directory listing.

The protocol (``protocol = "leak-free"``):

* **test** = the 200 test pictures of 200 concepts never seen in training, scored once;
* **val** = ``val_concepts`` whole **training** concepts (all their pictures and repetitions), drawn with
  ``split_seed``; checkpoints are selected on it (or a fixed epoch budget is used), never on the test set;
* **train** = the other training concepts.

A test concept that also appears among the training concepts (by name, numeric prefix ignored) is an error.

An item (same fields as :mod:`dreamdiffusion.data.imagenet_eeg`, so stages 2 and 3 run unchanged)::

    eeg          float32 [128, n_times]   samples with window_start <= time < window_stop (s; default: post-stimulus),
                                          channels harmonised to 128 (signal.harmonise_channels), resampled
    image        float32 [3, S, S] in [-1, 1]       clip_pixels float32 [3, s, s] (the CLIP processor)
    label        int64   concept id: training concepts 0..K-1 in metadata order, test concepts K..K+199
    subject      int64   1..10
    index        int64   (subject * 17_000 + condition) * 81 + repetition (repetition 80: the average); below
                         2**24 for every trial of the release, so it survives stage 3's float32 tables
    image_name   str     "<concept>/<file>"

``train_repetitions`` / ``test_repetitions``: ``single`` (one item per repetition) or ``average`` (one item per
picture, the mean over its repetitions; the field's standard for test: the mean of 80).

The official files were whitened (multivariate noise normalisation) with statistics that include the test EEG.
Preprocessing from the raw recordings (``dreamdiffusion data preprocess-things-eeg2``,
:mod:`dreamdiffusion.data.things_eeg2_preprocess`) fits the whitening on training EEG only and leaves a manifest
``preprocessing.json`` beside each subject's files; a subject folder with that manifest is reported as
``from-raw``, one without as ``official`` (or ``synthetic`` in the twin). :attr:`protocol` holds each subject's
source under ``preprocessing``, :attr:`protocol_notes` says whether the test-EEG leak is present, and stage 3
copies both into ``metrics.json``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from dreamdiffusion.data.images import random_crop, read_image, to_tensor
from dreamdiffusion.data.loaders import eval_loader, train_loader
from dreamdiffusion.data.npy_dict import load_npy_dict
from dreamdiffusion.data.things_eeg2_preprocess import read_manifest
from dreamdiffusion.models.backbones import CLIP_VIT_L14
from dreamdiffusion.signal import N_CHANS, N_TIMES, harmonise_channels, montage_index, replication_index, resample_window

log = logging.getLogger(__name__)

EEG_KEYS = ("preprocessed_eeg_data", "ch_names", "times")
METADATA_KEYS = ("train_img_concepts", "train_img_files", "test_img_concepts", "test_img_files")
EEG_FILES = {"training": "preprocessed_eeg_training.npy", "test": "preprocessed_eeg_test.npy"}
IMAGE_DIRS = {"training": "training_images", "test": "test_images"}
REPETITION_MODES = ("single", "average")
AVERAGE = 80  # the repetition number of an averaged item in its index (the release has at most 80 repetitions)
SUBJECT_STRIDE, CONDITION_STRIDE = 17_000, 81  # conditions per subject (16540 in the release), repetitions + average
OFFICIAL_WHITENING_NOTE = (
    "EEG from the official preprocessed THINGS-EEG2 files: their whitening (multivariate noise normalisation) used "
    "statistics that include the test EEG; preprocess from the raw files (preprocessing_from_raw, see "
    "docs/data-things-eeg2.md) to remove that leak"
)
FROM_RAW_NOTE = (
    "EEG preprocessed from the raw THINGS-EEG2 recordings by dreamdiffusion data preprocess-things-eeg2: whitening "
    "(multivariate noise normalisation) fit on the training partition only, no test-EEG statistics (preprocessing.json)"
)
SYNTHETIC_NOTE = "EEG from the synthetic twin of THINGS-EEG2 (synthetic.json in root): no real recording"


# ------------------------------------------------------------------------------------------ files


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


def concept_ids(metadata: Metadata) -> tuple[list[str], dict[str, int]]:
    """Every concept in metadata order (training first, then test) and its id."""
    names = list(dict.fromkeys(metadata.concepts["training"] + metadata.concepts["test"]))
    return names, {c: i for i, c in enumerate(names)}


def validation_concepts(training_concepts: list[str], val_concepts: int, split_seed: int) -> set[str]:
    """``val_concepts`` whole training concepts drawn with ``split_seed`` (the leak-free validation split)."""
    distinct = list(dict.fromkeys(training_concepts))
    if not 0 < val_concepts < len(distinct):
        raise ValueError(
            f"val_concepts={val_concepts}: must hold out at least one and leave at least one of the "
            f"{len(distinct)} training concepts"
        )
    order = torch.randperm(len(distinct), generator=torch.Generator().manual_seed(split_seed)).tolist()
    return {distinct[i] for i in order[:val_concepts]}


def trial_index(subject: int, condition: int, repetition: int) -> int:
    """The item's ``index``: unique per subject, picture and repetition (``AVERAGE`` for the mean)."""
    return (subject * SUBJECT_STRIDE + condition) * CONDITION_STRIDE + repetition


def preprocessing_notes(sources: dict[str, str], synthetic: bool) -> list[str]:
    """The notes ``metrics.json`` carries for the subjects' preprocessing sources (``sub-XX`` -> source)."""
    def subjects(source: str) -> str:
        return ", ".join(k for k, v in sources.items() if v == source)

    notes = []
    if "from-raw" in sources.values():
        notes.append(FROM_RAW_NOTE + (f" ({subjects('from-raw')})" if len(set(sources.values())) > 1 else ""))
    if "official" in sources.values():
        notes.append(OFFICIAL_WHITENING_NOTE + (f" ({subjects('official')})" if len(set(sources.values())) > 1 else ""))
    if synthetic:
        notes.append(SYNTHETIC_NOTE + ("; its preprocessed files are not whitened" if "synthetic" in sources.values() else ""))
    return notes


# --------------------------------------------------------------------------------------- dataset


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


# ---------------------------------------------------------------------------------- data module


class ThingsEEG2DataModule(L.LightningDataModule):
    """Paired EEG–image batches of THINGS-EEG2 (or its synthetic twin) for stages 2 and 3; EEG alone for stage 1.

    Parameters
    ----------
    root
        Folder of ``image_metadata.npy``, ``training_images/``, ``test_images/`` and the EEG folder.
    eeg_dir
        EEG folder inside ``root`` (or absolute) holding ``sub-XX/preprocessed_eeg_{training,test}.npy``: the
        official 17-channel 100 Hz files, the 63-channel 250 Hz variant (same keys), or ``preprocessed_from_raw``
        written by ``dreamdiffusion data preprocess-things-eeg2`` (whitening fit on training EEG only).
    subjects
        Subjects (1..10) whose training EEG makes the train and val splits (``null``: ``[8]``, subject-dependent).
    test_subjects
        Subjects whose test EEG is scored (``null``: the same as ``subjects``; cross-subject: the held-out one).
    train_repetitions, test_repetitions
        ``single`` (an item per repetition) or ``average`` (an item per picture, the mean of its repetitions).
        Val follows ``train_repetitions``. The field's standard test is the mean of the 80 repetitions.
    val_concepts, split_seed
        How many whole training concepts are held out for validation, and the seed that draws them.
    channel_map
        ``replicate`` (the files' channels repeated up to 128, the paper's rule) or a list of 128 electrode names
        mapped by name (:func:`dreamdiffusion.signal.montage_index`).
    window_start, window_stop
        EEG window in seconds relative to stimulus onset (default 0 to the end of the epoch: post-stimulus).
    n_times
        Samples after resampling the window (512, the encoder's input).
    image_size
        Side S of ``image`` in pixels (512 for SD-1.5).
    clip_model, local_files_only
        Folder or hub id of the CLIP image tower whose processor makes ``clip_pixels``.
    augment_p, crop_fraction
        Train-only augmentation: with probability ``augment_p`` a random crop of ``crop_fraction`` of each side.
    eeg_only
        Items are the EEG tensor ``[128, n_times]`` alone (stage 1's unpaired input); no picture is read.
    batch_size, num_workers, seed
        Items per batch, DataLoader workers, seed of the training order.
    """

    def __init__(
        self,
        root: str,
        eeg_dir: str = "preprocessed_data",
        subjects: list[int] | None = None,
        test_subjects: list[int] | None = None,
        train_repetitions: str = "single",
        test_repetitions: str = "average",
        val_concepts: int = 100,
        split_seed: int = 0,
        channel_map: str | list[str] = "replicate",
        window_start: float = 0.0,
        window_stop: float | None = None,
        n_times: int = N_TIMES,
        image_size: int = 512,
        clip_model: str = CLIP_VIT_L14,
        local_files_only: bool = False,
        augment_p: float = 0.0,
        crop_fraction: float = 0.8,
        eeg_only: bool = False,
        batch_size: int = 25,
        num_workers: int = 4,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        subjects = [8] if subjects is None else list(subjects)
        for name, value in (("train_repetitions", train_repetitions), ("test_repetitions", test_repetitions)):
            if value not in REPETITION_MODES:
                raise ValueError(f"{name}={value!r}; use one of {', '.join(REPETITION_MODES)}")
        if not subjects:
            raise ValueError("subjects is empty: name at least one subject (1..10) for the train and val splits")
        if channel_map != "replicate" and (isinstance(channel_map, str) or len(channel_map) != N_CHANS):
            raise ValueError(f"channel_map must be 'replicate' or a list of {N_CHANS} electrode names, got {channel_map!r}")
        if window_stop is not None and window_stop <= window_start:
            raise ValueError(f"EEG window {window_start}..{window_stop} s is empty")
        if not 0.0 <= augment_p <= 1.0:
            raise ValueError(f"augment_p={augment_p} is not a probability in [0, 1]")
        self.subjects = subjects
        self.test_subjects = subjects if test_subjects is None else list(test_subjects)
        self.datasets: dict[str, ThingsEEG2Dataset] = {}
        self.labels: list[str] = []  # concept id -> concept name, after setup
        self.protocol: dict = {}  # what setup used: splits, concepts, notes (stage 3 writes it to metrics.json)

    @property
    def protocol_notes(self) -> list[str]:
        return list(self.protocol.get("notes", []))

    def reader(self, file: EEGFile) -> EEGReader:
        hp = self.hparams
        stop = np.inf if hp.window_stop is None else hp.window_stop
        samples = np.flatnonzero((file.times >= hp.window_start) & (file.times < stop))
        if len(samples) < 2:
            raise ValueError(
                f"{file.path}: the window {hp.window_start}..{hp.window_stop} s holds {len(samples)} of the file's time "
                f"points ({file.times[0]:.3f}..{file.times[-1]:.3f} s); widen window_start/window_stop"
            )
        if hp.channel_map == "replicate":
            channels = replication_index(len(file.ch_names), N_CHANS)
        else:
            channels = montage_index(file.ch_names, list(hp.channel_map))
        return EEGReader(file, samples, channels, hp.n_times)

    def _readers(self, part: str, subjects: list[int], conditions: int) -> dict[int, EEGReader]:
        readers = {}
        for subject in subjects:
            file = load_eeg_file(eeg_path(self.hparams.root, self.hparams.eeg_dir, subject, part))
            if file.data.shape[1] > AVERAGE or file.data.shape[0] > SUBJECT_STRIDE:
                raise ValueError(
                    f"{file.path} holds {file.data.shape[1]} repetitions of {file.data.shape[0]} conditions; the release has "
                    f"at most {AVERAGE} and {SUBJECT_STRIDE} (trial indices are built on those bounds)"
                )
            if file.data.shape[0] != conditions:
                raise ValueError(
                    f"{file.path} holds {file.data.shape[0]} conditions but image_metadata.npy lists {conditions} {part} "
                    "pictures; EEG condition i must be picture i: use the metadata file of the same release"
                )
            readers[subject] = self.reader(file)
        return readers

    def _rows(self, readers: dict[int, EEGReader], conditions: list[int], mode: str) -> list[tuple[int, int, int]]:
        rows = []
        for subject, reader in readers.items():
            repetitions = [AVERAGE] if mode == "average" else list(range(reader.file.data.shape[1]))
            rows += [(subject, c, r) for c in conditions for r in repetitions]
        return rows

    def setup(self, stage: str | None = None) -> None:
        """Train and val for ``fit``/``validate``, test for ``test``/``predict``, all for ``None``: fitting never
        opens a test EEG file."""
        hp = self.hparams
        wanted = {"fit": ("train", "val"), "validate": ("train", "val"), "test": ("test",), "predict": ("test",)}.get(
            stage, ("train", "val", "test"))
        wanted = [s for s in wanted if s not in self.datasets]
        if not wanted:
            return
        root = Path(hp.root)
        metadata = load_metadata(root / "image_metadata.npy")
        names, ids = concept_ids(metadata)
        held_out = validation_concepts(metadata.concepts["training"], hp.val_concepts, hp.split_seed)
        split_conditions = {
            "train": [i for i, c in enumerate(metadata.concepts["training"]) if c not in held_out],
            "val": [i for i, c in enumerate(metadata.concepts["training"]) if c in held_out],
            "test": list(range(len(metadata.concepts["test"]))),
        }
        parts = {"train": "training", "val": "training", "test": "test"}
        split_subjects = {"training": self.subjects, "test": self.test_subjects}
        readers = {
            part: self._readers(part, split_subjects[part], len(metadata.files[part]))
            for part in sorted({parts[s] for s in wanted})
        }
        processor = None
        if not hp.eeg_only:
            from transformers import CLIPImageProcessor

            from dreamdiffusion.models.backbones import _check_local

            self._check_images(root, metadata, sorted(readers))
            _check_local(hp.clip_model, ["preprocessor_config.json"], "CLIP")
            processor = CLIPImageProcessor.from_pretrained(hp.clip_model, local_files_only=hp.local_files_only)
        for split in wanted:
            part = parts[split]
            mode = hp.test_repetitions if split == "test" else hp.train_repetitions
            self.datasets[split] = ThingsEEG2Dataset(
                readers[part], self._rows(readers[part], split_conditions[split], mode), part, metadata, root,
                [ids[c] for c in metadata.concepts[part]], hp.image_size, processor,
                augment_p=hp.augment_p if split == "train" else 0.0, crop_fraction=hp.crop_fraction, eeg_only=hp.eeg_only,
            )
        self.labels = names
        first = next(iter(next(iter(readers.values())).values())).file
        preprocessing = self._preprocessing(root, {part: sorted(r) for part, r in readers.items()})
        self.protocol = {
            "name": "leak-free",
            "dataset": "THINGS-EEG2",
            "subjects": self.subjects,
            "test_subjects": self.test_subjects,
            "val_concepts": sorted(held_out),
            "train_repetitions": hp.train_repetitions,
            "test_repetitions": hp.test_repetitions,
            "eeg_channels": len(first.ch_names),
            "eeg_times": len(first.times),
            "items": {k: len(v) for k, v in self.datasets.items()},
            "preprocessing": preprocessing,
            "notes": [
                f"leak-free protocol: validation = {len(held_out)} whole held-out training concepts; test = "
                f"{len(split_conditions['test'])} unseen concepts, scored once",
                *preprocessing_notes(preprocessing, (root / "synthetic.json").is_file()),
            ],
        }
        log.info("THINGS-EEG2: %s", self.protocol["items"])

    def _preprocessing(self, root: Path, subjects: dict[str, list[int]]) -> dict[str, str]:
        """``{"sub-XX": source}`` of every subject read: ``from-raw`` (a manifest of preprocess-things-eeg2 beside its
        files, checked against them), else ``synthetic`` (the twin) or ``official``."""
        synthetic = (root / "synthetic.json").is_file()
        sources = {}
        for subject in sorted({s for group in subjects.values() for s in group}):
            folder = eeg_path(root, self.hparams.eeg_dir, subject, "training").parent
            manifest = read_manifest(folder)
            sources[f"sub-{subject:02d}"] = "from-raw" if manifest else ("synthetic" if synthetic else "official")
        return sources

    def _check_images(self, root: Path, metadata: Metadata, parts: list[str]) -> None:
        missing = [
            metadata.image_path(root, part, i) for part in parts for i in range(len(metadata.files[part]))
            if not metadata.image_path(root, part, i).is_file()
        ]
        if missing:
            shown = ", ".join(map(str, missing[:5])) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            raise FileNotFoundError(
                f"{len(missing)} picture(s) named by {metadata.path} are missing: {shown}. Unzip the OSF image archives "
                f"into {root}/training_images and {root}/test_images (see data/README.md); `dreamdiffusion data "
                "check-things-eeg2` lists them all"
            )

    def train_dataloader(self) -> DataLoader:
        return train_loader(self.datasets["train"], self.hparams.batch_size, self.hparams.seed, self.hparams.num_workers)

    def val_dataloader(self) -> DataLoader:
        return eval_loader(self.datasets["val"], self.hparams.batch_size, self.hparams.num_workers)

    def test_dataloader(self) -> DataLoader:
        return eval_loader(self.datasets["test"], self.hparams.batch_size, self.hparams.num_workers)

    def predict_dataloader(self) -> DataLoader:
        return eval_loader(self.datasets["test"], self.hparams.batch_size, self.hparams.num_workers)
