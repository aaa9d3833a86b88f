"""EEG–image pairs of THINGS-EEG2 (Gifford et al., 2022, NeuroImage 264:119754) with a leak-free protocol.

The release's files (layout and checks: :mod:`dreamdiffusion.data.things_eeg2_files`) become the items of
:class:`~dreamdiffusion.data.things_eeg2_dataset.ThingsEEG2Dataset` (fields: that module's docstring);
:class:`ThingsEEG2DataModule` decides which items make each split.

The protocol (``protocol = "leak-free"``):

* **test** = the 200 test pictures of 200 concepts never seen in training, scored once;
* **val** = ``val_concepts`` whole **training** concepts (all their pictures and repetitions), drawn with
  ``split_seed``; checkpoints are selected on it (or a fixed epoch budget is used), never on the test set;
* **train** = the other training concepts.

A test concept that also appears among the training concepts (by name, numeric prefix ignored) is an error,
raised when the metadata is read.

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
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from dreamdiffusion.data.loaders import eval_loader, train_loader
from dreamdiffusion.data.things_eeg2_dataset import AVERAGE, SUBJECT_STRIDE, EEGReader, ThingsEEG2Dataset
from dreamdiffusion.data.things_eeg2_files import EEGFile, Metadata, eeg_path, load_eeg_file, load_metadata
from dreamdiffusion.data.things_eeg2_preprocess import read_manifest
from dreamdiffusion.models.backbones import CLIP_VIT_L14
from dreamdiffusion.signal import N_CHANS, N_TIMES, montage_index, replication_index

log = logging.getLogger(__name__)

REPETITION_MODES = ("single", "average")
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
