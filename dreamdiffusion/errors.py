"""The project's own errors for mistakes a user can fix, and how the command line shows them.

A :class:`UserError` (or a ``ValueError``/``LookupError``/``OSError`` raised by a ``raise`` statement in
this package, whose messages already name the file, key or value and the fix) becomes one line on
stderr, ``error: <message>``, with exit status 2 (:func:`user_error`). Anything else is a bug or a
fault of another library and keeps its traceback. ``DREAMDIFFUSION_DEBUG=1`` shows every traceback.
"""

from __future__ import annotations

import errno
import linecache
import os
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
# OS errors that are about the user's files and disks, wherever they are raised.
USER_ERRNOS = {errno.ENOENT, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EISDIR, errno.ENOTDIR}


class UserError(Exception):
    """A mistake or a fault the user can fix (bad file, bad value, locked run, full disk); the message says how."""


class DiskFullError(UserError, OSError):
    """The disk filled up while writing a file; the message gives the file, the space left and the space needed."""


def human_bytes(n: float) -> str:
    """``1536`` -> ``'1.5 KiB'``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and the exceptions it was raised from or while handling (jsonargparse wraps ours)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _raised_here(exc: BaseException) -> bool:
    """True when the innermost frame is this package's code on a ``raise`` statement (a deliberate message)."""
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    filename = tb.tb_frame.f_code.co_filename
    try:
        inside = Path(filename).resolve().is_relative_to(PACKAGE)
    except (OSError, ValueError):
        return False
    return inside and linecache.getline(filename, tb.tb_lineno).lstrip().startswith("raise")


def user_error(exc: BaseException) -> BaseException | None:
    """The user's mistake behind ``exc`` (searched along its chain), or ``None`` for a bug to show in full."""
    for e in chain(exc):
        if isinstance(e, UserError):
            return e
        if isinstance(e, OSError) and e.errno in USER_ERRNOS and getattr(e, "filename", None):
            return e
        if isinstance(e, (ValueError, LookupError, OSError)) and _raised_here(e):
            return e
    return None


def message(exc: BaseException) -> str:
    """One line: the exception's text with its lines joined (``KeyError`` quotes dropped)."""
    text = exc.args[0] if isinstance(exc, KeyError) and len(exc.args) == 1 else str(exc)
    return " ".join(line.strip() for line in str(text).splitlines() if line.strip())


def debug() -> bool:
    """``DREAMDIFFUSION_DEBUG=1``: show tracebacks of user errors too."""
    return os.environ.get("DREAMDIFFUSION_DEBUG", "") not in ("", "0")
