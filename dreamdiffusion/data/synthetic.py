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

EEG (1 kHz, trial onset at sample 0): each class has two evoked components, each a spatial map
(a dipole-like difference of two Gaussian blobs over 128 electrode positions) times a Gabor transient
(class-specific latency 80–350 ms, frequency 6–30 Hz, phase locked to the onset). A class-independent
visual evoked response is added to every trial. Per trial the latency jitters (SD 6 ms) and the
amplitude varies (log-normal); every subject has its own electrode gains. Under it lies spatially
correlated 1/f (pink) noise; each trial is then band-passed 5–95 Hz and standardised per channel, as
the real ``_std`` file is. Trial lengths spread over 440–620 samples (median ~515) so the 450–600
length rule drops some. The class is therefore in the phase-locked spatio-temporal shape of a
window, learnable by a linear read-out, and not in any channel's mean level (standardisation removes it).

Images: class ``k`` has its own shape and hue; each picture varies in size (64–96 px per side),
position and scale of the shape, rotation, background colour and texture noise.
"""

from __future__ import annotations

import colorsys
import json
import math
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from dreamdiffusion import progress
from dreamdiffusion.atomic import atomic_dir

if TYPE_CHECKING:
    import PIL.Image

SFREQ = 1000.0
N_CHANS = 128
SHAPES = ("circle", "square", "triangle", "diamond", "star", "cross", "ring", "hexagon", "bars", "crescent")
EEG_FILE = "eeg_5_95_std.pth"
SINGLE_FILE = "block_splits_by_image_single.pth"
ALL_FILE = "block_splits_by_image_all.pth"
JPEG_QUALITY = 90
# The writer's random streams: default_rng(seed) (image order, trial lengths) and default_rng([seed, k]) for
# k = 1..4 (EEG model, trials, splits, pictures). Other users of synth_image take other k.
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


# ---------------------------------------------------------------------------------------------- EEG


def electrode_positions(rng: np.random.Generator, n_chans: int = N_CHANS) -> np.ndarray:
    """``[n_chans, 3]`` points spread over the upper unit hemisphere (a stand-in for a 128-channel cap)."""
    i = np.arange(n_chans) + 0.5
    z = 1 - i / n_chans  # uniform in height over the upper hemisphere: Fibonacci lattice
    azimuth = math.pi * (1 + 5**0.5) * i + rng.uniform(0, 2 * math.pi)
    r = np.sqrt(1 - z**2)
    return np.stack([r * np.cos(azimuth), r * np.sin(azimuth), z], axis=1)


def _blob(positions: np.ndarray, centre: np.ndarray, width: float) -> np.ndarray:
    return np.exp(-((positions - centre) ** 2).sum(1) / (2 * width**2))


def _random_direction(rng: np.random.Generator) -> np.ndarray:
    v = rng.normal(size=3)
    v[2] = abs(v[2]) + 0.3
    return v / np.linalg.norm(v)


def spatial_map(rng: np.random.Generator, positions: np.ndarray) -> np.ndarray:
    """A dipole-like scalp map ``[C]``: positive blob minus negative blob, peak |value| 1."""
    m = _blob(positions, _random_direction(rng), 0.45) - _blob(positions, _random_direction(rng), 0.45)
    return m / np.abs(m).max()


def gabor(t: np.ndarray, latency: float, frequency: float, width: float, phase: float) -> np.ndarray:
    """Transient ``[T]``: a cosine of ``frequency`` Hz under a Gaussian envelope centred at ``latency`` s."""
    return np.exp(-0.5 * ((t - latency) / width) ** 2) * np.cos(2 * math.pi * frequency * (t - latency) + phase)


def pink_noise(rng: np.random.Generator, n_sources: int, n_times: int, sfreq: float = SFREQ) -> np.ndarray:
    """``[n_sources, n_times]`` noise sampled at ``sfreq`` Hz with power ∝ 1/f above 1 Hz (unit SD per source)."""
    spectrum = rng.normal(size=(n_sources, n_times // 2 + 1)) + 1j * rng.normal(size=(n_sources, n_times // 2 + 1))
    f = np.fft.rfftfreq(n_times, 1 / sfreq)
    spectrum *= 1 / np.sqrt(np.maximum(f, 1.0))
    spectrum[:, 0] = 0
    x = np.fft.irfft(spectrum, n=n_times)
    return x / x.std(axis=1, keepdims=True)


def band_pass_fft(x: np.ndarray, l_freq: float = 5.0, h_freq: float = 95.0) -> np.ndarray:
    """Zero-phase band-pass of ``x [C, T]`` (1 kHz) by a raised-cosine mask in the frequency domain."""
    n = x.shape[-1]
    f = np.fft.rfftfreq(n, 1 / SFREQ)
    edge = 2.0  # Hz of cosine roll-off on each side
    mask = np.clip((f - (l_freq - edge)) / (2 * edge), 0, 1) * np.clip(((h_freq + edge) - f) / (2 * edge), 0, 1)
    mask = 0.5 - 0.5 * np.cos(math.pi * mask)
    return np.fft.irfft(np.fft.rfft(x, axis=-1) * mask, n=n, axis=-1)


@dataclass
class EEGModel:
    """The generative model's fixed parts: per-class components, per-subject gains, noise mixing."""

    positions: np.ndarray  # [C, 3]
    class_maps: np.ndarray  # [K, 2, C]
    class_waves: np.ndarray  # [K, 2, 4]: latency s, frequency Hz, width s, phase rad
    common_map: np.ndarray  # [C]
    subject_gains: np.ndarray  # [S, C]
    mixing: np.ndarray  # [C, C] spatial correlation of the background noise


