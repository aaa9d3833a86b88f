"""The embedded default's evaluation classifier: a small torchvision network that knows the synthetic pictures.

The paper measures n-way top-1, FID and IS with networks that know ImageNet (ViT-H/14, Inception-v3); a
random network makes those figures meaningless. :func:`train_picture_classifier` trains a torchvision
classifier on pictures the synthetic generator draws from a stream of its own
(``default_rng([seed, CLASSIFIER_TRAIN_STREAM])``) and :func:`held_out_accuracy` checks it on another
stream (``HELD_OUT_STREAM``); neither ever contains a picture of a synthetic dataset. Pictures are stored
as JPEG and read back at ``image_size`` like the dataset's, then preprocessed exactly as
:func:`~dreamdiffusion.models.eval_models.load_classifier` does for a local classifier.

:func:`write_picture_classifier` writes ``classifier.safetensors`` (metadata ``provenance``) and
``classifier.json`` (the ``ClassifierConfig`` fields that rebuild it), loadable by ``load_classifier`` and,
as the Inception stand-in of FID/IS, by ``load_inception(InceptionConfig("classifier", weights_path))``.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

# np.random.default_rng([seed, stream]) of the training and held-out pictures (the dataset uses 1-4).
CLASSIFIER_TRAIN_STREAM = 0x434C5346  # "CLSF"
HELD_OUT_STREAM = 0x48454C44  # "HELD"


@dataclass(frozen=True)
class PictureClassifierConfig:
    """Settings of :func:`train_picture_classifier`: a torchvision ``architecture`` for ``classes`` classes at
    ``image_size`` px, trained ``steps`` AdamW steps of ``batch_size`` out of ``pictures_per_class`` pictures
    of each class at peak learning rate ``lr`` (one cycle)."""

    classes: int = 10
    seed: int = 0
    architecture: str = "resnet18"
    image_size: int = 32
    pictures_per_class: int = 60
    steps: int = 100
    batch_size: int = 32
    lr: float = 2e-3

    def __post_init__(self) -> None:
        if self.classes < 2:
            raise ValueError(f"classes={self.classes}: a classifier needs at least 2 classes")
        for key in ("pictures_per_class", "steps", "batch_size", "image_size"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key}={getattr(self, key)} must be >= 1")

    def to_dict(self) -> dict:
        return asdict(self)


def own_picture_images(stream: int, classes: int, pictures_per_class: int, seed: int, image_size: int):
    """``(images [N, 3, S, S] in [0, 1], labels [N])`` of pictures from ``default_rng([seed, stream])``, as
    stage 3 sees pictures (JPEG, resized to ``image_size``)."""
    from dreamdiffusion.data.images import stored_pictures_tensor
    from dreamdiffusion.data.synthetic import own_pictures

    pictures, labels = own_pictures(stream, classes, pictures_per_class, seed)
    return stored_pictures_tensor(pictures, image_size).add_(1).div_(2), torch.tensor(labels)


def train_picture_classifier(config: PictureClassifierConfig) -> tuple[nn.Module, list[float]]:
    """The trained torchvision model (eval mode) and its loss at every step (cross-entropy)."""
    import torchvision

    from dreamdiffusion.models.eval_models import local_preprocess

    images, labels = own_picture_images(
        CLASSIFIER_TRAIN_STREAM, config.classes, config.pictures_per_class, config.seed, config.image_size
    )
    inputs = local_preprocess(config.image_size)(images)
    torch.manual_seed(config.seed)
    model = torchvision.models.get_model(config.architecture, weights=None, num_classes=config.classes)
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.lr)
    # Warm up, then anneal to ~0: the last steps average out the noise of small batches.
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=config.lr, total_steps=config.steps, pct_start=0.2)
    generator = torch.Generator().manual_seed(config.seed)
    model.train()
    losses = []
    for _ in range(config.steps):
        batch = torch.randint(0, len(labels), (config.batch_size,), generator=generator)
        loss = F.cross_entropy(model(inputs[batch]), labels[batch])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        losses.append(loss.item())
    recompute_batch_norm_statistics(model, inputs[torch.randperm(len(inputs), generator=generator)])
    return model.eval(), losses


@torch.no_grad()
def recompute_batch_norm_statistics(model: nn.Module, inputs: torch.Tensor, batch_size: int = 100) -> None:
    """Set every batch-norm layer's running mean/variance to the average over the batches of ``inputs`` (model
    input ``[N, 3, S, S]``, shuffled: a batch of one class would miss the variance between classes).
    A short training leaves the running averages behind the weights (torchvision's MobileNetV3 even updates
    them with momentum 0.01, so they stay near their initial values and the eval-mode network guesses)."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
    model.train()
    for chunk in inputs.split(batch_size):
        model(chunk)
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum


def write_picture_classifier(folder: str | os.PathLike, model: nn.Module, config: PictureClassifierConfig) -> Path:
    """Write ``folder/classifier.safetensors`` (with its provenance) and ``folder/classifier.json``; returns
    the weights path (the eval config's ``classifier.weights_path`` and ``inception.weights_path``)."""
    from safetensors.torch import save_file

    from dreamdiffusion.atomic import atomic_path, write_text
    from dreamdiffusion.models.eval_models import classifier_sidecar

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "classifier.safetensors"
    provenance = (
        f"classifier of the embedded default: {config.steps} steps on {config.classes * config.pictures_per_class} "
        f"synthetic pictures ({config.classes} classes) drawn from default_rng([{config.seed}, {CLASSIFIER_TRAIN_STREAM}]), "
        "none from a synthetic dataset"
    )
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={"provenance": provenance})
    build = {"architecture": config.architecture, "num_classes": config.classes, "image_size": config.image_size, "builder_kwargs": {}}
    write_text(classifier_sidecar(path), json.dumps(build, indent=2) + "\n")
    return path


@torch.no_grad()
def held_out_accuracy(classifier, classes: int, pictures_per_class: int = 30, seed: int = 0, image_size: int = 64) -> float:
    """Top-1 accuracy of ``classifier`` (images in [0, 1] → probabilities, as ``load_classifier`` returns)
    on ``pictures_per_class`` pictures of each class from the held-out stream."""
    images, labels = own_picture_images(HELD_OUT_STREAM, classes, pictures_per_class, seed, image_size)
    return float((classifier(images).argmax(dim=1) == labels).float().mean())
