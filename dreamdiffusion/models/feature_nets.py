"""Feature networks of the MindEye reconstruction suite: a torchvision model cut at one layer, or CLIP's image tower.

==============  ======================================  ======================  ====================================
figure          network (torchvision builder, weights)  layer                   input (resize, then ImageNet mean/std)
==============  ======================================  ======================  ====================================
AlexNet(2)      ``alexnet``, ``IMAGENET1K_V1``          ``features.4``          256 px
AlexNet(5)      ``alexnet``, ``IMAGENET1K_V1``          ``features.11``         256 px
Inception       ``inception_v3``, ``IMAGENET1K_V1``     ``avgpool``             342 px
EfficientNet    ``efficientnet_b1``, ``IMAGENET1K_V1``  ``avgpool``             255 px
SwAV            ``resnet50`` + SwAV's published file    ``avgpool``             224 px
CLIP            CLIP ViT-L/14 image embedding           (projection)            the CLIP processor's size and mean/std
==============  ======================================  ======================  ====================================

SwAV (Caron et al., 2020) has no torchvision weights: its network is torchvision's ResNet-50 without ``fc``, and
its file (``swav_800ep_pretrain.pth.tar``, ``weights_url``) is a state dict saved from ``DataParallel``: the
``module.`` prefix is stripped and the keys of its training heads (``projection_head.``, ``prototypes.``), which
the features never use, are dropped by name (``ignore_prefixes``). Every other key must match.

Weights come from ``weights_path`` (a local ``.safetensors`` or PyTorch file read as tensors only) or are
downloaded through the torch.hub cache (torchvision's URL for ``weights``, else ``weights_url``). The loaded
state must cover every parameter the cut network uses; keys of layers past the cut are left out (the cut network
does not hold them). Tests save small random networks and load them through the same path.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from dreamdiffusion import progress
from dreamdiffusion.models.eval_models import IMAGENET_MEAN, IMAGENET_STD
from dreamdiffusion.models.eval_weights import download_state_dict, load_strict, read_state_dict, weights_provenance

SWAV_URL = "https://dl.fbaipublicfiles.com/deepcluster/swav_800ep_pretrain.pth.tar"


@dataclass(frozen=True)  # a signature default of the THINGS evaluation: shared, so never mutated
class FeatureNetConfig:
    """One feature network (module docstring): torchvision ``architecture`` cut at ``layer``, its weights
    (``weights`` enum name, or ``weights_url``, or a local ``weights_path``), the input side ``image_size``,
    ``builder_kwargs`` for the builder, ``strip_prefix`` removed from every key of the file and
    ``ignore_prefixes`` of keys the file may hold beyond the network (training heads)."""

    architecture: str = "alexnet"
    layer: str = "features.4"
    weights: str | None = "IMAGENET1K_V1"
    weights_url: str | None = None
    weights_path: str | None = None
    image_size: int = 256
    builder_kwargs: dict = field(default_factory=dict)
    strip_prefix: str = ""
    ignore_prefixes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def alexnet_2() -> FeatureNetConfig:
    return FeatureNetConfig("alexnet", "features.4")


def alexnet_5() -> FeatureNetConfig:
    return FeatureNetConfig("alexnet", "features.11")


def inception_v3() -> FeatureNetConfig:
    return FeatureNetConfig("inception_v3", "avgpool", image_size=342,
                            builder_kwargs={"aux_logits": True, "init_weights": False, "transform_input": True})


def efficientnet_b1() -> FeatureNetConfig:
    return FeatureNetConfig("efficientnet_b1", "avgpool", image_size=255)


def swav() -> FeatureNetConfig:
    return FeatureNetConfig("resnet50", "avgpool", weights=None, weights_url=SWAV_URL, image_size=224,
                            strip_prefix="module.", ignore_prefixes=["projection_head.", "prototypes."])


class FeatureNetwork(nn.Module):
    """Images ``[N, 3, H, W]`` in ``[0, 1]`` → features ``[N, D]`` (resize, normalise, network, flatten)."""

    def __init__(self, body: nn.Module, image_size: int, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.body, self.image_size = body.eval().requires_grad_(False), image_size
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> FeatureNetwork:
        return super().train(False)  # batch norm and dropout stay in eval mode

    @torch.no_grad()
    def forward(self, images: Tensor) -> Tensor:
        x = nn.functional.interpolate(images.float().clamp(0, 1), size=(self.image_size, self.image_size),
                                      mode="bilinear", antialias=True, align_corners=False)
        out = self.body((x - self.mean) / self.std)
        out = out["features"] if isinstance(out, dict) else out
        return out.float().flatten(1)


def _state(config: FeatureNetConfig, weights_url: str | None) -> tuple[dict[str, Tensor], str]:
    if config.weights_path is not None:
        return read_state_dict(config.weights_path, f"{config.architecture} features"), config.weights_path
    if weights_url is None:
        raise ValueError(f"feature network {config.architecture}: give weights (a torchvision name), weights_url or weights_path")
    return download_state_dict(weights_url, f"{config.architecture} features"), weights_url


def load_feature_net(config: FeatureNetConfig) -> FeatureNetwork:
    """Build ``config.architecture``, cut it at ``config.layer`` and load its weights strictly (module docstring)."""
    import torchvision
    from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names

    if config.architecture not in torchvision.models.list_models():
        raise ValueError(f"feature network architecture {config.architecture!r} is not a torchvision model name")
    url = config.weights_url
    if config.weights is not None:
        enum = torchvision.models.get_model_weights(config.architecture)
        try:
            url = enum[config.weights].url
        except KeyError:
            raise ValueError(
                f"weights {config.weights!r} are not one of {config.architecture}'s {', '.join(w.name for w in enum)}"
            ) from None
    model = torchvision.models.get_model(config.architecture, weights=None, **config.builder_kwargs).eval()
    nodes = get_graph_node_names(model)[1]
    if config.layer not in nodes:
        raise ValueError(f"layer {config.layer!r} is not a node of {config.architecture}; choose one of {', '.join(nodes[-8:])} ...")
    state, source = _state(config, url)
    if config.strip_prefix and all(k.startswith(config.strip_prefix) for k in state):
        state = {k[len(config.strip_prefix):]: v for k, v in state.items()}
    full = set(model.state_dict())
    foreign = [k for k in state if k not in full and not any(k.startswith(p) for p in config.ignore_prefixes)]
    if foreign:
        raise ValueError(
            f"{source}: {len(foreign)} key(s) such as {foreign[:3]} are not parameters of torchvision's "
            f"{config.architecture}; check architecture, builder_kwargs, strip_prefix and ignore_prefixes"
        )
    body = create_feature_extractor(model, return_nodes={config.layer: "features"})
    needed = set(body.state_dict())
    load_strict(body, {k: v for k, v in state.items() if k in needed}, f"{config.architecture} weights {source}")
    net = FeatureNetwork(body, config.image_size, IMAGENET_MEAN, IMAGENET_STD)
    net.provenance = weights_provenance(config.weights_path)
    return net


class CLIPImageFeatures(nn.Module):
    """Images ``[N, 3, H, W]`` in ``[0, 1]`` → CLIP image embeddings ``[N, projection_dim]`` (the processor's
    resize to its crop size, bicubic, and its mean/std, on tensors)."""

    def __init__(self, model: nn.Module, image_size: int, mean: list[float], std: list[float]) -> None:
        super().__init__()
        self.model, self.image_size = model.eval().requires_grad_(False), image_size
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> CLIPImageFeatures:
        return super().train(False)

    @torch.no_grad()
    def forward(self, images: Tensor) -> Tensor:
        x = nn.functional.interpolate(images.float().clamp(0, 1), size=(self.image_size, self.image_size),
                                      mode="bicubic", antialias=True, align_corners=False).clamp(0, 1)
        pixels = ((x - self.mean) / self.std).to(self.model.dtype)
        return self.model(pixel_values=pixels).image_embeds.float()


def clip_features(model: nn.Module, processor) -> CLIPImageFeatures:
    """A loaded CLIP image tower (``CLIPVisionModelWithProjection``) as a feature network, with its processor's
    crop size and mean/std (the model is shared, not copied: stage 3's retrieval uses the same one)."""
    return CLIPImageFeatures(model, int(processor.crop_size["height"]), list(processor.image_mean), list(processor.image_std))


# The published files of the suite's networks, by the eval config key that takes their local path.
SUITE_WEIGHTS = {
    "alexnet": "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",  # alexnet_2 and alexnet_5
    "inception_v3": "https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth",
    "efficientnet_b1": "https://download.pytorch.org/models/efficientnet_b1_rwightman-bac287d4.pth",
    "swav": SWAV_URL,
}


def fetch_suite_weights(folder: str | os.PathLike) -> dict[str, Path]:
    """Download the suite's files into ``folder`` (on a machine with internet); a file whose name carries a
    SHA-256 prefix (torchvision's) is checked against it. Returns their paths by :data:`SUITE_WEIGHTS` key."""
    import re

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for key, url in SUITE_WEIGHTS.items():
        target = folder / url.rsplit("/", 1)[-1]
        if not target.is_file():
            prefix = re.search(r"-([a-f0-9]{8,})\.", target.name)
            torch.hub.download_url_to_file(url, str(target), hash_prefix=prefix.group(1) if prefix else None,
                                           progress=progress.enabled())
        paths[key] = target
    return paths
