"""The networks stage 3 measures with: the ImageNet classifier, Inception-v3 (FID/IS) and LPIPS's AlexNet.

This module builds each network from its config (:class:`ClassifierConfig`, :class:`InceptionConfig`,
:class:`LPIPSConfig`). Each comes from a **local weights file** when one is configured (clusters without
internet) or from the library's own download otherwise, always read as plain tensors (``.safetensors``, or a
PyTorch file through ``torch.load(weights_only=True)``) and loaded with ``strict=True``: reading, downloading
and fetching ahead of time are :mod:`dreamdiffusion.models.eval_weights`'s job.

=================  ===========================================  ==================================================
network            default source                               offline: put this file at ``weights_path``
=================  ===========================================  ==================================================
classifier         torchvision ``vit_h_14``,                    ``vit_h_14_swag-80465313.pth`` (torchvision's file),
                   ``ViT_H_14_Weights.IMAGENET1K_SWAG_E2E_V1``  or leave ``weights_path`` empty with the file in
                   (518 px, bicubic, ImageNet mean/std)         ``$TORCH_HOME/hub/checkpoints/``
Inception-v3       torch-fidelity's FID Inception               ``weights-inception-2015-12-05-6726825d.pth``
                   (``inception_v3_fidelity``)                  (same cache rule)
LPIPS AlexNet      torchvision ``AlexNet_Weights.IMAGENET1K_V1``  ``alexnet-owt-7be5be79.pth`` (same cache rule)
                   + LPIPS linear heads shipped in torchmetrics
=================  ===========================================  ==================================================

Tiny versions for tests and the demo (:func:`~dreamdiffusion.models.tiny_eval_networks.build_tiny_eval_networks`)
are the same classifier builder (torchvision) and AlexNet with random weights, and
:class:`~dreamdiffusion.models.tiny_eval_networks.TinyInception`; they are saved to files and loaded back
through the same functions a cluster uses.

Provenance: every weights file this project writes carries safetensors metadata ``"provenance"`` (``"random"``
for random networks, a description for trained ones). Each loader sets ``provenance`` on the network it
returns (:func:`~dreamdiffusion.models.eval_weights.weights_provenance`), so stage 3 can label a figure that
comes from a random network.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from dreamdiffusion.models.eval_weights import INCEPTION_URL, download_state_dict, load_strict, read_state_dict, weights_provenance
from dreamdiffusion.models.tiny_eval_networks import TinyInception

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# ----------------------------------------------------------------------------------------------- classifier
@dataclass
class ClassifierConfig:
    """The ImageNet classifier of the n-way accuracy (authors: torchvision ViT-H/14 SWAG).

    ``weights`` names a torchvision weights enum member of ``architecture`` (its preprocessing, class count
    and download URL); ``weights_path`` a local file used instead of the download. Without ``weights``,
    ``weights_path``, ``num_classes`` and ``image_size`` are required and the preprocessing is resize +
    centre crop to ``image_size`` with ImageNet mean/std. ``builder_kwargs`` go to the torchvision builder.
    """

    architecture: str = "vit_h_14"
    weights: str | None = "IMAGENET1K_SWAG_E2E_V1"
    weights_path: str | None = None
    num_classes: int | None = None
    image_size: int | None = None
    builder_kwargs: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


class ImageClassifier(nn.Module):
    """Images ``[N, 3, H, W]`` in ``[0, 1]`` → class probabilities ``[N, num_classes]`` (preprocessing included)."""

    def __init__(self, model: nn.Module, preprocess: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.model, self.preprocess, self.num_classes = model.eval(), preprocess, num_classes
        self.requires_grad_(False)

    def train(self, mode: bool = True) -> ImageClassifier:
        return super().train(False)  # never leaves eval mode (dropout, batch norm)

    @torch.no_grad()
    def forward(self, images: Tensor) -> Tensor:
        return self.model(self.preprocess(images.float().clamp(0, 1))).float().softmax(dim=-1)


def local_preprocess(image_size: int) -> nn.Module:
    """Preprocessing of a classifier given by ``weights_path`` alone: resize + centre crop to ``image_size``
    (bilinear), ImageNet mean/std; images ``[N, 3, H, W]`` in [0, 1]."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms._presets import ImageClassification

    return ImageClassification(
        crop_size=image_size, resize_size=image_size, mean=IMAGENET_MEAN, std=IMAGENET_STD,
        interpolation=InterpolationMode.BILINEAR,
    )


