"""Unpaired EEG for stage 1 (masked signal modeling) from MOABB datasets, preprocessed once.

``MOABBDataModule`` turns MOABB recordings into ``[128, 512]`` float32 windows:

* ``prepare_data`` (global rank 0) downloads through MOABB's own cache (``MNE_DATA``) when needed,
  preprocesses each recording with :func:`dreamdiffusion.signal.preprocess_raw` and writes its windows
  once to the shard cache (:mod:`dreamdiffusion.data.cache`) in the recording's own channel count;
  an interrupted build resumes subject by subject.
* ``setup`` (every rank) reads the build's manifest and opens the shards as read-only memory maps;
  channels are harmonised to 128 on access, so memory does not grow with the corpus.

Train and validation are split **by subject**, deterministically from ``seed``; the split is recorded
in the manifest.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from dreamdiffusion import progress
from dreamdiffusion.atomic import remove_stale_temporaries
from dreamdiffusion.data.cache import CacheError, ShardCache, check_writable, open_shard, source_dir, stable_hash
from dreamdiffusion.data.loaders import eval_loader, train_loader
from dreamdiffusion.data.moabb_catalog import load_pinned
from dreamdiffusion.signal import N_CHANS, Preprocessing, Windows, harmonise_channels, montage_index, preprocess_raw, replication_index

log = logging.getLogger(__name__)
# A temporary in a shared cache untouched this long belongs to a dead build, whichever machine wrote it.
STALE_SECONDS = 3600


def make_dataset(name: str, kwargs: dict | None = None):
    """Instantiate a dataset by MOABB class name (``"BNCI2014_001"``, ``"FakeDataset"``) or by class path
    (``"dreamdiffusion.data.imagenet_eeg_trials.ImageNetEEGTrials"``: any class with MOABB's
    ``subject_list`` / ``get_data`` interface)."""
    import importlib

    import moabb.datasets

    if "." in name:
        module, _, attr = name.rpartition(".")
        try:
            cls = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError):
            raise ValueError(f"{name!r} is not an importable class; give a MOABB dataset name or a full class path") from None
    else:
        cls = getattr(moabb.datasets, name, None)
    if cls is None or not isinstance(cls, type):
        raise ValueError(
            f"{name!r} is not a dataset class of moabb.datasets; `dreamdiffusion data moabb-list` "
            "prints the names this project selects"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return cls(**(kwargs or {}))


def resolve_datasets(datasets: list[str] | str, exclude: list[str] | None = None) -> list[str]:
    """Dataset names: a list, or the path of a pinned list (``configs/data/moabb_paper.yaml``), minus ``exclude``."""
    names = load_pinned(datasets) if isinstance(datasets, (str, os.PathLike)) else list(datasets)
    unknown = sorted(set(exclude or ()) - set(names))
    if unknown:
        raise ValueError(f"exclude names datasets that are not in the list: {unknown}")
    return [n for n in names if n not in set(exclude or ())]


def mne_data_path() -> Path:
    """MOABB's download cache: ``MNE_DATA`` (environment or MNE config), else ``~/mne_data``."""
    import mne

    return Path(mne.get_config("MNE_DATA") or Path.home() / "mne_data")


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


class SubjectLoadError(RuntimeError):
    """MOABB could not load (or download) one subject; the message names dataset, subject and MNE_DATA."""


