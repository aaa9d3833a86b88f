"""A synthetic twin of THINGS-EEG2 in the release's file formats, tiny by default, for the tests and ``make demo-things``.

:func:`write_synthetic_things_eeg2` writes (the layout :mod:`dreamdiffusion.data.things_eeg2_files` reads)::

    <out>/preprocessed_data/sub-XX/preprocessed_eeg_training.npy   np.save of {"preprocessed_eeg_data":
    <out>/preprocessed_data/sub-XX/preprocessed_eeg_test.npy          [conditions, repetitions, C, T] float64,
                                                                      "ch_names": [C], "times": [T] s}
    <out>/image_metadata.npy        {"train_img_concepts", "train_img_files", "test_img_concepts", "test_img_files"}
    <out>/training_images/<concept>/<file>.jpg   <out>/test_images/<concept>/<file>.jpg
    <out>/synthetic.json            the generator's parameters
    <out>/raw_data/sub-XX/ses-YY/raw_eeg_{training,test}.npy    with ``raw=True``: raw recordings at 1000 Hz
                                    (:mod:`dreamdiffusion.data.things_eeg2_synthetic_raw`)

Channels: the official 17 occipito-parietal ones (``channels=17``) or 63 of the 10-10 system (``channels=63``);
epochs of −0.2…0.79 s at ``sfreq`` (100 Hz: 100 samples, as the official files; 250 Hz: 250, as NICE/ATM's).

Pictures: :func:`dreamdiffusion.data.synthetic_pictures.synth_image` — concept ``k`` (training concepts first, then test
concepts) is drawn as shape ``k mod 10`` in its own hue.

EEG: every picture has an evoked response ``concept pattern + picture pattern`` of peak ``signal_to_noise``
relative to the white noise added to every repetition. Each pattern is a sum of components, a component being a
random spatial map times a Gabor transient after onset. The concept pattern is a function of what the picture
shows: a component per shape plus two hue components weighted by the ``cos``/``sin`` of the hue angle. A test concept
is new, but its shape and hue lie among the training concepts', so its EEG can be read by what generalises from
training — the premise of the zero-shot test. The picture pattern (half the amplitude) is picture-specific.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from dreamdiffusion import progress
from dreamdiffusion.atomic import atomic_dir
from dreamdiffusion.data.synthetic import SyntheticConfig
from dreamdiffusion.data.synthetic_pictures import SHAPES, synth_image
from dreamdiffusion.data.things_eeg2_synthetic_raw import raw_patterns, write_raw_recordings

CHANNELS_17 = ("Pz", "P3", "P7", "O1", "Oz", "O2", "P4", "P8", "P1", "P5", "PO7", "PO3", "POz", "PO4", "PO8", "P6", "P2")
CHANNELS_63 = (
    "Fp1", "Fz", "F3", "F7", "FT9", "FC5", "FC1", "C3", "T7", "TP9", "CP5", "CP1", "Pz", "P3", "P7", "O1", "Oz", "O2",
    "P4", "P8", "TP10", "CP6", "CP2", "Cz", "C4", "T8", "FT10", "FC6", "FC2", "F4", "F8", "Fp2", "AF7", "AF3", "AFz",
    "F1", "F5", "FT7", "FC3", "C1", "C5", "TP7", "CP3", "P1", "P5", "PO7", "PO3", "POz", "PO4", "PO8", "P6", "P2",
    "CPz", "CP4", "TP8", "C6", "C2", "FC4", "FT8", "F6", "AF8", "AF4", "F2",
)
EPOCH = (-0.2, 0.8)  # seconds: onset 0.2 s into a 1 s epoch, last sample at 0.79 s (100 Hz)


@dataclass(frozen=True)
class ThingsSyntheticConfig:
    """What :func:`write_synthetic_things_eeg2` generates; written to ``synthetic.json``."""

    subjects: tuple[int, ...] = (1, 2)
    train_concepts: int = 8
    images_per_concept: int = 2
    test_concepts: int = 4
    train_repetitions: int = 4
    test_repetitions: int = 8
    channels: int = 17
    sfreq: float = 100.0
    signal_to_noise: float = 1.0
    seed: int = 0
    raw: bool = False
    raw_sessions: int = 4
    raw_targets: int = 2


def channel_names(channels: int) -> list[str]:
    if channels == 17:
        return list(CHANNELS_17)
    if channels == 63:
        return list(CHANNELS_63)
    raise ValueError(f"channels={channels}: the release has 17 (official files) or 63 (NICE/ATM variant) channels")


def epoch_times(sfreq: float) -> np.ndarray:
    """``[T]`` sample times in s, −0.2 s up to (not including) 0.8 s."""
    n = int(round((EPOCH[1] - EPOCH[0]) * sfreq))
    return np.round(EPOCH[0] + np.arange(n) / sfreq, 6)


def evoked(rng: np.random.Generator, n_chans: int, times: np.ndarray) -> np.ndarray:
    """``[C, T]`` one random evoked component: spatial map × Gabor transient after onset (peak 1)."""
    latency, frequency = rng.uniform(0.08, 0.35), rng.uniform(4, 12)
    wave = np.exp(-0.5 * ((times - latency) / 0.05) ** 2) * np.cos(2 * np.pi * frequency * (times - latency))
    wave[times < 0] = 0.0
    space = rng.standard_normal(n_chans)
    return np.outer(space / np.abs(space).max(), wave)


def hue(label: int, classes: int) -> float:
    """The hue in [0, 1) that :func:`~dreamdiffusion.data.synthetic_pictures.synth_image` gives concept ``label``."""
    return (label * 0.618034) % 1.0 if classes > len(SHAPES) else label / max(classes, 1)


def write_eeg_file(path: Path, data: np.ndarray, ch_names: list[str], times: np.ndarray) -> None:
    """``np.save`` of the release's dict (a pickled 0-d object array)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, {"preprocessed_eeg_data": data, "ch_names": ch_names, "times": times}, allow_pickle=True)


