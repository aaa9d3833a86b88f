"""Random stand-ins for the evaluation networks, for tests, benchmarks and the demo: figures measured with them
mean nothing.

:func:`build_tiny_eval_networks` writes the same classifier builder (torchvision) and AlexNet with random
weights, and :class:`TinyInception`; :func:`write_random_inception_v3` writes torch-fidelity's real FID
Inception-v3 architecture with random weights. They are saved to files and loaded back through the very
loaders a cluster uses (:mod:`dreamdiffusion.models.eval_models`). Every file carries the safetensors metadata
``{"provenance": "random"}``, so stage 3 labels what they measure.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import Tensor, nn

from dreamdiffusion.models.provenance import PROVENANCE_KEY, RANDOM


class TinyInception(nn.Module):
    """A small stand-in with Inception's interface: uint8 ``[N, 3, H, W]`` → pool features ``[N, num_features]``
    (``output="pool"``) or logits ``[N, n_classes]`` (``output="logits"``). For tests and the demo only."""

    def __init__(self, num_features: int = 64, n_classes: int = 100, output: str = "pool") -> None:
        super().__init__()
        if output not in ("pool", "logits"):
            raise ValueError(f"output must be 'pool' or 'logits', got {output!r}")
        self.num_features, self.n_classes, self.output = num_features, n_classes, output
        self.body = nn.Sequential(
            nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(16, num_features, 3, stride=2, padding=1),
            nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.fc = nn.Linear(num_features, n_classes)

    def forward(self, images: Tensor) -> Tensor:
        if images.dtype != torch.uint8:
            raise TypeError(f"Inception networks take uint8 images, got {images.dtype}")
        x = nn.functional.interpolate(images.float() / 255, size=(32, 32), mode="bilinear", antialias=True)
        pool = self.body(x)
        return pool if self.output == "pool" else self.fc(pool)


def build_tiny_eval_networks(folder: str | os.PathLike, seed: int = 0, n_classes: int = 100) -> dict[str, str]:
    """Write random evaluation networks (safetensors metadata ``provenance: random``) to ``folder`` and return
    their paths by config key:

    * ``classifier.safetensors``: torchvision ``squeezenet1_1`` with ``n_classes`` classes (64 px input);
    * ``inception.safetensors`` + ``inception.json``: :class:`TinyInception` (64 pool features);
    * ``alexnet.safetensors``: torchvision AlexNet convolutional features.

    Each file carries the safetensors metadata ``{"provenance": "random"}``: figures measured with them mean nothing.
    """
    import torchvision
    from safetensors.torch import save_file

    from dreamdiffusion.atomic import atomic_path, write_text

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)

    def save(module: nn.Module, name: str, prefix: str = "") -> str:
        state = {prefix + k: v.detach().contiguous() for k, v in module.state_dict().items()}
        with atomic_path(folder / name) as tmp:
            save_file(state, str(tmp), metadata={PROVENANCE_KEY: RANDOM})
        return str(folder / name)

    paths = {"classifier": save(torchvision.models.squeezenet1_1(weights=None, num_classes=n_classes), "classifier.safetensors")}
    inception = TinyInception(num_features=64, n_classes=n_classes)
    write_text(folder / "inception.json", json.dumps({"num_features": 64, "n_classes": n_classes}) + "\n")
    paths["inception"] = save(inception, "inception.safetensors")
    paths["lpips"] = save(torchvision.models.alexnet(weights=None).features, "alexnet.safetensors", prefix="features.")
    return paths


def write_random_inception_v3(path: str | os.PathLike, seed: int = 0) -> Path:
    """Save torch-fidelity's FID Inception-v3 (the real architecture, 23.9M parameters) with **random** weights
    to ``path`` (safetensors, metadata ``{"provenance": "random"}``): for tests and benchmarks of the
    ``inception_v3_fidelity`` loading path without the published file. Its figures mean nothing."""
    from unittest import mock

    from safetensors.torch import save_file
    from torch_fidelity import feature_extractor_inceptionv3 as fidelity

    from dreamdiffusion.atomic import atomic_path

    class RandomInception(fidelity.FeatureExtractorInceptionV3):
        def load_state_dict(self, state_dict, strict=True, assign=False):  # keep the random initialisation
            return None

    torch.manual_seed(seed)
    with mock.patch.object(fidelity, "load_state_dict_from_url", lambda *args, **kwargs: {}):
        net = RandomInception("inception-v3-compat", ["2048"])
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp), metadata={PROVENANCE_KEY: RANDOM})
    return path
