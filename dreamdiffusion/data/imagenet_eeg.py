"""EEG–image pairs of ImageNet-EEG (Spampinato et al., 2017) for stages 2 and 3.

Files (the formats of the published ImageNet-EEG release)::

    eeg_5_95_std.pth   {"dataset": [{"eeg": FloatTensor[128, L] (1 kHz), "label": int, "image": int,
                         "subject": int 1..6}], "labels": [wnid], "images": [name like n02106662_1451]}
    block_splits_by_image_{single,all}.pth   {"splits": [{"train": [i], "val": [i], "test": [i]}, ...]}
    <image_root>/<wnid>/<name>.JPEG

How a split index is read (``split_addressing``):

* ``all`` — an index addresses the whole ``dataset`` list. A subject filter keeps the split's trials
  of that subject, **without re-indexing**.
* ``single`` — an index addresses the trials of **one** subject, in stored order; so it needs a
  subject (``subject != 0``).
* ``auto`` (default) — read from the file name (``..._single.pth`` / ``..._all.pth``).

Then trials outside ``min_length ≤ L ≤ max_length`` (450..600 samples) are dropped, and so are trials
too short to hold the window (``L < window_stop``); the EEG window is samples
``window_start..window_stop`` (20..460), linearly resampled to ``n_times`` (512) by
:func:`dreamdiffusion.signal.resample_window`.

An item (see :class:`PairedEEGImageDataset`)::

    eeg          float32 [128, 512]
    image        float32 [3, S, S] in [-1, 1]   S = image_size; train: p=augment_p random crop of
                                                crop_fraction of each side, then resize
    clip_pixels  float32 [3, s, s]              the CLIP image processor on the un-augmented picture
    label        int64   class 0..K-1           subject  int64
    image_name   str                            index    int64: position of the trial in ``dataset``
    clip_embeds  float32 [clip_dim]             with cache_clip_embeds
    latent_mean, latent_std  float32 [4, S/8, S/8]   with cache_latents (unscaled VAE posterior)
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from dreamdiffusion import progress
from dreamdiffusion.data import embedding_cache as caches
from dreamdiffusion.data.images import find_images, missing_images_error, random_crop, read_image, to_tensor
from dreamdiffusion.data.loaders import eval_loader, train_loader
from dreamdiffusion.data.plain_load import load_plain
from dreamdiffusion.models.backbones import CLIP_VIT_L14, SD15
from dreamdiffusion.signal import N_CHANS, resample_window

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
ADDRESSING = ("auto", "single", "all")
TRIAL_KEYS = ("eeg", "label", "image", "subject")
NONFINITE = ("drop", "error")  # what the data module does with trials whose EEG window holds NaN/Inf


# ------------------------------------------------------------------------------------------ files


@dataclass
class EEGFile:
    """The contents of ``eeg_5_95_std.pth``, checked."""

    path: Path
    trials: list[dict]
    labels: list[str]
    images: list[str]


def load_eeg_file(path: str | os.PathLike) -> EEGFile:
    """Read and check ``eeg_5_95_std.pth``: keys, EEG rank and channel count, label/image ranges."""
    path = Path(path)
    content = load_plain(path, "ImageNet-EEG file")
    fix = "an ImageNet-EEG EEG file is a dict with 'dataset', 'labels' and 'images' (see data/README.md)"
    if not isinstance(content, dict):
        raise ValueError(f"{path} holds a {type(content).__name__}, not a dict; {fix}")
    missing = [k for k in ("dataset", "labels", "images") if k not in content]
    if missing:
        raise KeyError(f"{path} lacks key(s) {', '.join(repr(k) for k in missing)} (it has {sorted(map(str, content))}); {fix}")
    trials, labels, images = content["dataset"], list(content["labels"]), list(content["images"])
    if not isinstance(trials, list) or not trials:
        length = len(trials) if hasattr(trials, "__len__") else "?"
        raise ValueError(f"{path}: 'dataset' must be a non-empty list of trials, got {type(trials).__name__} of length {length}")
    for i, trial in enumerate(trials):
        where = f"{path}: dataset[{i}]"
        if not isinstance(trial, dict):
            raise ValueError(f"{where} is a {type(trial).__name__}, not a dict with keys {', '.join(TRIAL_KEYS)}")
        absent = [k for k in TRIAL_KEYS if k not in trial]
        if absent:
            raise KeyError(f"{where} lacks key(s) {', '.join(repr(k) for k in absent)}; a trial is a dict with {', '.join(TRIAL_KEYS)}")
        eeg = trial["eeg"]
        if not isinstance(eeg, torch.Tensor):
            raise ValueError(f"{where}['eeg'] is a {type(eeg).__name__}, not a tensor [channels, samples]")
        if eeg.ndim != 2 or eeg.shape[0] != N_CHANS:
            raise ValueError(
                f"{where}['eeg'] has shape {list(eeg.shape)}; expected [{N_CHANS} channels, samples] "
                f"(rank 2, {N_CHANS} channels first)"
            )
        if not 0 <= int(trial["label"]) < len(labels):
            raise ValueError(f"{where}['label'] = {trial['label']} is outside 0..{len(labels) - 1} (the file's 'labels')")
        if not 0 <= int(trial["image"]) < len(images):
            raise ValueError(f"{where}['image'] = {trial['image']} is outside 0..{len(images) - 1} (the file's 'images')")
    return EEGFile(path, trials, [str(x) for x in labels], [str(x) for x in images])


def load_split_file(path: str | os.PathLike, split_index: int) -> dict[str, list[int]]:
    """Split ``split_index`` of a ``block_splits_by_image_*.pth`` file: ``{"train", "val", "test": [int]}``."""
    path = Path(path)
    content = load_plain(path, "ImageNet-EEG split file")
    fix = "a split file is a dict {'splits': [{'train': [...], 'val': [...], 'test': [...]}, ...]}"
    if not isinstance(content, dict) or "splits" not in content:
        have = sorted(map(str, content)) if isinstance(content, dict) else type(content).__name__
        raise KeyError(f"{path} lacks key 'splits' (it has {have}); {fix}")
    splits = content["splits"]
    if not isinstance(splits, list) or not 0 <= split_index < len(splits):
        n = len(splits) if isinstance(splits, list) else 0
        raise IndexError(f"split_index {split_index} is out of range: {path} holds {n} split(s) (0..{n - 1})")
    split = splits[split_index]
    absent = [k for k in SPLITS if not isinstance(split, dict) or k not in split]
    if absent:
        raise KeyError(f"{path}: splits[{split_index}] lacks key(s) {', '.join(repr(k) for k in absent)}; {fix}")
    return {k: [int(i) for i in split[k]] for k in SPLITS}


def resolve_addressing(splits_path: str | os.PathLike, split_addressing: str) -> str:
    """``"single"`` or ``"all"``: as configured, or read from the split file's name when ``"auto"``."""
    if split_addressing not in ADDRESSING:
        raise ValueError(f"split_addressing={split_addressing!r}; use one of {', '.join(ADDRESSING)}")
    if split_addressing != "auto":
        return split_addressing
    name = Path(splits_path).name
    hits = [a for a in ("single", "all") if f"_{a}" in name]
    if len(hits) != 1:
        raise ValueError(
            f"split_addressing='auto' cannot tell from the name {name!r} whether its indices address one subject's "
            "trials or the whole dataset list; set split_addressing to 'single' (indices into one subject's trials, "
            "like block_splits_by_image_single.pth) or 'all' (indices into the whole list, like ..._all.pth)"
        )
    return hits[0]


