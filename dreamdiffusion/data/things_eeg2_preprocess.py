"""THINGS-EEG2 preprocessed from the raw recordings, with the whitening fit on training EEG only.

:func:`preprocess_subject` builds, from one subject's raw sessions (:mod:`dreamdiffusion.data.things_eeg2_raw`),
the arrays the release's preprocessed files hold, in their layout and format, so
:class:`~dreamdiffusion.data.things_eeg2.ThingsEEG2DataModule` reads them unchanged (``eeg_dir`` = ``out``)::

    <out>/sub-XX/preprocessed_eeg_training.npy   {"preprocessed_eeg_data": [16540, 4, C, T] float64, "ch_names", "times"}
    <out>/sub-XX/preprocessed_eeg_test.npy       {"preprocessed_eeg_data": [200, 80, C, T] float64, ...}
    <out>/sub-XX/whitening.npy                   [sessions, C, C] float64: each session's Σ^(-1/2) (a plain array)
    <out>/sub-XX/preprocessing.json              the manifest: what was done, "whitening_fit": "training"

The steps are the release's (Gifford et al., 2022, NeuroImage 264:119754, and their script): channel selection
(``occipito-parietal``: the 17 O/P channels of the official files; ``all``: the 63 of NICE/ATM's variant), epochs of
−0.2…0.8 s around each onset, baseline correction, resampling to ``sfreq`` (100 Hz official, 250 Hz NICE/ATM),
target trials dropped, trials sorted by picture, multivariate noise normalisation per session
(:mod:`dreamdiffusion.data.mvnn`), the sessions merged and the repetitions shuffled with ``seed``.

One difference, the point of this module: the release averaged the **test** partition's noise covariance into
each session's whitening; here ``Σ`` of a session is fit on that session's **training** epochs alone and then
applied to both partitions. Nothing computed from test EEG reaches the training output or the whitening (a test
checks that changing the test recordings leaves both bit-identical). The held-out validation concepts are
training pictures and so take part in the fit, as every training picture does.

A session's epochs are cut, stored and whitened in chunks of ``chunk_conditions`` pictures, into memory-mapped
arrays in the output folder, so memory holds one chunk, not a subject (the 63-channel 250 Hz training file is
8.3 GB). The subject's folder is written under a temporary name and renamed when complete; writing needs twice
the output size on disk for a moment (the arrays are pickled from their memory maps).
"""

from __future__ import annotations

import json
import logging
import os
import pickle
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from dreamdiffusion.atomic import atomic_dir
from dreamdiffusion.data.mvnn import MVNN_DIMS, noise_covariance, whiten, whitening_matrix
from dreamdiffusion.data.things_eeg2_raw import (
    CHANNEL_SETS,
    EPOCH,
    RELEASE_SFREQ,
    RawSession,
    cut_epochs,
    load_raw_session,
    raw_path,
)

log = logging.getLogger(__name__)

MANIFEST = "preprocessing.json"
WHITENING = "whitening.npy"
WHITENING_FIT = "training"  # the manifest's promise: no test EEG in the whitening
PARTS = ("training", "test")
OUTPUT_FILES = {"training": "preprocessed_eeg_training.npy", "test": "preprocessed_eeg_test.npy"}


