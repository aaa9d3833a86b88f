"""What a weights file was trained on, written into the file itself.

Every ``.safetensors`` file that ``dreamdiffusion weights tiny|demo`` writes carries the metadata key
``provenance``: ``"random"`` for a network left at its seeded random initialisation, otherwise one sentence
saying what it was trained on. A figure measured with a network whose provenance is ``"random"`` means
nothing, and a reader of the file can tell without running it.
"""

from __future__ import annotations

import os
from pathlib import Path

PROVENANCE_KEY = "provenance"
RANDOM = "random"


def read_provenance(path: str | os.PathLike) -> str | None:
    """The ``provenance`` metadata of a ``.safetensors`` file, or ``None`` when the file has none."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return (f.metadata() or {}).get(PROVENANCE_KEY)


def write_provenance(path: str | os.PathLike, provenance: str) -> Path:
    """Rewrite the ``.safetensors`` file at ``path`` with ``provenance`` added to its metadata (atomically).

    The tensors and every other metadata entry (e.g. ``format: pt``, which transformers checks) are kept.
    """
    from safetensors import safe_open
    from safetensors.torch import save_file

    from dreamdiffusion.atomic import atomic_path

    path = Path(path)
    if not provenance:
        raise ValueError(f"{path}: provenance must be a non-empty sentence (or {RANDOM!r})")
    with safe_open(str(path), framework="pt") as f:
        metadata = dict(f.metadata() or {})
        tensors = {key: f.get_tensor(key) for key in f.keys()}
    metadata[PROVENANCE_KEY] = provenance
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return path


def write_folder_provenance(folder: str | os.PathLike, provenance: str) -> list[Path]:
    """:func:`write_provenance` on every ``.safetensors`` file under ``folder``; returns them."""
    files = sorted(Path(folder).rglob("*.safetensors"))
    for file in files:
        write_provenance(file, provenance)
    return files
