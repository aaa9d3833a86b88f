"""Unpaired EEG for stage 1 (masked signal modeling) from MOABB datasets, preprocessed once.

``MOABBDataModule`` turns MOABB recordings into ``[128, 512]`` float32 windows:

* ``prepare_data`` (global rank 0) reads each subject through MOABB (:mod:`dreamdiffusion.data.moabb_sources`:
  downloads into MOABB's own cache, ``MNE_DATA``, when needed), preprocesses each recording with
  :func:`dreamdiffusion.signal.preprocess_raw` and writes its windows once to the shard cache
  (:mod:`dreamdiffusion.data.cache`) in the recording's own channel count; an interrupted build resumes
  subject by subject.
* ``setup`` (every rank) reads the build's manifest and opens the shards as read-only memory maps
  (:mod:`dreamdiffusion.data.moabb_windows`); channels are harmonised to 128 on access, so memory does not
  grow with the corpus.

Train and validation are split **by subject**, deterministically from ``seed``; the split is recorded
in the manifest.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import lightning as L
import numpy as np
from torch.utils.data import DataLoader

from dreamdiffusion import progress
from dreamdiffusion.atomic import remove_stale_temporaries
from dreamdiffusion.data.cache import CacheError, ShardCache, check_writable, source_dir, stable_hash
from dreamdiffusion.data.loaders import eval_loader, train_loader
from dreamdiffusion.data.moabb_sources import SubjectLoadError, make_dataset, moabb_recordings, resolve_datasets
from dreamdiffusion.data.moabb_windows import Shard, WindowDataset, collate_windows
from dreamdiffusion.signal import N_CHANS, Preprocessing

log = logging.getLogger(__name__)
# A temporary in a shared cache untouched this long belongs to a dead build, whichever machine wrote it.
STALE_SECONDS = 3600


def split_subjects(keys: list[tuple[str, int]], val_fraction: float, seed: int) -> tuple[list, list]:
    """Deterministic split of ``(dataset, subject)`` pairs into train and val (at least one each)."""
    if len(keys) < 2:
        raise ValueError(
            f"a train/val split by subject needs at least 2 subjects, got {len(keys)}; add subjects or datasets"
        )
    order = np.random.default_rng(seed).permutation(len(keys))
    n_val = min(max(1, int(round(val_fraction * len(keys)))), len(keys) - 1)
    val = sorted(keys[i] for i in order[:n_val])
    train = sorted(keys[i] for i in order[n_val:])
    return train, val


class MOABBDataModule(L.LightningDataModule):
    """EEG windows ``[batch, 128, 512]`` (standardised per channel, per recording) from MOABB datasets.

    Parameters
    ----------
    datasets
        MOABB dataset class names (``["FakeDataset"]``), or the path of a pinned list
        (``configs/data/moabb_paper.yaml``, relative to the working directory).
    dataset_kwargs
        Constructor arguments per dataset name (``FakeDataset`` takes ``channels``, ``sfreq``, ...).
    subjects
        Optional subset of subjects per dataset name; all of the dataset's subjects otherwise.
    exclude
        Names to drop from ``datasets`` (e.g. one whose download failed).
    val_fraction, seed
        Share of subjects held out for validation and the seed of that split.
    batch_size, num_workers
        Windows per batch (per device) and DataLoader worker processes.
    l_freq, h_freq, window_seconds, n_times, window_stride_seconds, flat_threshold
        Preprocessing (:class:`dreamdiffusion.signal.Preprocessing`): band-pass in Hz, window length
        in seconds, samples per window after resampling, seconds from one window's start to the next
        (``None``: back to back; larger values thin a corpus of long recordings), std (standardised
        units) below which a window is flat.
    n_chans, channel_map
        Channels the model sees, and how a recording's channels become them: ``"replicate"`` (the
        paper) or a list of electrode names to map by montage. Applied at load time (not on disk).
    cache_dir, dtype, verify
        Shard cache folder (never inside ``MNE_DATA``), storage type (``float16``/``float32``) and how
        reused shards are checked (``checksum`` or ``size``).
    on_bad_recording
        ``"skip"``: a recording that cannot be used (too short, no EEG channels, sampling rate too
        low, mixed units, every window NaN/Inf/flat) is skipped and counted in the manifest;
        ``"error"``: it stops the build.

    MOABB downloads what is missing from ``MNE_DATA`` while building; on compute nodes without
    internet, fetch first on a login node (``make data-moabb``, which also accepts licences).
    """

    def __init__(
        self,
        datasets: list[str] | str = ["FakeDataset"],  # noqa: B006 - read, never mutated; the CLI shows the list
        dataset_kwargs: dict[str, dict] | None = None,
        subjects: dict[str, list[int]] | None = None,
        exclude: list[str] | None = None,
        val_fraction: float = 0.2,
        seed: int = 0,
        batch_size: int = 100,
        num_workers: int = 0,
        l_freq: float = 5.0,
        h_freq: float = 95.0,
        window_seconds: float = 0.44,
        n_times: int = 512,
        window_stride_seconds: float | None = None,
        flat_threshold: float = 1e-6,
        n_chans: int = N_CHANS,
        channel_map: str | list[str] = "replicate",
        cache_dir: str = "data/moabb_cache",
        dtype: str = "float16",
        verify: str = "checksum",
        on_bad_recording: str = "skip",
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if on_bad_recording not in ("skip", "error"):
            raise ValueError(f"on_bad_recording must be 'skip' or 'error', got {on_bad_recording!r}")
        # One builder for the whole cluster: the cache lives on a shared file system.
        self.prepare_data_per_node = False
        self.preprocessing = Preprocessing(l_freq=l_freq, h_freq=h_freq, window_seconds=window_seconds,
                                           n_times=n_times, flat_threshold=flat_threshold,
                                           window_stride_seconds=window_stride_seconds)
        self.cache = ShardCache(cache_dir, self.preprocessing, dtype=dtype, verify=verify)
        self.names = resolve_datasets(datasets, exclude)
        self.train_set: WindowDataset | None = None
        self.val_set: WindowDataset | None = None

    # -- what the corpus is --------------------------------------------------------------------
    def _kwargs(self, name: str) -> dict:
        return dict((self.hparams.dataset_kwargs or {}).get(name) or {})

    def _cache_kwargs(self, name: str) -> dict:
        """The kwargs as the cache is keyed by them. A file-backed source (a class with a ``fingerprint`` of
        its files' content) has its files by name, not path: a moved run folder keeps its cache."""
        kwargs = self._kwargs(name)
        if "." not in name:
            return kwargs
        import importlib

        module, _, attr = name.rpartition(".")
        if not hasattr(getattr(importlib.import_module(module), attr, None), "fingerprint"):
            return kwargs
        return {k: Path(v).name if isinstance(v, str) and Path(v).is_file() else v for k, v in kwargs.items()}

    def _keys(self) -> list[tuple[str, int]]:
        stray = sorted(set(self.hparams.subjects or {}) - set(self.names))
        if stray:
            raise ValueError(f"`subjects` names datasets that are not in `datasets`: {stray}")
        keys = []
        for name in self.names:
            dataset = make_dataset(name, self._kwargs(name))
            wanted = (self.hparams.subjects or {}).get(name)
            available = list(dataset.subject_list)
            if wanted is not None:
                unknown = sorted(set(wanted) - set(available))
                if unknown:
                    raise ValueError(f"subjects {unknown} are not in {name} (it has {available})")
                available = [s for s in available if s in wanted]
            keys += [(name, int(s)) for s in available]
        return keys

    def manifest_key(self) -> str:
        """Hash of everything a manifest depends on: sources, subjects, preprocessing, split."""
        return stable_hash({
            "sources": [[n, self._cache_kwargs(n)] for n in self.names],
            "subjects": self.hparams.subjects,
            "params": self.preprocessing.to_dict(),
            "dtype": self.hparams.dtype,
            "val_fraction": self.hparams.val_fraction,
            "seed": self.hparams.seed,
        })

    # -- building ------------------------------------------------------------------------------
    def prepare_data(self) -> None:
        """Build (or resume, or repair) the cache for every subject, then write the manifest.

        A subject MOABB cannot load is reported with its dataset and ``MNE_DATA``; the other subjects go
        on, and the error listing all of them is raised at the end (what was built stays on disk).
        """
        keys = self._keys()
        train, val = split_subjects(keys, self.hparams.val_fraction, self.hparams.seed)
        entries, skipped, failures = [], [], []
        counts = {"subjects_reused": 0, "subjects_built": 0}
        datasets = {}
        # the Trainer's own bar setting (enable_progress_bar) also governs this one
        for name, subject in progress.bar(keys, desc="MOABB cache", unit="subject", quiet=progress.quiet_for(self.trainer)):
            kwargs = self._kwargs(name)
            if name not in datasets:
                datasets[name] = make_dataset(name, kwargs)
            cache_kwargs = self._cache_kwargs(name)
            source, source_key = source_dir(name, cache_kwargs), {"name": name, "kwargs": cache_kwargs}
            if hasattr(datasets[name], "fingerprint"):  # file-backed sources: a changed file is rebuilt
                source_key["fingerprint"] = datasets[name].fingerprint
            reuse, complete = self.cache.valid_entries(source, subject, source_key)
            if complete:
                record = self.cache.read_record(self.cache.record_path(source, subject))
                counts["subjects_reused"] += 1
            else:
                if not counts["subjects_built"] and not failures:
                    # only a build writes: a complete cache on a read-only file system is fine
                    check_writable(self.cache.root, "cache_dir", "set data.init_args.cache_dir to a writable folder")
                    # Temporaries of killed builds: this host's dead writers at once, others' after an hour
                    # (the cache may be shared by live builds on other machines).
                    remove_stale_temporaries(self.cache.root, older_than=time.time() - STALE_SECONDS, depth=3)
                try:
                    record = self.cache.build_subject(
                        source, source_key, subject,
                        moabb_recordings(datasets[name], name, subject, self.preprocessing),
                        reuse=reuse, on_bad_recording=self.hparams.on_bad_recording,
                    )
                except SubjectLoadError as error:
                    log.error("%s", error)
                    failures.append(str(error))
                    continue
                counts["subjects_built"] += 1
            entries += record["recordings"]
            skipped += [{"dataset": name, "subject": subject, **s} for s in record["skipped"]]
        if failures:
            raise SubjectLoadError(f"{len(failures)} subject(s) could not be loaded; everything else is built "
                                   f"in {self.cache.root}:\n" + "\n".join(failures))
        for name in self.names:
            if not any(e["dataset"] == name for e in entries):
                reasons = sorted({s["reason"] for s in skipped if s["dataset"] == name})
                raise ValueError(f"{name} gave no usable window ({'; '.join(reasons)[:500]}); exclude it from datasets")
        manifest = {
            "version": 1,
            "key": self.manifest_key(),
            "datasets": [{"name": n, "kwargs": self._cache_kwargs(n), "dir": source_dir(n, self._cache_kwargs(n))} for n in self.names],
            "preprocessing": self.preprocessing.to_dict(),
            "dtype": self.hparams.dtype,
            "split": {"by": "subject", "seed": self.hparams.seed, "val_fraction": self.hparams.val_fraction,
                      "train": [list(k) for k in train], "val": [list(k) for k in val]},
            "counts": {
                "recordings": len(entries),
                "windows": sum(e["n_windows"] for e in entries),
                "skipped_recordings": len(skipped),
                "dropped_nonfinite": sum(e["dropped_nonfinite"] for e in entries),
                "dropped_flat": sum(e["dropped_flat"] for e in entries),
            },
            "recordings": entries,
            "skipped": skipped,
        }
        path = self.cache.write_manifest(manifest["key"], manifest, keep_if_same=True)
        log.info("MOABB cache %s: %d windows from %d recordings (%d subjects reused, %d built, %d recordings skipped)",
                 path, manifest["counts"]["windows"], len(entries), counts["subjects_reused"],
                 counts["subjects_built"], len(skipped))
        self.manifest = manifest
        self.report = counts  # this call only: subjects reused and built (not in the manifest, which stays stable)

    # -- reading -------------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        """Open the manifest of this configuration and the train/val shards as read-only memory maps."""
        if self.train_set is not None:
            return
        manifest = self.cache.read_manifest(self.manifest_key())
        self.manifest = manifest
        root = self.cache.root
        for entry in manifest["recordings"]:
            path = root / entry["file"]
            if not path.is_file() or path.stat().st_size != entry["nbytes"]:
                raise CacheError(f"{path} is missing or changed since the manifest was written; run prepare_data() to rebuild it")
        self.split = {k: [tuple(x) for x in manifest["split"][k]] for k in ("train", "val")}
        n_chans, channel_map = self.hparams.n_chans, self.hparams.channel_map
        for split in ("train", "val"):
            keys = set(self.split[split])
            shards = [Shard(root, e) for e in manifest["recordings"] if (e["dataset"], e["subject"]) in keys]
            data = WindowDataset(shards, n_chans, channel_map)
            if len(data) == 0:
                raise ValueError(f"the {split} split holds no windows; add subjects or check the recordings' length")
            setattr(self, f"{split}_set", data)

    def train_dataloader(self) -> DataLoader:
        return train_loader(self.train_set, self.hparams.batch_size, self.hparams.seed, self.hparams.num_workers,
                            collate_fn=collate_windows)

    def val_dataloader(self) -> DataLoader:
        return eval_loader(self.val_set, self.hparams.batch_size, self.hparams.num_workers, collate_fn=collate_windows)
