"""The one way a ``.pth`` data file is read: as plain data, never as code.

Data files such as ImageNet-EEG's ``eeg_5_95_std.pth`` are pickles, and a pickle can name any callable
to run while it loads. :func:`load_plain` reads them with ``torch.load(..., weights_only=True)``, whose
restricted unpickler accepts only tensors, lists, tuples, dicts, strings and numbers and refuses
everything else *before* calling it; the refusal becomes an error that names the file.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch


def _looks_like_torch_file(path: Path) -> bool:
    """A ``torch.save`` zip archive, or a legacy ``torch.save``/pickle stream (protocol 2+ starts with 0x80)."""
    if zipfile.is_zipfile(path):
        return True
    with open(path, "rb") as f:
        return f.read(1) == b"\x80"


def _refusal_reason(message: str) -> str:
    """The line of torch's refusal that says what was found (torch's own advice to disable the check is dropped)."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    specific = [line for line in lines if "GLOBAL" in line or "Unsupported" in line or "unsupported" in line]
    return specific[0] if specific else "unsupported pickle contents"


class NotPlainDataError(ValueError):
    """A data file holds something other than tensors, lists, dicts, strings and numbers."""


def load_plain(path: str | os.PathLike, what: str = "data file") -> Any:
    """Contents of the ``.pth`` file ``path`` (tensors on the CPU), or a clear error.

    Raises ``FileNotFoundError`` when the file is absent, :class:`NotPlainDataError` when its pickle
    holds objects of other types (nothing in it was executed), and ``ValueError`` when it is not a
    readable ``torch.save`` file at all.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist; see data/README.md for where it goes")
    if not _looks_like_torch_file(path):
        raise ValueError(
            f"{path} is not a readable torch .pth file (neither a torch.save archive nor a pickle); the file may be "
            "truncated or of another format: fetch it again"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        reason = _refusal_reason(str(err))
        raise NotPlainDataError(
            f"{path} is not a plain data file (tensors, lists, dicts, strings, numbers only): it holds "
            f"other objects (or pickle instructions the safe loader does not accept), so it was refused without running "
            f"any of it ({reason.rstrip('.')}). Re-save its "
            "contents as plain data (e.g. torch.save of dicts/lists of tensors) or get the original file"
        ) from None
    except Exception as err:  # noqa: BLE001 - any other failure of a restricted load: not a .pth file
        raise ValueError(
            f"{path} is not a readable torch .pth file ({type(err).__name__}: {err}); the file may be "
            "truncated or of another format: fetch it again"
        ) from None