@dataclass(frozen=True)
class RawPreprocessing:
    """How :func:`preprocess_subject` works (written to the manifest).

    sessions: session numbers to read (the release has 4). channels: ``occipito-parietal`` (17) or ``all`` (63).
    sfreq: output rate in Hz. raw_sfreq: the rate the raw files must state (1000 Hz). mvnn_dim: ``time`` (the
    release's) or ``epochs``. seed: draws the kept repetitions and their order (the release's script used
    20200220). chunk_conditions: pictures per chunk (memory).
    """

    sessions: tuple[int, ...] = (1, 2, 3, 4)
    channels: str = "occipito-parietal"
    sfreq: float = 100.0
    raw_sfreq: float = RELEASE_SFREQ
    mvnn_dim: str = "time"
    seed: int = 20200220
    chunk_conditions: int = 200

    def check(self) -> None:
        if not self.sessions:
            raise ValueError("sessions is empty: name the session numbers to read (the release has 1 2 3 4)")
        if self.channels not in CHANNEL_SETS:
            raise ValueError(f"channels={self.channels!r}; use one of {', '.join(CHANNEL_SETS)}")
        if self.mvnn_dim not in MVNN_DIMS:
            raise ValueError(f"mvnn_dim={self.mvnn_dim!r}; use one of {', '.join(MVNN_DIMS)}")
        if not 0 < self.sfreq <= self.raw_sfreq:
            raise ValueError(f"sfreq={self.sfreq:g} Hz: must be above 0 and at most the recording's {self.raw_sfreq:g} Hz")
        if self.chunk_conditions < 1:
            raise ValueError(f"chunk_conditions={self.chunk_conditions}: must be at least 1")


@dataclass
class Layout:
    """Where each kept trial of one partition goes: ``trials[s][c]`` = onsets (samples) of picture ``c`` (0-based)
    kept from session ``s``, ``slots[s][c]`` = their repetition slots in the output ``[conditions, repetitions]``."""

    conditions: int
    repetitions: int
    trials: dict[int, dict[int, np.ndarray]]
    slots: dict[int, dict[int, np.ndarray]]
    dropped: int


def plan(part: str, sessions: dict[int, RawSession], rng: np.random.Generator, pictures: int | None = None) -> Layout:
    """Sort one partition's trials by picture. In each session every picture shown keeps as many repetitions as the
    least-shown picture of that session has (drawn at random, as the release's script does); the merged
    repetitions of every picture are shuffled into their slots. Pictures must be numbered 1..N without a gap
    (``N = pictures``, the metadata's count, when given) and end up with equal repetition counts."""
    present = sorted(set().union(*(set(s.conditions.tolist()) for s in sessions.values())))
    n = present[-1] if pictures is None else pictures
    if present[-1] > n:
        raise ValueError(
            f"{part} picture number {present[-1]} occurs in sessions {sorted(sessions)} but image_metadata.npy lists "
            f"{n} {part} pictures; use the metadata file of the same release"
        )
    if len(present) != n:
        gaps = sorted(set(range(1, n + 1)) - set(present))
        raise ValueError(
            f"{part} picture number(s) {gaps[:10]} have no trial in sessions {sorted(sessions)} "
            f"({', '.join(str(s.path) for s in sessions.values())}); condition i of the output is picture i + 1, so "
            "every number up to the largest must occur: read all the subject's sessions (--sessions)"
        )
    trials: dict[int, dict[int, np.ndarray]] = {}
    dropped = 0
    for number, session in sessions.items():
        shown, counts = np.unique(session.conditions, return_counts=True)
        keep = int(counts.min())
        dropped += int(counts.sum() - keep * len(shown))
        trials[number] = {}
        for code in shown.tolist():
            onsets = session.onsets[session.conditions == code]
            trials[number][code - 1] = np.sort(rng.choice(onsets, size=keep, replace=False))
    totals = np.zeros(n, dtype=np.int64)
    for per_session in trials.values():
        for c, onsets in per_session.items():
            totals[c] += len(onsets)
    if totals.min() != totals.max():
        c = int(np.argmin(totals))
        raise ValueError(
            f"{part}: picture {c + 1} has {totals[c]} repetitions over sessions {sorted(sessions)} but picture "
            f"{int(np.argmax(totals)) + 1} has {totals.max()}; the files do not form a complete {part} set: read all "
            "the subject's sessions (--sessions)"
        )
    order = rng.permutation(int(totals[0]))  # the release shuffles the repetitions of the merged sessions
    slots: dict[int, dict[int, np.ndarray]] = {}
    filled = np.zeros(n, dtype=np.int64)
    for number in sorted(trials):
        slots[number] = {}
        for c, onsets in trials[number].items():
            slots[number][c] = order[filled[c] : filled[c] + len(onsets)]
            filled[c] += len(onsets)
    return Layout(n, int(totals[0]), trials, slots, dropped)


