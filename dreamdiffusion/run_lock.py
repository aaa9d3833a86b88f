"""One process per stage folder: a lock file holding the holder's pid and host.

Two runs writing one ``<run_dir>/<stage>/`` would log into the same ``lightning_logs/version_N``,
overwrite each other's ``last.ckpt`` and leave whichever export finished last. So a stage takes
``<stage folder>/.dreamdiffusion.lock`` before it writes anything, and a second process is refused with
the holder's pid, host, start time and command.

The lock is an advisory ``flock`` on that file, which the operating system drops when the holder dies
(``kill -9`` included), so a lock left by a dead run is stale by construction and is taken over with a
message. The file's JSON (pid, host, time, command) is only there for the message. Only global rank 0
of a multi-process run takes the lock; the other ranks belong to the same run.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from dreamdiffusion.errors import UserError

LOCK_NAME = ".dreamdiffusion.lock"


class RunLockedError(UserError):
    """Another live process holds the stage folder."""


@dataclass
class RunLock:
    """A held lock; :meth:`release` (idempotent) removes the file and drops the lock."""

    path: Path
    fd: int
    created: float

    def release(self) -> None:
        if self.fd < 0:
            return
        try:
            # Unlink while still locked: a process waiting on this inode re-checks the path and retries.
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self.fd)
            self.fd = -1


def _holder(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _describe(holder: dict) -> str:
    if not holder:
        return "another process (its lock file is being written)"
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("started", 0)))
    command = " ".join(holder.get("argv", []))
    return f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')} (since {started}: `{command}`)"


def acquire(folder: str | os.PathLike, log=print) -> RunLock:
    """Lock ``folder`` (created if needed) for this process, or raise :class:`RunLockedError`.

    ``log`` receives one line when a stale lock of a dead run is taken over.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunLockedError(
                f"{folder} is in use by {_describe(_holder(path))}: two runs in one stage folder would overwrite "
                f"each other's checkpoints, logs and exports. Wait for it to finish, or use another --run_dir "
                f"(if no such process runs any more, remove {path})"
            ) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the holder released (and removed) the file between our open and our lock: retry
    previous = _holder(path)
    if previous:
        log(f"taking over the lock of {_describe(previous)} in {folder}: that process is gone")
    info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(), "argv": ["dreamdiffusion", *sys.argv[1:]]}
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
    return RunLock(path, fd, info["started"])