# ------------------------------------------------------------------------------------- selection


@dataclass
class Selection:
    """Trials of each split after addressing, subject filter and length rule (positions in ``dataset``)."""

    positions: dict[str, list[int]]
    dropped_by_length: dict[str, int] = field(default_factory=dict)
    dropped_short_for_window: dict[str, int] = field(default_factory=dict)
    excluded_by_image: dict[str, int] = field(default_factory=dict)
    nonfinite: dict[str, list[int]] = field(default_factory=dict)  # dropped: NaN/Inf in the EEG window

    def nonfinite_listing(self, eeg: EEGFile, limit: int | None = 5) -> str:
        """``trial 17 (subject 4, train), ...``: the trials dropped for NaN/Inf (the first ``limit``)."""
        items = [(p, name) for name in SPLITS for p in self.nonfinite.get(name, [])]
        shown = ", ".join(f"trial {p} (subject {int(eeg.trials[p]['subject'])}, {name})" for p, name in items[:limit])
        return shown + (f" and {len(items) - limit} more" if limit is not None and len(items) > limit else "")


def select_trials(
    eeg: EEGFile,
    split: dict[str, list[int]],
    splits_path: str | os.PathLike,
    addressing: str,
    subject: int = 0,
    min_length: int = 450,
    max_length: int = 600,
    window_stop: int = 460,
    exclude_images: list[str] | tuple[str, ...] = (),
    window_start: int = 20,
) -> Selection:
    """Which trials each split holds. Indices out of range, and a subject without trials, are errors.

    ``exclude_images`` names pictures whose trials are left out on purpose (e.g. an image that cannot
    be repaired); each name must be one of the file's ``images``. Trials whose EEG window (samples
    ``window_start..window_stop``; only the window's own samples count) holds NaN or Inf are left out
    and listed in ``Selection.nonfinite``: training would stop on them mid-epoch.
    """
    subjects = [int(t["subject"]) for t in eeg.trials]
    unknown = sorted(set(exclude_images) - set(eeg.images))
    if unknown:
        raise ValueError(f"exclude_images names {unknown}, which are not in the 'images' list of {eeg.path}; fix the names")
    excluded = {i for i, name in enumerate(eeg.images) if name in set(exclude_images)}
    present = sorted(set(subjects))
    if subject != 0 and subject not in present:
        raise ValueError(
            f"subject {subject} has no trials in {eeg.path} (subjects present: {present}); set subject to one of them or 0 for all"
        )
    if addressing == "single":
        if subject == 0:
            raise ValueError(
                f"{splits_path} uses 'single' addressing (indices into ONE subject's trials), so it needs a subject: "
                f"set subject to one of {present} (subject 4 is the paper's), or use the _all split file for all subjects"
            )
        address = [i for i, s in enumerate(subjects) if s == subject]
        what = f"subject {subject}'s {len(address)} trials"
    elif addressing == "all":
        address = list(range(len(eeg.trials)))
        what = f"the {len(address)} trials of {eeg.path}"
    else:
        raise ValueError(f"addressing must be 'single' or 'all', got {addressing!r}")

    selection = Selection({})
    for name in SPLITS:
        bad = [i for i in split[name] if not 0 <= i < len(address)]
        if bad:
            raise IndexError(
                f"{splits_path}: {name} index {bad[0]} is out of range for {addressing!r} addressing "
                f"({len(bad)} such indices; valid 0..{len(address) - 1}, {what}). Check split_addressing "
                "and subject, or the split file"
            )
        positions = [address[i] for i in split[name]]
        if addressing == "all" and subject != 0:
            positions = [p for p in positions if subjects[p] == subject]
        kept = [p for p in positions if int(eeg.trials[p]["image"]) not in excluded]
        selection.excluded_by_image[name] = len(positions) - len(kept)
        positions = kept
        lengths = [int(eeg.trials[p]["eeg"].shape[1]) for p in positions]
        in_rule = [min_length <= n <= max_length for n in lengths]
        kept = [p for p, ok, n in zip(positions, in_rule, lengths, strict=True) if ok and n >= window_stop]
        finite = [bool(torch.isfinite(eeg.trials[p]["eeg"][:, window_start:window_stop]).all()) for p in kept]
        selection.nonfinite[name] = [p for p, ok in zip(kept, finite, strict=True) if not ok]
        selection.positions[name] = [p for p, ok in zip(kept, finite, strict=True) if ok]
        selection.dropped_by_length[name] = in_rule.count(False)
        selection.dropped_short_for_window[name] = sum(ok and n < window_stop for ok, n in zip(in_rule, lengths, strict=True))
    return selection