def load_classifier(config: ClassifierConfig) -> ImageClassifier:
    """Build the configured torchvision classifier and load its weights (local file or torchvision download)."""
    import torchvision

    if config.architecture not in torchvision.models.list_models():
        raise ValueError(f"classifier architecture {config.architecture!r} is not a torchvision model name")
    kwargs = dict(config.builder_kwargs)
    if config.num_classes is not None:
        kwargs["num_classes"] = config.num_classes
    if config.weights is not None:
        enum = torchvision.models.get_model_weights(config.architecture)
        try:
            weights = enum[config.weights]
        except KeyError:
            raise ValueError(
                f"classifier weights {config.weights!r} are not one of {config.architecture}'s "
                f"{', '.join(w.name for w in enum)}"
            ) from None
        kwargs.setdefault("num_classes", len(weights.meta["categories"]))
        if config.architecture.startswith("vit_"):  # the SWAG weights are for a larger image than the builder's 224
            kwargs.setdefault("image_size", weights.meta["min_size"][0])
        preprocess = weights.transforms()
        source = config.weights_path or weights.url
    else:
        if config.weights_path is None or config.image_size is None or config.num_classes is None:
            raise ValueError(
                "classifier: without `weights` (a torchvision weights name) give weights_path, num_classes and image_size"
            )
        preprocess = local_preprocess(config.image_size)
        source = config.weights_path
    model = torchvision.models.get_model(config.architecture, weights=None, **kwargs)
    if config.weights_path is not None:
        state = read_state_dict(config.weights_path, "classifier")
    else:
        state = download_state_dict(weights.url, f"classifier {config.architecture} {config.weights}")
    load_strict(model, state, f"classifier weights {source}")
    num_classes = int(kwargs["num_classes"])
    classifier = ImageClassifier(model, preprocess, num_classes)
    classifier.provenance = weights_provenance(config.weights_path)
    return classifier


# ------------------------------------------------------------------------------------------------- Inception
@dataclass
class InceptionConfig:
    """Inception network of FID/IS: ``inception_v3_fidelity`` (the standard FID network; 2048 pool features,
    1008 logits), ``tiny`` (:class:`TinyInception`, random, for tests) or ``classifier`` (a torchvision
    classifier trained on the pictures, :class:`ClassifierInception`; the demo's). ``weights_path``: local
    file (for ``classifier``: the classifier's ``.safetensors`` with its ``.json`` beside it); empty:
    torch-fidelity's published file through the torch.hub cache."""

    architecture: str = "inception_v3_fidelity"
    weights_path: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


class InceptionOutput(nn.Module):
    """torch-fidelity Inception (via torchmetrics' ``NoTrainInceptionV3``) giving one output as ``[N, d]``."""

    def __init__(self, net: nn.Module, num_features: int) -> None:
        super().__init__()
        self.net, self.num_features = net, num_features

    def forward(self, images: Tensor) -> Tensor:
        return self.net(images)


class ClassifierInception(nn.Module):
    """A trained torchvision classifier in Inception's role: uint8 ``[N, 3, H, W]`` → its penultimate features
    ``[N, num_features]`` (the input of its last ``nn.Linear``; ``output="pool"``, for FID) or its logits
    ``[N, num_classes]`` (``output="logits"``, for IS). Preprocessing as :class:`ImageClassifier`'s."""

    def __init__(self, classifier: ImageClassifier, output: str = "pool") -> None:
        super().__init__()
        if output not in ("pool", "logits"):
            raise ValueError(f"output must be 'pool' or 'logits', got {output!r}")
        linears = [m for m in classifier.model.modules() if isinstance(m, nn.Linear)]
        if not linears:
            raise ValueError(f"{type(classifier.model).__name__} has no nn.Linear head to take penultimate features from")
        self.classifier, self.head, self.output = classifier, linears[-1], output
        self.num_features = self.head.in_features if output == "pool" else classifier.num_classes
        self.provenance = getattr(classifier, "provenance", "unlabelled")  # FID/IS are as meaningful as the classifier

    @torch.no_grad()
    def forward(self, images: Tensor) -> Tensor:
        if images.dtype != torch.uint8:
            raise TypeError(f"Inception networks take uint8 images, got {images.dtype}")
        captured = []
        hook = self.head.register_forward_hook(lambda module, inputs, output: captured.append(inputs[0]))
        try:
            logits = self.classifier.model(self.classifier.preprocess(images.float() / 255))
        finally:
            hook.remove()
        return (captured[0] if self.output == "pool" else logits).float()


def classifier_sidecar(weights_path: str | os.PathLike) -> Path:
    """The JSON beside a trained classifier's weights that says how to build it (``<weights>.json``)."""
    return Path(weights_path).with_suffix(".json")