def moabb_recordings(dataset, name: str, subject: int, params: Preprocessing) -> Iterator[tuple[str, str, Windows | Exception]]:
    """``(session, run, windows)`` of one subject; a recording that cannot be preprocessed yields its error.

    MOABB loads (and, where the data is missing, downloads into ``MNE_DATA``) the whole subject at once;
    a failure there raises :class:`SubjectLoadError`.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            sessions = dataset.get_data([subject])[subject]
    except Exception as error:  # MOABB raises anything from HTTP errors to OSError
        raise SubjectLoadError(
            f"MOABB could not load {name} subject {subject} ({type(error).__name__}: {error}); "
            f"MOABB's cache is MNE_DATA={mne_data_path()}. Download it on a machine with internet "
            "(`make data-moabb`), check that MNE_DATA is writable and points to the same folder here, "
            "or exclude the dataset"
        ) from error
    for session, runs in sessions.items():
        for run, raw in runs.items():
            source = f"{name} subject {subject} session {session} run {run}"
            try:
                yield str(session), str(run), preprocess_raw(raw, params, source)
            except ValueError as error:
                yield str(session), str(run), error


def download(
    names: list[str],
    dataset_kwargs: dict[str, dict] | None = None,
    subjects: dict[str, list[int]] | None = None,
    accept: bool = False,
) -> list[dict]:
    """Fetch datasets into MOABB's cache (``MNE_DATA``), subject by subject; return the failures.

    A failure (network, licence not accepted, disk) is recorded with the dataset, the subject and the
    cache path, and the other subjects and datasets go on. ``accept`` accepts licence terms where a
    dataset asks for it (read them first).
    """
    root = check_writable(mne_data_path(), "MNE_DATA", "set MNE_DATA to a writable folder, e.g. `export MNE_DATA=$PWD/data/mne`")
    failures = []
    datasets = {name: make_dataset(name, (dataset_kwargs or {}).get(name)) for name in names}
    todo = [(name, subject) for name in names for subject in (subjects or {}).get(name, datasets[name].subject_list)]
    with progress.bar(todo, desc="MOABB download", unit="subject") as bar:
        for name, subject in bar:
            bar.set_postfix_str(f"{name} subject {subject}", refresh=False)
            try:
                datasets[name].download(subject_list=[subject], accept=accept, update_path=False, verbose="error")
            except Exception as error:  # noqa: BLE001 - every failure is reported, the rest goes on
                hint = " (re-run with --accept-licences after reading its licence)" if "accept" in str(error).lower() else ""
                log.error("download of %s subject %s into %s failed: %s%s", name, subject, root, error, hint)
                failures.append({"dataset": name, "subject": int(subject), "cache": str(root),
                                 "error": f"{type(error).__name__}: {error}{hint}"})
    return failures


@dataclass
class Recording:
    """Preprocessed windows of one recording ``[N, C_source, n_times]`` and its source channel names."""

    dataset: str
    subject: int
    session: str
    run: str
    windows: np.ndarray
    ch_names: list[str]


class Shard:
    """One cached recording; ``windows`` is a read-only memory map opened on first use in each process."""

    def __init__(self, root: Path, entry: dict):
        self.root, self.entry = root, entry
        self.ch_names: list[str] = entry["ch_names"]
        self._windows: np.ndarray | None = None

    @property
    def windows(self) -> np.ndarray:
        if self._windows is None:
            self._windows = open_shard(self.root, self.entry)
        return self._windows

    def __len__(self) -> int:
        return int(self.entry["n_windows"])

    def __getstate__(self) -> dict:
        # A DataLoader worker started by spawn gets the path, never a copy of the mapped data.
        return {**self.__dict__, "_windows": None}


class WindowDataset(Dataset):
    """Windows of many recordings, harmonised to ``n_chans`` channels on access: ``[n_chans, n_times]`` float32.

    ``recordings``: :class:`Shard` (memory-mapped cache) or :class:`Recording` (in memory) objects.
    """

    def __init__(self, recordings: list[Shard | Recording], n_chans: int = N_CHANS, channel_map: str | list[str] = "replicate"):
        self.recordings = recordings
        self.index = [
            replication_index(len(r.ch_names), n_chans) if channel_map == "replicate" else montage_index(r.ch_names, channel_map)
            for r in recordings
        ]
        counts = np.array([len(r) if isinstance(r, Shard) else len(r.windows) for r in recordings], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(counts)])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, i: int) -> torch.Tensor:
        r = int(np.searchsorted(self.offsets, i, side="right") - 1)
        # A copy of one window [C, n_times] (the memory map itself is read-only and stays on disk).
        window = np.array(self.recordings[r].windows[i - self.offsets[r]])
        return harmonise_channels(window, self.index[r])

    def __getitems__(self, indices: list[int]) -> torch.Tensor:
        """A whole batch ``[B, n_chans, n_times]`` at once (the DataLoader uses this): one sorted read per
        recording, cast to float32 by torch (several times faster than numpy for a float16 cache) with the
        channels replicated."""
        indices = np.asarray(indices, dtype=np.int64)
        owner = np.searchsorted(self.offsets, indices, side="right") - 1
        out = None
        for r in np.unique(owner):
            positions = np.nonzero(owner == r)[0]
            local = indices[positions] - self.offsets[r]
            order = np.argsort(local, kind="stable")
            block = harmonise_channels(torch.from_numpy(self.recordings[r].windows[local[order]]), self.index[r])
            if out is None:
                out = torch.empty((len(indices), *block.shape[1:]), dtype=torch.float32)
                if torch.utils.data.get_worker_info() is not None:
                    out.share_memory_()  # filled in place, then handed to the main process without a copy
            out[torch.from_numpy(positions[order])] = block
        return out


def collate_windows(batch: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
    """Batches from :meth:`WindowDataset.__getitems__` are already stacked; lists are stacked here."""
    return batch if isinstance(batch, torch.Tensor) else torch.stack(batch)


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