def empty_split_errors(selection: Selection, splits_path, subject: int, split_index: int) -> list[str]:
    """One message per split left without trials."""
    return [
        f"the {name} split of {splits_path} (split_index {split_index}, subject {subject or 'all'}) holds no trials "
        f"after filtering ({selection.dropped_by_length[name]} dropped by the length rule, "
        f"{selection.excluded_by_image.get(name, 0)} by exclude_images, {len(selection.nonfinite.get(name, []))} for NaN/Inf "
        "in the EEG window); check subject, split_index, split_addressing, "
        "min_length/max_length and exclude_images"
        for name in SPLITS
        if not selection.positions[name]
    ]


def nonfinite_message(selection: Selection, eeg: EEGFile, window: tuple[int, int], setting: str) -> str | None:
    """What to tell the user about trials left out for NaN/Inf (``None`` when there are none).

    ``setting`` is the data module's ``nonfinite_trials``: ``"drop"`` (a warning) or ``"error"``.
    """
    n = sum(len(v) for v in selection.nonfinite.values())
    if not n:
        return None
    what = (f"{eeg.path}: {n} trial(s) hold NaN or Inf in their EEG window (samples {window[0]}..{window[1]}): "
            f"{selection.nonfinite_listing(eeg)}")
    if setting == "error":
        return (f"{what}. Repair them in the file, leave them out with data.init_args.nonfinite_trials: drop, "
                "or exclude their images with exclude_images")
    return f"{what}; left out (data.init_args.nonfinite_trials: drop); `dreamdiffusion data check-imagenet-eeg` lists them all"