def load_inception(config: InceptionConfig) -> tuple[nn.Module, nn.Module]:
    """``(pool_features_net, logits_net)`` for FID and IS; both take uint8 images ``[N, 3, H, W]``."""
    if config.architecture == "classifier":
        if config.weights_path is None:
            raise ValueError("inception architecture 'classifier' needs weights_path (written by `dreamdiffusion weights demo`)")
        sidecar = classifier_sidecar(config.weights_path)
        if not sidecar.is_file():
            raise FileNotFoundError(
                f"inception architecture 'classifier': {sidecar} is missing; it says how to build the classifier "
                f"{config.weights_path} (`dreamdiffusion weights demo` writes both)"
            )
        classifier = load_classifier(ClassifierConfig(**json.loads(sidecar.read_text()), weights=None, weights_path=config.weights_path))
        return ClassifierInception(classifier, "pool"), ClassifierInception(classifier, "logits")
    if config.architecture == "tiny":
        if config.weights_path is None:
            raise ValueError("inception architecture 'tiny' needs weights_path (written by `dreamdiffusion weights tiny-eval`)")
        meta = json.loads(Path(config.weights_path).with_suffix(".json").read_text())
        state = read_state_dict(config.weights_path, "Inception")
        nets = []
        for output in ("pool", "logits"):
            net = TinyInception(meta["num_features"], meta["n_classes"], output)
            nets.append(load_strict(net, state, f"Inception weights {config.weights_path}").eval().requires_grad_(False))
            nets[-1].provenance = weights_provenance(config.weights_path)
        return nets[0], nets[1]
    if config.architecture != "inception_v3_fidelity":
        raise ValueError(
            f"inception architecture {config.architecture!r}: choose 'inception_v3_fidelity', 'classifier' or 'tiny'"
        )
    from torchmetrics.image.fid import NoTrainInceptionV3

    if config.weights_path is not None:
        state = read_state_dict(config.weights_path, "Inception")
    else:
        state = download_state_dict(INCEPTION_URL, "FID Inception-v3")
    # torch-fidelity only reads weights from a path, with weights_only=False: give it a copy of tensors we
    # have already read safely.
    with tempfile.TemporaryDirectory() as tmp:
        safe_copy = Path(tmp) / "inception.pth"
        torch.save({k: v.contiguous() for k, v in state.items()}, safe_copy)
        pool = NoTrainInceptionV3(name="inception-v3-compat", features_list=["2048"], feature_extractor_weights_path=str(safe_copy))
        logits = NoTrainInceptionV3(
            name="inception-v3-compat", features_list=["logits_unbiased"], feature_extractor_weights_path=str(safe_copy)
        )
    nets = InceptionOutput(pool, 2048), InceptionOutput(logits, 1008)
    for net in nets:
        net.provenance = weights_provenance(config.weights_path)
    return nets


# ----------------------------------------------------------------------------------------------------- LPIPS
@dataclass
class LPIPSConfig:
    """LPIPS network: AlexNet convolutional features (``weights_path``: torchvision's AlexNet state dict, full or
    features only; empty: torchvision's download through the torch.hub cache) and the LPIPS linear heads
    shipped inside torchmetrics (no download)."""

    weights_path: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def load_lpips_net(config: LPIPSConfig) -> nn.Module:
    """torchmetrics' LPIPS network (``net="alex"``) with AlexNet features loaded from ``config``; takes two
    image batches in ``[-1, 1]`` and returns ``[N, 1, 1, 1]`` distances."""
    import torchvision
    from torchmetrics.functional.image.lpips import _NoTrainLpips

    if config.weights_path is not None:
        state, source = read_state_dict(config.weights_path, "LPIPS AlexNet"), config.weights_path
    else:
        weights = torchvision.models.AlexNet_Weights.IMAGENET1K_V1
        state, source = download_state_dict(weights.url, "LPIPS AlexNet"), weights.url
    # LPIPS uses only AlexNet's convolutional part; a full torchvision state dict also holds the classifier.
    features = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
    alexnet_features = load_strict(torchvision.models.alexnet(weights=None).features, features, f"LPIPS AlexNet weights {source}")
    net = _NoTrainLpips(net="alex", pnet_rand=True)  # random backbone: no download; linear heads from torchmetrics
    for slice_ in (net.net.slice1, net.net.slice2, net.net.slice3, net.net.slice4, net.net.slice5):
        for name, layer in slice_.named_children():
            layer.load_state_dict(alexnet_features[int(name)].state_dict(), strict=True)
    net.provenance = weights_provenance(config.weights_path)
    return net.eval().requires_grad_(False)
