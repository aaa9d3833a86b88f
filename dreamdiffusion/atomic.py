"""Write files and folders so that a reader never sees them half-written, and no write leaves litter.

Everything goes to a temporary name in the destination's own folder (same file system) and is
renamed into place once complete, so a truncated file never sits under the final name. Around that:

* the temporary is removed on any exception; a process killed outright (``kill -9``) leaves it, so its
  name carries the writer's pid and host (``.<name>.tmp-<pid>-<host>-<random>``) and the next write of
  the same file — or the next stage started in that folder (:func:`remove_stale_temporaries`) — removes
  siblings whose writer is gone;
* a full disk is :class:`~dreamdiffusion.errors.DiskFullError` ("disk full while writing <file>: <free>
  left, <needed> needed"), checked up front when the size is known, never a crash;
* the result has the modes of an ordinary file or folder under the process's umask (a temporary file
  is created 0600 and a temporary folder 0700; a colleague must be able to read an export).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

from dreamdiffusion.errors import DiskFullError, human_bytes

# Headroom kept free besides the bytes a write needs (file system metadata, the JSON beside it).
MARGIN = 1 << 20
_HOST = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]
_OWNER = re.compile(r"^\..+\.(?:tmp|old)-(?:(\d+)-([0-9a-f]{8})-)?")


def host_tag() -> str:
    """Short tag of this machine's host name (temporary names and run locks carry it)."""
    return _HOST


def _prefix(path: Path, kind: str) -> str:
    return f".{path.name}.{kind}-{os.getpid()}-{_HOST}-"


def pid_alive(pid: int) -> bool:
    """True when a process ``pid`` runs on this machine (one of another user counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _is_stale(entry: Path, older_than: float | None) -> bool:
    """A temporary entry whose writer is gone: its pid is dead on this host, or (a name without owner,
    or another host's) it is older than ``older_than`` (a time when no writer could still be running)."""
    match = _OWNER.match(entry.name)
    if match is None:
        return False
    pid, host = match.groups()
    if pid is not None and host == _HOST:
        return not pid_alive(int(pid))
    if older_than is None:
        return False
    try:
        return entry.lstat().st_mtime < older_than
    except FileNotFoundError:
        return False


def _remove(entry: Path) -> None:
    if entry.is_dir() and not entry.is_symlink():
        shutil.rmtree(entry, ignore_errors=True)
    else:
        entry.unlink(missing_ok=True)


def remove_stale_temporaries(folder: str | os.PathLike, older_than: float | None = None, depth: int = 2) -> list[Path]:
    """Remove ``.*.tmp-*``/``.*.old-*`` entries left in ``folder`` (and ``depth - 1`` levels below) by
    writers that are gone; returns what was removed. See :func:`_is_stale` for ``older_than``."""
    folder = Path(folder)
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for entry in list(folder.iterdir()):
        if _is_stale(entry, older_than):
            _remove(entry)
            removed.append(entry)
        elif depth > 1 and entry.is_dir() and not entry.is_symlink() and not entry.name.startswith("."):
            removed += remove_stale_temporaries(entry, older_than, depth - 1)
    return removed


def _remove_stale_siblings(path: Path) -> None:
    """Temporaries of ``path`` itself left by a killed writer (same host, dead pid)."""
    for entry in path.parent.glob(f".{glob_escape(path.name)}.*-*"):
        if _is_stale(entry, None):
            _remove(entry)


def glob_escape(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)


def free_bytes(folder: Path) -> int:
    """Bytes available to this user on the file system of ``folder``."""
    stat = os.statvfs(folder)
    return stat.f_bavail * stat.f_frsize


def check_space(path: Path, needed: int | None) -> None:
    """Refuse up front a write of ``needed`` bytes that cannot fit (a half-written file helps no one)."""
    if needed is None:
        return
    free = free_bytes(path.parent)
    if free < needed + MARGIN:
        raise DiskFullError(disk_full_message(path, free, f"{human_bytes(needed)}"))


def disk_full_message(path: Path, free: int, needed: str) -> str:
    return (
        f"disk full while writing {path}: {human_bytes(free)} left, {needed} needed; free space on that disk "
        "or write elsewhere (--run_dir, cache_dir)"
    )


def _looks_like_disk_full(error: BaseException, folder: Path) -> bool:
    """ENOSPC/EDQUOT, as an ``OSError`` or inside another library's message (safetensors, torch.save)."""
    if isinstance(error, DiskFullError):
        return False
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(error)
    if any(s in text for s in ("No space left on device", "os error 28", "Disk quota exceeded", "StorageFull")):
        return True
    try:  # torch.save says only "file write failed": judge by the disk
        return isinstance(error, (OSError, RuntimeError)) and free_bytes(folder) < MARGIN
    except OSError:
        return False


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _raise_if_disk_full(error: BaseException, path: Path, tmp: Path, needed: int | None) -> None:
    """Turn a write that failed for lack of space into one :class:`DiskFullError` (the temporary goes first,
    so the free space reported is what the user really has)."""
    if not _looks_like_disk_full(error, path.parent):
        return
    written = _size(tmp) if tmp.exists() else 0
    _remove(tmp)
    what = human_bytes(needed) if needed else f"more than {human_bytes(written)}"
    raise DiskFullError(disk_full_message(path, free_bytes(path.parent), what)) from error


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, needed: int | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it to ``path`` if the block succeeds.

    ``needed``: bytes the file will take, when known; too little free space is refused before writing.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_siblings(path)
    check_space(path, needed)
    fd, tmp = tempfile.mkstemp(prefix=_prefix(path, "tmp"), dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        # after the block: some writers (safetensors) replace the file and bring back mkstemp's 0600
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException as error:
        _raise_if_disk_full(error, path, tmp, needed)
        raise
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, needed: int | None = None) -> Iterator[Path]:
    """Yield an empty temporary folder next to ``path``; it replaces ``path`` if the block succeeds.

    An existing ``path`` is moved aside first and removed only after the new folder is in place.
    ``needed`` as in :func:`atomic_path`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_siblings(path)
    check_space(path, needed)
    tmp = Path(tempfile.mkdtemp(prefix=_prefix(path, "tmp"), dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        old = None
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=_prefix(path, "old"), dir=path.parent))
            os.replace(path, old / path.name)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException as error:
        _raise_if_disk_full(error, path, tmp, needed)
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path, needed=len(text.encode())) as tmp:
        tmp.write_text(text)


def sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks (memory does not grow with the file)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def write_safetensors(path: str | os.PathLike, state: dict, metadata: dict[str, str] | None = None) -> str:
    """Write tensors ``state`` to a ``.safetensors`` file atomically (space checked first); returns its SHA-256."""
    from safetensors.torch import save_file

    needed = sum(t.numel() * t.element_size() for t in state.values())
    with atomic_path(path, needed=needed) as tmp:
        save_file(state, str(tmp), metadata=metadata)
        return sha256(tmp)
