"""The window cache: preprocessed EEG written once per recording, read back as memory maps.

Layout under ``cache_dir``::

    <source>/sub-<subject>.<params>.json                 subject record for one parameter set: one entry
                                                         per recording (and the skipped ones, with reasons)
    <source>/sub-<subject>/<session>_<run>.<effective>.npy   windows [n_windows, n_chans, n_times], float16
    manifest-<key>.json                                  one configuration's index: entries, counts, split

``<source>`` is the dataset name, suffixed with a hash of its constructor arguments when it has any
(a ``FakeDataset`` with other channels is another source). Shards keep the recording's own channel
count; harmonisation to 128 channels happens at load time.

Rules that make the cache safe to share and to interrupt:

* every file is written to a temporary name and renamed (:mod:`dreamdiffusion.atomic`); a subject's
  record is written after its shards, so a record names only complete shards; a full disk is an error
  naming the shard and the space needed, and a killed build's temporaries are removed by the next one;
* a record entry stores the *effective* preprocessing of its recording (e.g. the upper band edge after
  lowering below Nyquist) and its shard is named by it: a changed parameter rebuilds only the recordings
  whose result it changes, and never overwrites the shards of other parameters (two configurations can
  share one cache, even at the same time);
* a shard whose size or SHA-256 does not match its record is rebuilt; nothing valid is rewritten.

The seam for another source of unpaired windows is :meth:`ShardCache.build_subject`: it takes an
iterable of ``(session, run, windows-or-error)`` and knows nothing about MOABB.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from dreamdiffusion.atomic import atomic_path, sha256, write_text
from dreamdiffusion.signal import Preprocessing, Windows

log = logging.getLogger(__name__)

CACHE_VERSION = 2  # 2: windows resampled with end points kept (align_corners=True)
DTYPES = ("float16", "float32")


def stable_hash(obj, n: int = 12) -> str:
    """Short SHA-256 of a JSON-serialisable object (keys sorted)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:n]


def source_dir(name: str, kwargs: dict | None) -> str:
    """Folder of one source: its name, plus a hash of its constructor arguments when there are any."""
    return name if not kwargs else f"{name}-{stable_hash(kwargs, 8)}"


def effective_preprocessing(params: Preprocessing, sfreq: float, dtype: str) -> dict:
    """The parameters that determine a recording's shard at ``sfreq`` Hz (what its record stores).

    The upper band edge is the one :func:`dreamdiffusion.signal.band_pass` really uses: lowered to
    90% of Nyquist when ``h_freq`` is not below it, so changing ``h_freq`` leaves low-rate shards valid.
    """
    values = params.to_dict()
    if values["h_freq"] >= sfreq / 2:
        values["h_freq"] = round(0.9 * sfreq / 2, 6)
    values["dtype"] = dtype
    return values


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9.=-]+", "-", str(name)).strip("-") or "x"


def shard_nbytes(path: Path) -> int | None:
    """Expected size in bytes of a ``.npy`` file from its own header, or ``None`` if unreadable."""
    try:
        with open(path, "rb") as f:
            major, _ = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
            shape, _, dtype = read_header(f)
            return f.tell() + int(np.prod(shape)) * np.dtype(dtype).itemsize
    except (OSError, ValueError, EOFError):
        return None


class CacheError(ValueError):
    """A cache file that cannot be used as it is (the message names it and the fix)."""