def _chunks(items: list[int], size: int):
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _write_session(
    session: RawSession, layout: Layout, number: int, out: np.ndarray, rows: np.ndarray, config: RawPreprocessing,
    matrix: np.ndarray | None,
) -> tuple[np.ndarray, int, np.ndarray]:
    """Cut session ``number``'s epochs of one partition into ``out [conditions, repetitions, C, T]``, whitened by
    ``matrix`` when given. Returns the summed noise covariance of its pictures, their count and the epoch times."""
    pictures = sorted(layout.trials[number])
    covariance, times = np.zeros((len(rows), len(rows))), np.zeros(0)
    for chunk in _chunks(pictures, config.chunk_conditions):
        onsets = np.concatenate([layout.trials[number][c] for c in chunk])
        epochs, times = cut_epochs(session, onsets, rows, config.sfreq)
        epochs = epochs.reshape(len(chunk), -1, *epochs.shape[1:])  # [pictures, repetitions, C, T]
        if matrix is None:
            covariance += noise_covariance(epochs, config.mvnn_dim)
        else:
            epochs = whiten(epochs, matrix)
        out[np.asarray(chunk)[:, None], np.stack([layout.slots[number][c] for c in chunk])] = epochs
    return covariance, len(pictures), times


def _whiten_in_place(out: np.ndarray, layout: Layout, number: int, matrix: np.ndarray, chunk_conditions: int) -> None:
    for chunk in _chunks(sorted(layout.trials[number]), chunk_conditions):
        index = (np.asarray(chunk)[:, None], np.stack([layout.slots[number][c] for c in chunk]))
        out[index] = whiten(out[index], matrix)


def save_npy_dict(path: Path, content: dict) -> None:
    """``np.save(path, content)`` as the release writes it (a pickled dict in an ``.npy``), with pickle protocol 5 so
    an array over a memory map is written from its buffer without a copy in memory."""
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "|O", "fortran_order": False, "shape": ()})
        pickle.dump(np.array(content, dtype=object), f, protocol=5)