# --------------------------------------------------------------------------------------- dataset


def cut_windows(trials: list[dict], start: int, stop: int, n_times: int, chunk: int = 256) -> torch.Tensor:
    """EEG windows ``[N, 128, n_times]`` float32: samples ``start..stop`` of each trial, resampled.

    Resampled in chunks of ``chunk`` trials so memory holds the output plus one chunk, not two copies
    of the whole dataset.
    """
    out = torch.empty(len(trials), N_CHANS, n_times)
    for first in range(0, len(trials), chunk):
        part = torch.stack([t["eeg"][:, start:stop].float() for t in trials[first : first + chunk]])
        out[first : first + len(part)] = resample_window(part, n_times)
    return out



class PairedEEGImageDataset(Dataset):
    """EEG windows and their pictures for one split; items are dicts (see the module docstring).

    ``windows [N, 128, n_times]`` are already cut and resampled; ``augment_p`` is 0 outside training.
    ``cached`` maps a field name (``clip_embeds``, ``latent_mean``, ``latent_std``) to a tensor with one
    row per name of ``cached_names``.
    """

    def __init__(
        self,
        windows: torch.Tensor,
        positions: list[int],
        labels: list[int],
        subjects: list[int],
        image_names: list[str],
        image_paths: dict[str, Path],
        image_size: int,
        clip_processor,
        augment_p: float = 0.0,
        crop_fraction: float = 0.8,
        cached: dict[str, torch.Tensor] | None = None,
        cached_names: list[str] | None = None,
    ) -> None:
        self.windows = windows
        self.positions = torch.as_tensor(positions, dtype=torch.long)
        self.labels = torch.as_tensor(labels, dtype=torch.long)
        self.subjects = torch.as_tensor(subjects, dtype=torch.long)
        self.image_names = image_names
        self.image_paths = image_paths
        self.image_size = image_size
        self.clip_processor = clip_processor
        self.augment_p = augment_p
        self.crop_fraction = crop_fraction
        self.cached = cached or {}
        self.cache_row = {n: i for i, n in enumerate(cached_names or [])}

    def __len__(self) -> int:
        return len(self.positions)

    def trial_info(self, i: int) -> dict:
        """Item ``i`` without its picture: ``eeg``, ``label``, ``subject``, ``image_name``, ``index`` (no file is
        read; stage 3 uses it to pair trials across the whole split)."""
        return {
            "eeg": self.windows[i],
            "label": self.labels[i],
            "subject": self.subjects[i],
            "image_name": self.image_names[i],
            "index": self.positions[i],
        }

    def __getitem__(self, i: int) -> dict:
        name = self.image_names[i]
        picture = read_image(self.image_paths[name])
        shown = picture
        if self.augment_p > 0 and float(torch.rand(())) < self.augment_p:
            shown = random_crop(picture, self.crop_fraction)
        item = {
            **self.trial_info(i),
            "image": to_tensor(shown, self.image_size),
            "clip_pixels": self.clip_processor(images=picture, return_tensors="pt").pixel_values[0].float(),
        }
        for key, table in self.cached.items():
            item[key] = table[self.cache_row[name]]
        return item


# ---------------------------------------------------------------------------------- data module