class ShardCache:
    """Shards and records under ``root`` for one set of preprocessing parameters.

    Parameters
    ----------
    root
        Cache folder (created on first write). Never inside ``MNE_DATA``'s dataset folders.
    params
        Preprocessing of every shard (:class:`dreamdiffusion.signal.Preprocessing`).
    dtype
        Storage type of the windows: ``"float16"`` (default, half the disk) or ``"float32"``.
    verify
        ``"checksum"``: a reused shard's SHA-256 is recomputed (detects edits); ``"size"``: only its
        size is checked (detects truncation; faster on a large corpus).
    """

    def __init__(self, root: str | os.PathLike, params: Preprocessing = Preprocessing(), dtype: str = "float16", verify: str = "checksum"):
        if dtype not in DTYPES:
            raise ValueError(f"cache dtype must be one of {DTYPES}, got {dtype!r}")
        if verify not in ("checksum", "size"):
            raise ValueError(f"verify must be 'checksum' or 'size', got {verify!r}")
        self.root = Path(root)
        self.params = params
        self.dtype = dtype
        self.verify = verify

    # -- paths ---------------------------------------------------------------------------------
    @property
    def key(self) -> str:
        """Short hash of the requested parameters (and dtype): names this parameter set's records."""
        return stable_hash({**self.params.to_dict(), "dtype": self.dtype}, 8)

    def record_path(self, source: str, subject: int) -> Path:
        return self.root / source / f"sub-{subject}.{self.key}.json"

    def shard_path(self, source: str, subject: int, session: str, run: str, sfreq: float) -> Path:
        """A shard is named by its effective parameters: other parameters never overwrite it."""
        effective = stable_hash(effective_preprocessing(self.params, sfreq, self.dtype), 8)
        return self.root / source / f"sub-{subject}" / f"{_safe(session)}_{_safe(run)}.{effective}.npy"

    # -- checking ------------------------------------------------------------------------------
    @staticmethod
    def read_record(path: Path) -> dict | None:
        """A subject record, or ``None`` when absent or unreadable (the subject is then rebuilt)."""
        if not path.is_file():
            return None
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            log.warning("%s is not valid JSON; the subject will be rebuilt", path)
            return None
        if not isinstance(record, dict) or record.get("version") != CACHE_VERSION:
            return None
        return record

    def entry_problem(self, entry: dict, verify: str | None = None) -> str | None:
        """Why a record entry cannot be reused (``None`` if it can): parameters, size or checksum."""
        expected = effective_preprocessing(self.params, entry["sfreq"], self.dtype)
        if entry.get("preprocessing") != expected:
            changed = sorted(k for k in expected if entry.get("preprocessing", {}).get(k) != expected[k])
            return f"built with other preprocessing parameters ({', '.join(changed)})"
        path = self.root / entry["file"]
        if not path.is_file():
            return "shard file missing"
        if path.stat().st_size != entry["nbytes"] or shard_nbytes(path) != entry["nbytes"]:
            return f"shard is {path.stat().st_size} bytes, its record says {entry['nbytes']} (truncated or edited)"
        if (verify or self.verify) == "checksum" and sha256(path) != entry["sha256"]:
            return "shard checksum does not match its record (edited or corrupt)"
        return None

    def valid_entries(self, source: str, subject: int, source_key: dict) -> tuple[dict, bool]:
        """Reusable entries of a subject by ``(session, run)`` and whether the subject is complete.

        Without a record for these parameters, records of other parameter sets are searched for
        shards whose effective parameters are the same (e.g. a low-rate recording after a change of
        ``h_freq``); a subject they cover entirely is adopted without loading its recordings again.
        """
        own = self.read_record(self.record_path(source, subject))
        if own is not None and own.get("source") == source_key:
            valid, complete = {}, True
            for entry in own["recordings"]:
                problem = self.entry_problem(entry)
                if problem is None:
                    valid[(entry["session"], entry["run"])] = entry
                else:
                    log.warning("%s: %s; rebuilding it", self.root / entry["file"], problem)
                    complete = False
            return valid, complete
        valid = {}
        for path in sorted((self.root / source).glob(f"sub-{subject}.*.json")):
            other = self.read_record(path)
            if other is None or other.get("source") != source_key:
                continue
            usable = {(e["session"], e["run"]): e for e in other["recordings"] if self.entry_problem(e) is None}
            if not other["skipped"] and len(usable) == len(other["recordings"]):
                self.write_record(source, source_key, subject, other["recordings"], [])
                return usable, True
            valid.update(usable)
        return valid, False

    # -- writing -------------------------------------------------------------------------------
    def write_shard(self, path: Path, windows: np.ndarray) -> tuple[np.ndarray, int]:
        """Write ``windows [N, C, T]`` as a ``.npy`` of ``self.dtype``; drop windows that overflow it.

        Returns ``(kept mask, number of windows dropped because the cast made them non-finite)``.
        """
        with np.errstate(over="ignore"):  # overflowing windows become Inf and are dropped below
            cast = windows.astype(self.dtype)
        finite = np.isfinite(cast).all(axis=(1, 2))
        cast = cast[finite]
        # Ordinary buffered writes: a full disk is an ENOSPC error to report, where writing through a
        # memory map of a sparse file would kill the process with SIGBUS.
        with atomic_path(path, needed=cast.nbytes + 128) as tmp:
            with open(tmp, "wb") as f:
                np.lib.format.write_array(f, cast, allow_pickle=False)
        return finite, int((~finite).sum())

    def build_subject(
        self,
        source: str,
        source_key: dict,
        subject: int,
        recordings: Iterable[tuple[str, str, Windows | Exception]],
        reuse: dict | None = None,
        on_bad_recording: str = "skip",
    ) -> dict:
        """Write the shards of one subject and then its record; return the record.

        ``recordings`` yields ``(session, run, Windows)`` — or an ``Exception`` in place of the windows
        when the recording could not be preprocessed (too short, no EEG, ...): it is skipped and
        counted with its reason, or raised when ``on_bad_recording="error"``. Entries in ``reuse``
        (from :meth:`valid_entries`) are kept without rewriting their shards.
        """
        reuse = reuse or {}
        entries, skipped = [], []
        for session, run, windows in recordings:
            session, run = str(session), str(run)
            if (session, run) in reuse:
                entries.append(reuse[(session, run)])
                continue
            where = f"{source_key['name']} subject {subject} session {session} run {run}"
            if isinstance(windows, Exception):
                if on_bad_recording == "error":
                    raise windows
                log.warning("skipping %s: %s", where, windows)
                skipped.append({"session": session, "run": run, "reason": str(windows)})
                continue
            path = self.shard_path(source, subject, session, run, windows.sfreq)
            _, n_overflow = self.write_shard(path, windows.data)
            n_windows = len(windows.data) - n_overflow
            if n_windows == 0:
                path.unlink(missing_ok=True)
                reason = (f"every window was dropped ({windows.n_nonfinite + n_overflow} NaN/Inf, "
                          f"{windows.n_flat} flat)")
                log.warning("skipping %s: %s", where, reason)
                skipped.append({"session": session, "run": run, "reason": reason})
                continue
            entries.append({
                "dataset": source_key["name"],
                "source": source,
                "subject": subject,
                "session": session,
                "run": run,
                "file": str(path.relative_to(self.root)),
                "sfreq": windows.sfreq,
                "ch_names": list(windows.ch_names),
                "n_chans": len(windows.ch_names),
                "n_windows": n_windows,
                "n_times": int(windows.data.shape[-1]),
                "dtype": self.dtype,
                "nbytes": path.stat().st_size,
                "sha256": sha256(path),
                "dropped_nonfinite": windows.n_nonfinite + n_overflow,
                "dropped_flat": windows.n_flat,
                "preprocessing": effective_preprocessing(self.params, windows.sfreq, self.dtype),
            })
        return self.write_record(source, source_key, subject, entries, skipped)

    def write_record(self, source: str, source_key: dict, subject: int, entries: list[dict], skipped: list[dict]) -> dict:
        """Write a subject's record (after its shards): what makes the subject complete for these parameters."""
        record = {
            "version": CACHE_VERSION,
            "source": source_key,
            "subject": subject,
            "params": self.params.to_dict(),
            "dtype": self.dtype,
            "recordings": entries,
            "skipped": skipped,
        }
        write_text(self.record_path(source, subject), json.dumps(record, indent=1))
        return record

    def write_manifest(self, key: str, manifest: dict, keep_if_same: bool = False) -> Path:
        """Write ``manifest-<key>.json``; with ``keep_if_same``, an identical one is left untouched
        (a complete cache can then be used from a read-only file system)."""
        path = self.root / f"manifest-{key}.json"
        text = json.dumps(manifest, indent=1)
        if keep_if_same and path.is_file() and path.read_text() == text:
            return path
        write_text(path, text)
        return path

    def read_manifest(self, key: str) -> dict:
        path = self.root / f"manifest-{key}.json"
        if not path.is_file():
            raise CacheError(
                f"no manifest {path} for this data configuration; build it first with prepare_data() "
                "(the Trainer calls it) or `dreamdiffusion data moabb-build`"
            )
        return json.loads(path.read_text())


def check_writable(folder: str | os.PathLike, what: str, fix: str) -> Path:
    """Create ``folder`` if needed and prove it writable (works as root too); else a clear error."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(folder / ".write-test") as tmp:
            tmp.write_text("ok")
        (folder / ".write-test").unlink()
    except OSError as error:
        raise CacheError(f"{what} {folder} is not writable ({error.strerror or error}); {fix}") from error
    return folder


def open_shard(root: Path, entry: dict) -> np.ndarray:
    """Read-only memory map of one shard ``[n_windows, n_chans, n_times]`` (nothing read into RAM)."""
    path = root / entry["file"]
    array = np.load(path, mmap_mode="r", allow_pickle=False)
    if array.shape != (entry["n_windows"], entry["n_chans"], entry["n_times"]):
        raise CacheError(f"{path} holds {array.shape}, its manifest says "
                         f"{(entry['n_windows'], entry['n_chans'], entry['n_times'])}; rebuild with prepare_data()")
    return array
