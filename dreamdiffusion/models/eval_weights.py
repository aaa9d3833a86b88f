"""Where the evaluation networks' weights come from: a local file, the library's download, or a fetch ahead of time.

Every weights file is read as plain tensors — ``.safetensors``, or a PyTorch file through
``torch.load(weights_only=True)`` (:func:`read_state_dict`) — and loaded with ``strict=True``
(:func:`load_strict`). Without a local file, the published state dict comes through torch.hub's cache
(``$TORCH_HOME/hub/checkpoints/<file name>``, hash-checked; :func:`download_state_dict`); on a machine with
internet, :func:`fetch_eval_weights` (``dreamdiffusion weights fetch-eval``) downloads the three default files
(:data:`EVAL_WEIGHTS`) for a cluster without.

Provenance: every weights file this project writes carries safetensors metadata ``"provenance"`` (``"random"``
for random networks, a description for trained ones). :func:`weights_provenance` reads it, so each loader can
set ``provenance`` on the network it returns and stage 3 can label a figure that comes from a random network.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import Tensor, nn

from dreamdiffusion import progress
from dreamdiffusion.models import strict_load
from dreamdiffusion.models.provenance import read_provenance

INCEPTION_URL = "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"


def read_state_dict(path: str | os.PathLike, what: str) -> dict[str, Tensor]:
    """Tensors of a ``.safetensors`` file or a PyTorch state-dict file (``weights_only=True``: no code runs)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} weights file {path} does not exist; fix the path in the eval config")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as e:  # noqa: BLE001 - SafetensorError does not name the file
            raise ValueError(
                f"{what} weights file {path} is not a readable .safetensors file ({type(e).__name__}: {e}); "
                "it is truncated or damaged: fetch it again (`dreamdiffusion weights fetch-eval`)"
            ) from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - the message names the file and the formats accepted
        raise ValueError(
            f"{what} weights file {path} could not be read as a state dict of tensors ({type(e).__name__}: {e}); "
            "give a .safetensors file or a PyTorch file holding only tensors"
        ) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f"{what} weights file {path} does not hold a flat state dict of tensors")
    return state


PUBLISHED = "published"


def weights_provenance(path: str | os.PathLike | None) -> str:
    """Where a network's weights come from: ``None`` (the library's download) or a PyTorch file (the format the
    published weights come in; this project writes safetensors only) → ``"published"``; a ``.safetensors``
    file → its ``"provenance"`` metadata (``"random"`` for the tiny random networks), ``"unlabelled"`` without."""
    if path is None or Path(path).suffix != ".safetensors":
        return PUBLISHED
    return read_provenance(path) or "unlabelled"


def download_state_dict(url: str, what: str) -> dict[str, Tensor]:
    """A published state dict through torch.hub's cache (``$TORCH_HOME/hub/checkpoints/<file name>``),
    hash-checked on download and read with ``weights_only=True``."""
    try:
        return torch.hub.load_state_dict_from_url(url, map_location="cpu", check_hash=True, weights_only=True)
    except Exception as e:  # noqa: BLE001 - offline clusters land here; say what to do
        name = url.rsplit("/", 1)[-1]
        hub = Path(torch.hub.get_dir()) / "checkpoints"
        raise RuntimeError(
            f"could not get the {what} weights from {url} ({type(e).__name__}: {e}). Without internet, download "
            f"{name} elsewhere and either put it at {hub / name} or set its weights_path in the eval config"
        ) from None


def load_strict(module: nn.Module, state: dict[str, Tensor], source: str) -> nn.Module:
    """Strict load; the error points at the architecture and builder_kwargs of the eval config."""
    return strict_load.load_strict(module, state, source, "check the architecture and builder_kwargs in the eval config")


# The published evaluation weights, by the eval config key that takes their local path.
EVAL_WEIGHTS = {
    "classifier": "https://download.pytorch.org/models/vit_h_14_swag-80465313.pth",
    "inception": INCEPTION_URL,
    "lpips": "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
}


def fetch_eval_weights(folder: str | os.PathLike) -> dict[str, Path]:
    """Download the default evaluation networks' files into ``folder`` (on a machine with internet), each
    checked against the SHA-256 prefix in its file name; returns their paths by config key."""
    import re

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for key, url in EVAL_WEIGHTS.items():
        name = url.rsplit("/", 1)[-1]
        target = folder / name
        if not target.is_file():
            prefix = re.search(r"-([a-f0-9]{6,})\.", name).group(1)
            torch.hub.download_url_to_file(url, str(target), hash_prefix=prefix, progress=progress.enabled())
        paths[key] = target
    return paths
