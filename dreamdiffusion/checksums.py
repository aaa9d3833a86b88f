"""SHA-256 manifests of weight files, so a folder whose weights were changed after export is refused.

``checksums.json`` in a model or pipeline folder::

    {"format": "dreamdiffusion.checksums/1", "sha256": {"unet/diffusion_pytorch_model.safetensors": "<hex>", ...}}

Paths are relative to the folder holding the manifest, with ``/`` separators.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path

from dreamdiffusion.atomic import sha256, write_text

MANIFEST = "checksums.json"
FORMAT = "dreamdiffusion.checksums/1"
# Files a loader could read weights from; one the manifest does not list (a pickle put beside the
# safetensors, another variant) is refused rather than ignored.
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".msgpack", ".onnx")


# Folders verified by the load in progress: a pipeline verifies its folder once, up front, and its
# components' loaders (called by diffusers) then skip the same files.
_VERIFIED: ContextVar[frozenset[Path]] = ContextVar("dreamdiffusion_verified_folders", default=frozenset())


@contextlib.contextmanager
def verified(folder: str | os.PathLike) -> Iterator[None]:
    """Within the block, :func:`is_verified` is true for ``folder`` and the folders under it."""
    token = _VERIFIED.set(_VERIFIED.get() | {Path(folder).resolve()})
    try:
        yield
    finally:
        _VERIFIED.reset(token)


def is_verified(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` (or a folder holding it) was verified by the load in progress."""
    folder = Path(folder).resolve()
    return any(folder == v or v in folder.parents for v in _VERIFIED.get())


def write_checksums(folder: str | os.PathLike, pattern: str = "**/*.safetensors") -> dict[str, str]:
    """Hash every file of ``folder`` matching ``pattern`` and write ``folder/checksums.json``; return the table."""
    folder = Path(folder)
    table = {p.relative_to(folder).as_posix(): sha256(p) for p in sorted(folder.glob(pattern)) if p.is_file()}
    write_text(folder / MANIFEST, json.dumps({"format": FORMAT, "sha256": table}, indent=2) + "\n")
    return table


def verify_checksums(folder: str | os.PathLike, fix: str) -> None:
    """Refuse ``folder`` unless every file its ``checksums.json`` lists exists with that SHA-256 and no other
    weights file (:data:`WEIGHT_SUFFIXES`) lies in it.

    ``fix`` ends each error message (what the user should do, e.g. how to re-export).
    """
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the weights of {folder} cannot be verified; {fix}")
    try:
        manifest = json.loads(path.read_text())
        table = manifest["sha256"]
        if manifest.get("format") != FORMAT or not isinstance(table, dict):
            raise ValueError(f"format {manifest.get('format')!r}, expected {FORMAT!r}")
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{path} is not a checksum manifest ({e}); {fix}") from None
    for name, digest in table.items():
        file = folder / name
        if not file.is_file():
            raise FileNotFoundError(f"{file} is listed in {path} but missing; {fix}")
        if sha256(file) != digest:
            raise ValueError(f"{file} does not match its SHA-256 in {path}: it changed after export; {fix}")
    for file in sorted(folder.rglob("*")):
        if file.is_file() and file.name.endswith(WEIGHT_SUFFIXES) and file.relative_to(folder).as_posix() not in table:
            raise ValueError(f"{file} is not listed in {path}: it was not written by the export; remove it or {fix}")
