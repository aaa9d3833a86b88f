"""AdamW with the implementation that suits the device the parameters live on; the update is the same maths.

PyTorch's default on CPU is a Python loop over the parameters (several element-wise kernels each); its fused
kernel does one pass per parameter and was 3x faster for the 18.3M autoencoder on a 2-core AVX-512 CPU.
On GPUs fused is faster than the default ``foreach`` too, but the fused kernel unscales gradients itself, so
Lightning refuses gradient clipping with it under a gradient scaler (``precision: 16-mixed``): then the
default stays.
"""

from __future__ import annotations

from collections.abc import Iterable

import lightning as L
import torch

FUSED_DEVICES = ("cpu", "cuda")


def adamw_implementation(device_types: Iterable[str], grad_scaler: bool) -> dict[str, bool]:
    """Keyword arguments for ``torch.optim.AdamW``: ``{"fused": True}`` when all parameters are on one device type of
    :data:`FUSED_DEVICES` and no gradient scaler is in use, else ``{}`` (PyTorch's choice)."""
    devices = set(device_types)
    if len(devices) == 1 and devices <= set(FUSED_DEVICES) and not grad_scaler:
        return {"fused": True}
    return {}


def uses_grad_scaler(module: L.LightningModule) -> bool:
    """Whether the Trainer ``module`` is attached to scales the loss (``16-mixed``); ``False`` when detached."""
    try:
        plugin = module.trainer.precision_plugin
    except RuntimeError:  # not attached to a Trainer: nothing scales the loss
        return False
    return getattr(plugin, "scaler", None) is not None


def build_adamw(module: L.LightningModule, params: list, **kwargs) -> torch.optim.AdamW:
    """``torch.optim.AdamW(params, **kwargs)`` with the implementation of :func:`adamw_implementation`.

    ``params``: tensors or parameter groups (dicts with ``"params"``), already on their training device.
    """
    tensors = [p for group in params for p in (group["params"] if isinstance(group, dict) else [group])]
    choice = adamw_implementation({p.device.type for p in tensors}, uses_grad_scaler(module))
    return torch.optim.AdamW(params, **kwargs, **choice)


__all__ = ["FUSED_DEVICES", "adamw_implementation", "uses_grad_scaler", "build_adamw"]
