"""EEG–image pairs of ImageNet-EEG (Spampinato et al., 2017) for stages 2 and 3.

The files are read and checked by :mod:`dreamdiffusion.data.imagenet_eeg_files` (formats, split addressing),
the trials of each split chosen and their EEG windows cut by :mod:`dreamdiffusion.data.imagenet_eeg_selection`
(subject, length rule, window, NaN/Inf); this module pairs the windows with their pictures
(:class:`PairedEEGImageDataset`) and serves them to Lightning (:class:`ImageNetEEGDataModule`, with its
CLIP-embedding and VAE-latent caches, :mod:`dreamdiffusion.data.embedding_cache`).

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
from collections.abc import Callable
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from dreamdiffusion import progress
from dreamdiffusion.data import embedding_cache as caches
from dreamdiffusion.data.imagenet_eeg_files import SPLITS, EEGFile, load_eeg_file, load_split_file, resolve_addressing
from dreamdiffusion.data.imagenet_eeg_selection import (
    NONFINITE,
    Selection,
    cut_windows,
    empty_split_errors,
    nonfinite_message,
    select_trials,
)
from dreamdiffusion.data.images import find_images, missing_images_error, random_crop, read_image, to_tensor
from dreamdiffusion.data.loaders import eval_loader, train_loader
from dreamdiffusion.models.backbones import CLIP_VIT_L14, SD15

log = logging.getLogger(__name__)


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
        ``auto`` | ``single`` | ``all``: what a split index addresses (:mod:`dreamdiffusion.data.imagenet_eeg_files`).
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