class ImageNetEEGDataModule(L.LightningDataModule):
    """Paired EEG–image batches of ImageNet-EEG (or its synthetic twin) for stages 2 and 3.

    Parameters
    ----------
    eeg_path, splits_path, image_root
        ``eeg_5_95_std.pth``, a ``block_splits_by_image_*.pth`` file, the folder of ``<wnid>/<name>.JPEG``.
    subject
        1..6 keeps one subject (4 is the paper's); 0 keeps all (only with ``all`` addressing).
    split_index
        Which split of the split file (0 is the one used in the literature).
    split_addressing
        ``auto`` | ``single`` | ``all``: what a split index addresses (module docstring).
    image_size
        Side S of ``image`` in pixels (512 for SD-1.5; the tiny demo model uses 64).
    clip_model, sd_model, local_files_only
        Folder or hub id of the CLIP image tower (its processor makes ``clip_pixels``; its embeddings
        fill the cache) and of Stable Diffusion (its VAE fills the latent cache only).
    cache_clip_embeds, cache_latents, cache_dir, cache_device, cache_batch_size
        Per-image caches computed once in :meth:`prepare_data` (default folder ``<eeg file's folder>/cache``).
        Latents are of the un-augmented picture, so ``cache_latents`` requires ``augment_p=0``.
    augment_p, crop_fraction
        Train-only augmentation of ``image``: with probability ``augment_p`` a random crop of
        ``crop_fraction`` of each side, then resize to S.
    min_length, max_length, window_start, window_stop, n_times
        Length rule and EEG window in samples (1 kHz), and samples after resampling.
    batch_size, num_workers, seed
        Items per batch (per device), DataLoader workers, seed of the training order (drawn from
        ``(seed, epoch)``, so a run resumed mid-epoch replays the same order).
    exclude_images
        Image names whose trials are left out on purpose (listed, counted by ``check-imagenet-eeg``).
    nonfinite_trials
        Trials whose EEG window holds NaN or Inf: ``"drop"`` leaves them out with a warning that names
        them (counted in ``selection.nonfinite``); ``"error"`` refuses the file at set-up.
    """

    def __init__(
        self,
        eeg_path: str,
        splits_path: str,
        image_root: str,
        subject: int = 0,
        split_index: int = 0,
        split_addressing: str = "auto",
        image_size: int = 512,
        clip_model: str = CLIP_VIT_L14,
        sd_model: str = SD15,
        cache_clip_embeds: bool = False,
        cache_latents: bool = False,
        cache_dir: str | None = None,
        cache_device: str | None = None,
        cache_batch_size: int = 16,
        local_files_only: bool = False,
        augment_p: float = 0.5,
        crop_fraction: float = 0.8,
        batch_size: int = 25,
        num_workers: int = 4,
        seed: int = 0,
        min_length: int = 450,
        max_length: int = 600,
        window_start: int = 20,
        window_stop: int = 460,
        n_times: int = 512,
        exclude_images: list[str] | None = None,
        nonfinite_trials: str = "drop",
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if nonfinite_trials not in NONFINITE:
            raise ValueError(f"nonfinite_trials={nonfinite_trials!r}; use one of {', '.join(NONFINITE)}")
        self.addressing = resolve_addressing(splits_path, split_addressing)
        if self.addressing == "single" and subject == 0:
            raise ValueError(
                f"{splits_path} uses 'single' addressing (indices into ONE subject's trials), so subject=0 (all) "
                "cannot be read from it: set subject to 1..6 (4 is the paper's) or use block_splits_by_image_all.pth"
            )
        if not 0.0 <= augment_p <= 1.0:
            raise ValueError(f"augment_p={augment_p} is not a probability in [0, 1]")
        if not 0.0 < crop_fraction <= 1.0:
            raise ValueError(f"crop_fraction={crop_fraction} must be in (0, 1]")
        if not 0 <= window_start < window_stop:
            raise ValueError(f"EEG window {window_start}..{window_stop} samples is empty or negative")
        if cache_latents and augment_p > 0:
            raise ValueError(
                f"cache_latents=True caches latents of the un-augmented picture, but augment_p={augment_p} would crop "
                "the training images: the cache would silently drop that augmentation. Set augment_p=0 or cache_latents=False"
            )
        if cache_latents and image_size % 8:
            raise ValueError(f"image_size={image_size} must be a multiple of 8 (the VAE down-samples 8x) to cache latents")
        self.datasets: dict[str, PairedEEGImageDataset] = {}  # "train", "val", "test" after setup
        self.selection: Selection | None = None  # what setup kept and dropped
        self.labels: list[str] = []  # class index -> WordNet id, after setup

    # -- shared steps -------------------------------------------------------------------------------
    def _select(self) -> tuple[EEGFile, Selection, dict[str, Path]]:
        """Load both files, select the trials and find their pictures (errors for anything missing)."""
        hp = self.hparams
        eeg = load_eeg_file(hp.eeg_path)
        split = load_split_file(hp.splits_path, hp.split_index)
        selection = select_trials(
            eeg, split, hp.splits_path, self.addressing, hp.subject, hp.min_length, hp.max_length, hp.window_stop,
            hp.exclude_images or (), hp.window_start,
        )
        nonfinite = nonfinite_message(selection, eeg, (hp.window_start, hp.window_stop), hp.nonfinite_trials)
        if nonfinite and hp.nonfinite_trials == "error":
            raise ValueError(nonfinite)
        if nonfinite:
            log.warning("%s", nonfinite)
        errors = empty_split_errors(selection, hp.splits_path, hp.subject, hp.split_index)
        if errors:
            raise ValueError("; ".join(errors))
        names = sorted({eeg.images[int(eeg.trials[p]["image"])] for ps in selection.positions.values() for p in ps})
        found, missing = find_images(hp.image_root, names)
        if missing:
            raise missing_images_error(hp.image_root, missing)
        return eeg, selection, found

    def _cache_dir(self) -> Path:
        return Path(self.hparams.cache_dir) if self.hparams.cache_dir else Path(self.hparams.eeg_path).parent / "cache"

    def _cache_specs(self) -> list[tuple[dict, Callable[[dict[str, Path]], dict[str, torch.Tensor]]]]:
        """``(model key, compute(images))`` of each enabled cache."""
        hp = self.hparams
        device = hp.cache_device or ("cuda" if torch.cuda.is_available() else "cpu")
        specs = []
        if hp.cache_clip_embeds:
            specs.append((caches.clip_model_key(hp.clip_model), lambda imgs: caches.compute_clip_embeds(
                hp.clip_model, imgs, hp.local_files_only, device, hp.cache_batch_size)))
        if hp.cache_latents:
            specs.append((caches.vae_model_key(hp.sd_model, hp.image_size), lambda imgs: caches.compute_vae_latents(
                hp.sd_model, imgs, hp.image_size, hp.local_files_only, device, hp.cache_batch_size)))
        return specs

    # -- Lightning hooks ----------------------------------------------------------------------------
    def prepare_data(self) -> None:
        """Compute the enabled caches once (a fresh cache of the same model and data is reused)."""
        specs = self._cache_specs()
        if not specs:
            return
        _, _, images = self._select()
        data = caches.data_state(self.hparams.eeg_path, images)
        for key, compute in specs:
            with progress.quiet(progress.quiet_for(self.trainer)):  # the Trainer's enable_progress_bar governs the bar
                folder, hit = caches.ensure_cache(self._cache_dir(), key, data, functools.partial(compute, images))
            log.info("%s cache %s: %s", key["kind"], folder, "reused" if hit else "computed")

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        from transformers import CLIPImageProcessor

        from dreamdiffusion.models.backbones import _check_local

        hp = self.hparams
        eeg, selection, images = self._select()
        self.selection = selection
        _check_local(hp.clip_model, ["preprocessor_config.json"], "CLIP")
        processor = CLIPImageProcessor.from_pretrained(hp.clip_model, local_files_only=hp.local_files_only)
        cached: dict[str, torch.Tensor] = {}
        if self._cache_specs():
            data = caches.data_state(hp.eeg_path, images)
            for key, _ in self._cache_specs():
                cached.update(caches.load_cache(self._cache_dir(), key, data))
        for name in SPLITS:
            positions = selection.positions[name]
            trials = [eeg.trials[p] for p in positions]
            image_names = [eeg.images[int(t["image"])] for t in trials]
            self.datasets[name] = PairedEEGImageDataset(
                windows=cut_windows(trials, hp.window_start, hp.window_stop, hp.n_times),
                positions=positions,
                labels=[int(t["label"]) for t in trials],
                subjects=[int(t["subject"]) for t in trials],
                image_names=image_names,
                image_paths=images,
                image_size=hp.image_size,
                clip_processor=processor,
                augment_p=hp.augment_p if name == "train" else 0.0,
                crop_fraction=hp.crop_fraction,
                cached=cached,
                cached_names=sorted(images),
            )
        self.labels = eeg.labels
        log.info("ImageNet-EEG: %s", {k: len(v) for k, v in self.datasets.items()})

    def _loader(self, name: str) -> DataLoader:
        """An un-shuffled loader (val, test, predict)."""
        return eval_loader(self.datasets[name], self.hparams.batch_size, self.hparams.num_workers)

    def train_dataloader(self) -> DataLoader:
        # Shuffled from (seed, epoch) and resumable mid-epoch, like every training loader of the project.
        return train_loader(self.datasets["train"], self.hparams.batch_size, self.hparams.seed, self.hparams.num_workers)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test")