def write_synthetic_things_eeg2(out: str | os.PathLike, config: ThingsSyntheticConfig = ThingsSyntheticConfig()) -> Path:
    """Write the synthetic twin to ``out`` (replaced atomically) and return ``out``."""
    cfg = config
    if cfg.train_concepts < 2 or cfg.images_per_concept < 1 or cfg.test_concepts < 1:
        raise ValueError("the twin needs at least 2 training concepts (one is held out), 1 picture each and 1 test concept")
    rng = np.random.default_rng(cfg.seed)
    names, times = channel_names(cfg.channels), epoch_times(cfg.sfreq)
    c = len(names)
    concepts = {
        "training": [f"{k + 1:05d}_concept{k + 1}" for k in range(cfg.train_concepts)],
        "test": [f"{k + 1:05d}_novel{k + 1}" for k in range(cfg.test_concepts)],
    }
    per_concept = {"training": cfg.images_per_concept, "test": 1}  # the release: 10 pictures per training concept, 1 per test concept
    pictures = {
        part: [(concept, f"{concept.split('_', 1)[1]}_{j + 1:02d}s.jpg") for concept in concepts[part] for j in range(per_concept[part])]
        for part in concepts
    }
    n_classes = cfg.train_concepts + cfg.test_concepts
    image_cfg = SyntheticConfig(classes=n_classes, min_image_side=48, max_image_side=64)
    out = Path(out)
    with atomic_dir(out) as tmp:
        shape_pattern = [evoked(rng, c, times) for _ in SHAPES]
        hue_pattern = (evoked(rng, c, times), evoked(rng, c, times))
        patterns = {}
        n_pictures = sum(len(p) for p in pictures.values())
        with progress.bar(total=n_pictures, desc="synthetic pictures", unit="picture") as bar:
            for part in ("training", "test"):
                offset = 0 if part == "training" else cfg.train_concepts
                concept_pattern = {}
                for k, concept in enumerate(concepts[part]):
                    label = offset + k
                    angle = 2 * np.pi * hue(label, n_classes)
                    concept_pattern[concept] = (shape_pattern[label % len(SHAPES)] + np.cos(angle) * hue_pattern[0]
                                                + np.sin(angle) * hue_pattern[1])
                patterns[part] = np.stack([concept_pattern[k] + 0.5 * evoked(rng, c, times) for k, _ in pictures[part]])
                for concept, file in pictures[part]:
                    label = offset + concepts[part].index(concept)
                    target = tmp / ("training_images" if part == "training" else "test_images") / concept / file
                    target.parent.mkdir(parents=True, exist_ok=True)
                    synth_image(rng, label, n_classes, image_cfg).save(target, format="JPEG", quality=90)
                    bar.update()
        for subject in progress.bar(cfg.subjects, desc="synthetic EEG", unit="subject"):
            for part, reps in (("training", cfg.train_repetitions), ("test", cfg.test_repetitions)):
                signal = cfg.signal_to_noise * patterns[part][:, None]  # [conditions, 1, C, T]
                noise = rng.standard_normal((len(pictures[part]), reps, c, len(times)))
                write_eeg_file(tmp / "preprocessed_data" / f"sub-{subject:02d}" / f"preprocessed_eeg_{part}.npy",
                               signal + noise, names, times)
        metadata = {
            "train_img_concepts": np.array([k for k, _ in pictures["training"]]),
            "train_img_files": np.array([f for _, f in pictures["training"]]),
            "test_img_concepts": np.array([k for k, _ in pictures["test"]]),
            "test_img_files": np.array([f for _, f in pictures["test"]]),
        }
        np.save(tmp / "image_metadata.npy", metadata, allow_pickle=True)
        if cfg.raw:  # a generator of its own: the files above are the same with or without raw recordings
            raw_rng = np.random.default_rng([cfg.seed, 1])
            labels = {part: [(0 if part == "training" else cfg.train_concepts) + concepts[part].index(k)
                             for k, _ in pictures[part]] for part in pictures}
            patterns = raw_patterns(raw_rng, evoked, labels, n_classes, hue, len(CHANNELS_63))
            write_raw_recordings(tmp, cfg, patterns, list(CHANNELS_63), raw_rng)
        (tmp / "synthetic.json").write_text(json.dumps(asdict(cfg), indent=2) + "\n")
    return out
