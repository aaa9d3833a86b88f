"""MOABB datasets as sources of recordings: found by name, downloaded into ``MNE_DATA``, read subject by subject.

A source is a MOABB dataset class (``"BNCI2014_001"``, ``"FakeDataset"``) or any class with MOABB's
``subject_list`` / ``get_data`` interface named by its class path
(``"dreamdiffusion.data.imagenet_eeg_trials.ImageNetEEGTrials"``). :func:`moabb_recordings` yields one subject's
recordings preprocessed by :func:`dreamdiffusion.signal.preprocess_raw` (windows ``[N, C_source, n_times]``);
:class:`~dreamdiffusion.data.moabb.MOABBDataModule` writes them to the shard cache.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

from dreamdiffusion import progress
from dreamdiffusion.data.cache import check_writable
from dreamdiffusion.data.moabb_catalog import load_pinned
from dreamdiffusion.signal import Preprocessing, Windows, preprocess_raw

log = logging.getLogger(__name__)


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
