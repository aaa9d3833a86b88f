"""A synthetic twin of ImageNet-EEG, in the very same file formats, for the demo and the tests.

:func:`write_synthetic_imagenet_eeg` writes::

    <out>/eeg_5_95_std.pth                   {"dataset": [{eeg [128, L], label, image, subject}], "labels", "images"}
    <out>/block_splits_by_image_single.pth   {"splits": [{"train", "val", "test"}]}  indices into ONE subject's trials
    <out>/block_splits_by_image_all.pth      {"splits": [{"train", "val", "test"}]}  indices into the whole list
    <out>/images/<wnid>/<wnid>_<n>.JPEG      one picture per image name
    <out>/synthetic.json                     the generator's parameters

Layout mirrors the real recording (Spampinato et al., 2017): every subject sees every image once, in
one shared sequence of class blocks; trials are stored interleaved by subject, so a subject's trials
in stored order follow that sequence. Splits are by image (no image in two splits) and stratified by
class, so every class is seen in training and held out.

This module holds the dataset's configuration, its random streams, the file layout and the writer. The
signal comes from :mod:`dreamdiffusion.data.synthetic_eeg` (1 kHz, trial onset at sample 0): each class has
two evoked components, each a dipole-like scalp map times a phase-locked Gabor transient, plus a
class-independent visual evoked response, with per-trial latency and amplitude jitter and per-subject
electrode gains, under spatially correlated 1/f noise; each trial is band-passed 5–95 Hz and standardised
per channel, as the real ``_std`` file is. Trial lengths spread over 440–620 samples (median ~515) so the
450–600 length rule drops some. The class is therefore in the phase-locked spatio-temporal shape of a
window, learnable by a linear read-out, and not in any channel's mean level (standardisation removes it).

Images come from :mod:`dreamdiffusion.data.synthetic_pictures`: class ``k`` has its own shape and hue; each
picture varies in size (64–96 px per side), position and scale of the shape, rotation, background colour
and texture noise.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from dreamdiffusion import progress
from dreamdiffusion.atomic import atomic_dir
from dreamdiffusion.data import synthetic_pictures
from dreamdiffusion.data.synthetic_eeg import make_eeg_model, synth_trial

if TYPE_CHECKING:
    import PIL.Image

EEG_FILE = "eeg_5_95_std.pth"
SINGLE_FILE = "block_splits_by_image_single.pth"
ALL_FILE = "block_splits_by_image_all.pth"
JPEG_QUALITY = 90
# The writer's random streams: default_rng(seed) (image order, trial lengths) and default_rng([seed, k]) for
# k = 1..4 (EEG model, trials, splits, pictures). Other users of synth_image take other k.
# synth_image is called through its module, the one place a test can record every picture drawn.
DATASET_PICTURE_STREAM = 4
DATASET_STREAMS = (1, 2, 3, DATASET_PICTURE_STREAM)


@dataclass(frozen=True)
class SyntheticConfig:
    """What :func:`write_synthetic_imagenet_eeg` generates; written to ``synthetic.json``.

    ``signal_to_noise`` is the peak amplitude of a class component relative to the noise SD before
    standardisation; ``val_fraction``/``test_fraction`` are shares of each class's images.
    """

    classes: int = 10
    images_per_class: int = 5
    subjects: int = 3
    seed: int = 0
    signal_to_noise: float = 0.6
    length_mean: float = 515.0
    length_sd: float = 45.0
    min_length: int = 440
    max_length: int = 620
    min_image_side: int = 64
    max_image_side: int = 96
    val_fraction: float = 0.17
    test_fraction: float = 0.16


def wnid(k: int) -> str:
    """A WordNet-id-like name for synthetic class ``k`` (``n9`` prefix: no real synset starts so)."""
    return f"n9{k:07d}"


# -------------------------------------------------------------------------------------- file layout


def trial_lengths(rng: np.random.Generator, n: int, cfg: SyntheticConfig) -> np.ndarray:
    """Samples per trial: rounded normal (``length_mean`` ± ``length_sd``) clipped to [min_length, max_length]."""
    return np.clip(np.round(rng.normal(cfg.length_mean, cfg.length_sd, size=n)), cfg.min_length, cfg.max_length).astype(int)


def image_sequence(rng: np.random.Generator, classes: int, images_per_class: int) -> list[int]:
    """The order (image ids) every subject saw: classes in blocks, a random class and image order."""
    order = []
    for k in rng.permutation(classes):
        order += [int(k) * images_per_class + int(j) for j in rng.permutation(images_per_class)]
    return order


def split_images(rng: np.random.Generator, cfg: SyntheticConfig) -> dict[str, set[int]]:
    """Image ids of each split, stratified by class: every class has images in train, val and test."""
    n_test = max(1, round(cfg.test_fraction * cfg.images_per_class))
    n_val = max(1, round(cfg.val_fraction * cfg.images_per_class))
    splits = {"train": set(), "val": set(), "test": set()}
    for k in range(cfg.classes):
        ids = [k * cfg.images_per_class + int(j) for j in rng.permutation(cfg.images_per_class)]
        splits["test"].update(ids[:n_test])
        splits["val"].update(ids[n_test : n_test + n_val])
        splits["train"].update(ids[n_test + n_val :])
    return splits


def _check_config(cfg: SyntheticConfig) -> None:
    if cfg.classes < 2:
        raise ValueError(f"classes={cfg.classes}: a classification dataset needs at least 2 classes")
    if cfg.subjects < 1:
        raise ValueError(f"subjects={cfg.subjects}: need at least 1 subject")
    if not cfg.signal_to_noise >= 0:
        raise ValueError(f"signal_to_noise={cfg.signal_to_noise}: must be >= 0 (0 gives EEG without any class signal)")
    n_held = max(1, round(cfg.test_fraction * cfg.images_per_class)) + max(1, round(cfg.val_fraction * cfg.images_per_class))
    if cfg.images_per_class < n_held + 1:
        raise ValueError(
            f"images_per_class={cfg.images_per_class} leaves no training image per class once val and test take "
            f"{n_held}; use at least {n_held + 1}"
        )
    if not cfg.min_image_side <= cfg.max_image_side or cfg.min_image_side < 8:
        raise ValueError(f"image sides {cfg.min_image_side}..{cfg.max_image_side} px are not a valid range (min >= 8)")


def write_synthetic_imagenet_eeg(
    out: str | os.PathLike,
    classes: int = SyntheticConfig.classes,
    images_per_class: int = SyntheticConfig.images_per_class,
    subjects: int = SyntheticConfig.subjects,
    seed: int = SyntheticConfig.seed,
    **options,
) -> Path:
    """Write the synthetic dataset to ``out`` (atomically, replacing a previous synthetic one) and return it.

    ``options`` are further :class:`SyntheticConfig` fields. The same arguments always give the same
    tensors, indices and pixels. A non-empty ``out`` that is not a synthetic dataset is refused.
    """
    cfg = SyntheticConfig(classes=classes, images_per_class=images_per_class, subjects=subjects, seed=seed, **options)
    _check_config(cfg)
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not (out / "synthetic.json").is_file():
        raise FileExistsError(
            f"{out} exists, is not empty and holds no synthetic.json: refusing to replace it with a synthetic "
            "dataset; choose an empty or new --out folder"
        )
    rng = np.random.default_rng(cfg.seed)
    model = make_eeg_model(np.random.default_rng([cfg.seed, 1]), cfg.classes, cfg.subjects)
    labels = [wnid(k) for k in range(cfg.classes)]
    n_images = cfg.classes * cfg.images_per_class
    images = [f"{labels[i // cfg.images_per_class]}_{i % cfg.images_per_class + 1}" for i in range(n_images)]
    sequence = image_sequence(rng, cfg.classes, cfg.images_per_class)
    lengths = trial_lengths(rng, len(sequence) * cfg.subjects, cfg)
    trial_rng = np.random.default_rng([cfg.seed, 2])

    dataset = []
    with progress.bar(total=len(sequence) * cfg.subjects, desc="synthetic EEG", unit="trial") as bar:
        for image in sequence:
            label = image // cfg.images_per_class
            for s in range(cfg.subjects):  # stored interleaved: subject s's trials follow `sequence`
                length = int(lengths[len(dataset)])
                eeg = synth_trial(trial_rng, model, label, s, length, cfg.signal_to_noise)
                dataset.append({"eeg": torch.from_numpy(eeg), "label": label, "image": image, "subject": s + 1})
                bar.update()

    split_of = {}
    for name, ids in split_images(np.random.default_rng([cfg.seed, 3]), cfg).items():
        split_of.update({i: name for i in ids})
    single = {"train": [], "val": [], "test": []}
    for k, image in enumerate(sequence):
        single[split_of[image]].append(k)
    every = {"train": [], "val": [], "test": []}
    for i, trial in enumerate(dataset):
        every[split_of[trial["image"]]].append(i)

    with atomic_dir(out) as tmp:
        torch.save({"dataset": dataset, "labels": labels, "images": images}, tmp / EEG_FILE)
        torch.save({"splits": [single]}, tmp / SINGLE_FILE)
        torch.save({"splits": [every]}, tmp / ALL_FILE)
        for name, picture in progress.bar(dataset_pictures(cfg), total=n_images, desc="synthetic pictures", unit="picture"):
            folder = tmp / "images" / name.split("_")[0]
            folder.mkdir(parents=True, exist_ok=True)
            picture.save(folder / f"{name}.JPEG", format="JPEG", quality=JPEG_QUALITY)
        (tmp / "synthetic.json").write_text(json.dumps(asdict(cfg), indent=2) + "\n")
    return out


def dataset_pictures(cfg: SyntheticConfig) -> Iterator[tuple[str, PIL.Image.Image]]:
    """``(image name, PIL picture)`` of every picture of the dataset ``cfg`` describes (all splits), in the
    order :func:`write_synthetic_imagenet_eeg` writes them, before JPEG compression.

    They come from the stream ``default_rng([seed, DATASET_PICTURE_STREAM])``; every other user of
    :func:`~dreamdiffusion.data.synthetic_pictures.synth_image` (the demo's base model, classifier and CLIP
    warm-up) draws from a stream of its own.
    """
    image_rng = np.random.default_rng([cfg.seed, DATASET_PICTURE_STREAM])
    for i in range(cfg.classes * cfg.images_per_class):
        label = i // cfg.images_per_class
        yield f"{wnid(label)}_{i % cfg.images_per_class + 1}", synthetic_pictures.synth_image(image_rng, label, cfg.classes, cfg)


def own_pictures(stream: int, classes: int, pictures_per_class: int, seed: int = 0) -> tuple[list, list[int]]:
    """``(pictures, labels)``: ``pictures_per_class`` PIL pictures of each of ``classes`` classes, class after
    class, from ``default_rng([seed, stream])``, for models that must know the pictures without seeing the
    dataset's. ``stream`` must not be one of the dataset writer's (1-4)."""
    if stream in DATASET_STREAMS:
        raise ValueError(f"picture stream {stream} is one of the dataset's own streams {DATASET_STREAMS}; pick another")
    if classes < 2 or pictures_per_class < 1:
        raise ValueError(f"classes={classes}, pictures_per_class={pictures_per_class}: need >= 2 classes and >= 1 picture each")
    rng = np.random.default_rng([seed, stream])
    cfg = SyntheticConfig(classes=classes, seed=seed)
    labels = [k for k in range(classes) for _ in range(pictures_per_class)]
    return [synthetic_pictures.synth_image(rng, k, classes, cfg) for k in labels], labels