def gabor_parameters(rng: np.random.Generator) -> np.ndarray:
    """One evoked component's waveform ``[4]``: latency 80–350 ms (s), frequency 6–30 Hz, width 30–60 ms (s),
    phase (rad), drawn in this order from ``rng``."""
    return np.array([rng.uniform(0.08, 0.35), rng.uniform(6, 30), rng.uniform(0.03, 0.06), rng.uniform(0, 2 * math.pi)])


def occipital_map(positions: np.ndarray) -> np.ndarray:
    """Scalp map ``[C]`` of the class-independent visual response: one blob over the occipital pole, peak 1."""
    m = _blob(positions, np.array([0.0, -0.8, 0.6]) / np.linalg.norm([0.0, -0.8, 0.6]), 0.5)
    return m / m.max()


def subject_gains(rng: np.random.Generator, subjects: int, n_chans: int = N_CHANS) -> np.ndarray:
    """``[subjects, n_chans]`` log-normal electrode gains (SD 0.15 in log units): each head and cap differs."""
    return np.exp(rng.normal(0, 0.15, size=(subjects, n_chans)))


def noise_mixing(positions: np.ndarray) -> np.ndarray:
    """``[C, C]`` mixing that makes background noise spatially correlated: Gaussian in electrode distance
    (0.35 on the unit sphere), each row of unit norm."""
    distance = np.linalg.norm(positions[:, None] - positions[None], axis=-1)
    mixing = np.exp(-((distance / 0.35) ** 2))
    return mixing / np.linalg.norm(mixing, axis=1, keepdims=True)


def visual_evoked_response(rng: np.random.Generator, t: np.ndarray) -> np.ndarray:
    """The waveform ``[T]`` every picture elicits whatever its class (P100-like then N170-like), onset at
    ``t = 0`` s, each peak's latency jittered (SD 10 ms)."""
    return gabor(t, 0.1 + rng.normal(0, 0.01), 10.0, 0.04, 0.0) - 0.6 * gabor(t, 0.17 + rng.normal(0, 0.01), 7.0, 0.05, 0.0)


def background_noise(rng: np.random.Generator, mixing: np.ndarray, n_times: int, sfreq: float = SFREQ) -> np.ndarray:
    """``[C, n_times]`` spatially correlated pink noise sampled at ``sfreq`` Hz, unit SD per channel."""
    noise = mixing @ pink_noise(rng, mixing.shape[0], n_times, sfreq)
    return noise / noise.std(axis=1, keepdims=True)


def make_eeg_model(rng: np.random.Generator, classes: int, subjects: int) -> EEGModel:
    positions = electrode_positions(rng)
    maps = np.stack([[spatial_map(rng, positions) for _ in range(2)] for _ in range(classes)])
    waves = np.stack([[gabor_parameters(rng) for _ in range(2)] for _ in range(classes)])
    gains = subject_gains(rng, subjects)
    return EEGModel(positions, maps, waves, occipital_map(positions), gains, noise_mixing(positions))