def preprocess_subject(raw_root: str | os.PathLike, subject: int, out: str | os.PathLike,
                       config: RawPreprocessing = RawPreprocessing(), pictures: dict[str, int] | None = None) -> Path:
    """Write ``<out>/sub-XX/`` (module docstring) from ``<raw_root>/sub-XX/ses-YY/raw_eeg_*.npy``; returns that folder.

    ``pictures``: ``{"training": N, "test": M}`` from ``image_metadata.npy``; every picture number 1..N must occur.
    """
    config.check()
    sessions = {part: {s: load_raw_session(raw_path(raw_root, subject, s, part), config.raw_sfreq)
                       for s in config.sessions} for part in PARTS}
    reference = sessions["training"][config.sessions[0]]
    for part in PARTS:
        for session in sessions[part].values():
            if session.ch_names != reference.ch_names or session.ch_types != reference.ch_types:
                raise ValueError(
                    f"{session.path} names channels {session.ch_names} but {reference.path} names {reference.ch_names}; "
                    "every session of a subject must have the same channels in the same order"
                )
    rows = reference.eeg_channels(config.channels)
    layouts = {part: plan(part, sessions[part], np.random.default_rng([config.seed, i]), (pictures or {}).get(part))
               for i, part in enumerate(PARTS)}
    first = next(iter(layouts["training"].trials[config.sessions[0]].values()))[:1]
    n_times = cut_epochs(reference, first, rows, config.sfreq)[0].shape[-1]  # the resampled epoch's length
    shapes = {part: (layouts[part].conditions, layouts[part].repetitions, len(rows), n_times) for part in PARTS}
    needed = 2 * sum(8 * int(np.prod(shape)) for shape in shapes.values())
    target = Path(out) / f"sub-{subject:02d}"
    with atomic_dir(target, needed=needed) as tmp:
        arrays = {part: np.memmap(tmp / f"{part}.raw", dtype=np.float64, mode="w+", shape=shapes[part]) for part in PARTS}
        matrices, times = [], None
        for number in config.sessions:
            covariance, pictures, times = _write_session(
                sessions["training"][number], layouts["training"], number, arrays["training"], rows, config, None)
            if pictures == 0:
                raise ValueError(f"{sessions['training'][number].path} has no training trial: no whitening can be fit for "
                                 f"session {number}")
            # Σ of this session from its training epochs only, applied to both partitions
            matrix = whitening_matrix(covariance / pictures, f"the noise covariance of {sessions['training'][number].path}")
            _whiten_in_place(arrays["training"], layouts["training"], number, matrix, config.chunk_conditions)
            _write_session(sessions["test"][number], layouts["test"], number, arrays["test"], rows, config, matrix)
            matrices.append(matrix)
        ch_names = [reference.ch_names[r] for r in rows]
        outputs = {}
        for part in PARTS:
            arrays[part].flush()
            data = np.ndarray(shapes[part], dtype=np.float64, buffer=arrays.pop(part))  # an exact ndarray: no copy
            save_npy_dict(tmp / OUTPUT_FILES[part], {"preprocessed_eeg_data": data, "ch_names": ch_names, "times": times})
            del data
            (tmp / f"{part}.raw").unlink()  # the memory map goes with its last reference
            outputs[part] = {"file": OUTPUT_FILES[part], "shape": list(shapes[part]),
                             "bytes": (tmp / OUTPUT_FILES[part]).stat().st_size}
        np.save(tmp / WHITENING, np.stack(matrices), allow_pickle=False)
        outputs["whitening"] = {"file": WHITENING, "shape": [len(matrices), len(rows), len(rows)],
                                "meaning": "per session (in 'sessions' order) the matrix W applied as W @ epoch [C, T]"}
        manifest = {
            "what": "THINGS-EEG2 preprocessed from the raw recordings by dreamdiffusion data preprocess-things-eeg2",
            "whitening_fit": WHITENING_FIT,
            "whitening": "multivariate noise normalisation per session, its covariance fit on that session's training "
                         "epochs only and applied to its training and test epochs; no test EEG statistics are used",
            "subject": subject,
            "settings": asdict(config) | {"sessions": list(config.sessions)},
            "epoch_s": list(EPOCH), "baseline_s": [EPOCH[0], 0.0], "ch_names": ch_names,
            "sources": {part: [str(s.path) for s in sessions[part].values()] for part in PARTS},
            "target_trials_removed": {part: sum(s.targets for s in sessions[part].values()) for part in PARTS},
            "surplus_trials_dropped": {part: layouts[part].dropped for part in PARTS},
            "outputs": outputs,
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    log.info("THINGS-EEG2 sub-%02d preprocessed from raw into %s: %s", subject, target, shapes)
    return target


def read_manifest(folder: str | os.PathLike) -> dict | None:
    """The manifest of a subject folder written by :func:`preprocess_subject`, checked against the files beside it;
    ``None`` when the folder has none (the release's files). A file changed since the manifest is an error."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
        outputs = {part: manifest["outputs"][part] for part in PARTS}
        fit = manifest["whitening_fit"]
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path} is not a manifest of preprocess-things-eeg2 ({type(err).__name__}: {err}); rerun it") from None
    for output in outputs.values():
        file = Path(folder) / output["file"]
        if not file.is_file() or file.stat().st_size != output["bytes"]:
            raise ValueError(
                f"{file} is not the file {path} describes (missing or of another size): it was replaced after "
                "preprocessing; rerun `dreamdiffusion data preprocess-things-eeg2` for this subject"
            )
    if fit != WHITENING_FIT:
        raise ValueError(f"{path}: whitening_fit is {fit!r}, expected {WHITENING_FIT!r}")
    return manifest
