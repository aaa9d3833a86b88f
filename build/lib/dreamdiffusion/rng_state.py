"""Random-number state in checkpoints, so a resumed run draws what the interrupted one would have.

Masking (stage 1) and noise/timesteps (stage 2) come from the global torch RNG. Lightning does not save
it; :class:`RNGStateCallback` does, and puts it back when training starts again — after the sanity
validation, which would otherwise consume random numbers the uninterrupted run never drew there.
"""

from __future__ import annotations

import random

import lightning as L
import numpy as np
import torch


def _numpy_state() -> tuple:
    """NumPy's global state with its key array as a tensor (checkpoints load with ``weights_only=True``)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return kind, torch.from_numpy(keys.copy()), int(pos), int(has_gauss), float(cached)


class RNGStateCallback(L.Callback):
    """Saves the Python, NumPy and torch (CPU and CUDA) RNG states with every checkpoint."""

    def __init__(self) -> None:
        self._pending: dict | None = None

    def state_dict(self) -> dict:
        state = {
            "python": random.getstate(),
            "numpy": _numpy_state(),
            "torch": torch.get_rng_state(),
        }
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        self._pending = state_dict

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._pending is None:
            return
        state, self._pending = self._pending, None
        random.setstate(state["python"])
        kind, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((kind, keys.numpy(), pos, has_gauss, cached))
        torch.set_rng_state(state["torch"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])