def synth_trial(rng: np.random.Generator, model: EEGModel, label: int, subject: int, length: int, snr: float) -> np.ndarray:
    """One standardised trial ``[128, length]`` float32 of class ``label`` seen by ``subject`` (0-based)."""
    t = np.arange(length) / SFREQ
    signal = np.zeros((N_CHANS, length))
    for c in range(2):
        latency, frequency, width, phase = model.class_waves[label, c]
        latency += rng.normal(0, 0.006)
        amplitude = snr * math.exp(rng.normal(0, 0.25))
        signal += amplitude * np.outer(model.class_maps[label, c], gabor(t, latency, frequency, width, phase))
    vep = visual_evoked_response(rng, t)
    signal += snr * 1.5 * math.exp(rng.normal(0, 0.3)) * np.outer(model.common_map, vep)
    signal *= model.subject_gains[subject][:, None]
    x = band_pass_fft(signal + background_noise(rng, model.mixing, length))
    x = (x - x.mean(axis=1, keepdims=True)) / x.std(axis=1, keepdims=True)
    return x.astype(np.float32)


def trial_lengths(rng: np.random.Generator, n: int, cfg: SyntheticConfig) -> np.ndarray:
    """Samples per trial: rounded normal (``length_mean`` ± ``length_sd``) clipped to [min_length, max_length]."""
    return np.clip(np.round(rng.normal(cfg.length_mean, cfg.length_sd, size=n)), cfg.min_length, cfg.max_length).astype(int)


# ------------------------------------------------------------------------------------------- images


def _shape_points(shape: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    def polygon(n: int, radii: list[float], offset: float = 0.0):
        pts = []
        for i in range(n * len(radii)):
            a = angle + offset + 2 * math.pi * i / (n * len(radii))
            rr = r * radii[i % len(radii)]
            pts.append((cx + rr * math.cos(a), cy + rr * math.sin(a)))
        return pts

    if shape == "square":
        return polygon(4, [1.0], math.pi / 4)
    if shape == "triangle":
        return polygon(3, [1.0], -math.pi / 2)
    if shape == "diamond":
        return polygon(2, [1.0, 0.55])
    if shape == "star":
        return polygon(5, [1.0, 0.45], -math.pi / 2)
    if shape == "hexagon":
        return polygon(6, [1.0])
    if shape == "cross":
        return polygon(4, [1.0, 0.38, 0.38, 1.0], 0.3)
    raise ValueError(shape)


def synth_image(rng: np.random.Generator, label: int, classes: int, cfg: SyntheticConfig):
    """A ``PIL.Image`` (RGB, sides in [min_image_side, max_image_side]) of class ``label``."""
    from PIL import Image, ImageDraw

    width = int(rng.integers(cfg.min_image_side, cfg.max_image_side + 1))
    height = int(rng.integers(cfg.min_image_side, cfg.max_image_side + 1))
    hue = (label * 0.618034) % 1.0 if classes > len(SHAPES) else label / max(classes, 1)
    colour = colorsys.hsv_to_rgb(hue, rng.uniform(0.75, 1.0), rng.uniform(0.75, 1.0))
    background = colorsys.hsv_to_rgb(rng.uniform(0, 1), rng.uniform(0.0, 0.25), rng.uniform(0.15, 0.9))
    pixels = np.asarray(background)[None, None] * 255 + rng.normal(0, 12, size=(height, width, 3))
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    shape = SHAPES[label % len(SHAPES)]
    r = rng.uniform(0.22, 0.38) * min(width, height)
    cx, cy = rng.uniform(r, width - r), rng.uniform(r, height - r)
    angle = rng.uniform(-0.3, 0.3)
    fill = tuple(int(255 * v) for v in colour)
    box = (cx - r, cy - r, cx + r, cy + r)
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "ring":
        draw.ellipse(box, outline=fill, width=max(2, int(r * 0.35)))
    elif shape == "bars":
        for i in range(3):
            x0 = cx - r + i * (2 * r / 3)
            draw.rectangle((x0, cy - r, x0 + 0.5 * (2 * r / 3), cy + r), fill=fill)
    elif shape == "crescent":
        draw.ellipse(box, fill=fill)
        shift = 0.45 * r
        draw.ellipse((cx - r + shift, cy - r - 0.1 * r, cx + r + shift, cy + r - 0.1 * r), fill=tuple(int(255 * v) for v in background))
    else:
        draw.polygon(_shape_points(shape, cx, cy, r, angle), fill=fill)
    return image


# -------------------------------------------------------------------------------------- file layout


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
    :func:`synth_image` (the demo's base model, classifier and CLIP warm-up) draws from a stream of its own.
    """
    image_rng = np.random.default_rng([cfg.seed, DATASET_PICTURE_STREAM])
    for i in range(cfg.classes * cfg.images_per_class):
        label = i // cfg.images_per_class
        yield f"{wnid(label)}_{i % cfg.images_per_class + 1}", synth_image(image_rng, label, cfg.classes, cfg)


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
    return [synth_image(rng, k, classes, cfg) for k in labels], labels
