"""Stage-3 metrics (SPEC.md, "Stage 3 — evaluation"), all torchmetrics ``Metric`` objects so they sync under DDP.

* :class:`NWayTopKAccuracy` — the paper's n-way top-k classification accuracy (Table 2 reports 50-way top-1).
* :class:`ImageMetrics` — FID (Inception-v3 pool features, 2048), IS (:class:`InceptionScore`: Inception-v3 logits, 10 splits), PSNR
  (mean over images) and SSIM (Gaussian 11×11, σ 1.5), both with data range 1.0 on images in [0, 1], and LPIPS
  (AlexNet), from torchmetrics, around feature networks loaded by :mod:`dreamdiffusion.models.eval_models`.
* :class:`PerceptualDistance` — LPIPS as a metric around an injected network (torchmetrics' own class
  always downloads its backbone; ours takes the network so the AlexNet can come from a local file).

Images passed to :meth:`ImageMetrics.update` are float ``[N, 3, H, W]`` in ``[0, 1]``.
"""

from __future__ import annotations

import zlib
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn
from torchmetrics import Metric
from torchmetrics.functional.image import peak_signal_noise_ratio

from dreamdiffusion.generation import derive_seed


def distractor_trials(n_classes: int, target: int, n_way: int, n_trials: int, seed: int) -> Tensor:
    """``[n_trials, n_way]`` class ids: column 0 is ``target``, the other ``n_way − 1`` columns are distinct
    classes ≠ ``target`` drawn uniformly (one ``torch.Generator`` seeded with ``seed``)."""
    if not 2 <= n_way <= n_classes:
        raise ValueError(f"n_way must be in [2, {n_classes}] (the classifier's number of classes), got {n_way}")
    generator = torch.Generator("cpu").manual_seed(int(seed))
    others = torch.cat([torch.arange(target), torch.arange(target + 1, n_classes)])
    picks = torch.stack([torch.randperm(n_classes - 1, generator=generator)[: n_way - 1] for _ in range(n_trials)])
    return torch.cat([torch.full((n_trials, 1), target), others[picks]], dim=1)


class NWayTopKAccuracy(Metric):
    """n-way top-k accuracy of generated images (DreamDiffusion Table 2; SPEC.md).

    For each generated image: ``n_trials`` trials, each the ground-truth class plus ``n_way − 1`` distractor
    classes ≠ it drawn at random; the trial is a hit when the ground-truth class is among the ``top_k``
    highest probabilities of those ``n_way`` classes. An image scores its mean over trials; the metric is
    the mean over images. Trials are seeded per image from ``(seed, key)`` so the figure is reproducible and
    independent of batch size and rank.

    States are sums (``dist_reduce_fx="sum"``), so the metric syncs across DDP processes.
    """

    full_state_update = False
    higher_is_better = True

    def __init__(self, n_way: int = 50, top_k: int = 1, n_trials: int = 50, seed: int = 0, **kwargs) -> None:
        super().__init__(**kwargs)
        if not 1 <= top_k < n_way:
            raise ValueError(f"top_k must be in [1, n_way), got top_k={top_k}, n_way={n_way}")
        self.n_way, self.top_k, self.n_trials, self.seed = n_way, top_k, n_trials, seed
        self.add_state("hits", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("images", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def image_scores(self, probs: Tensor, target: Tensor, keys: Tensor) -> Tensor:
        """Per-image mean hit rate ``[N]`` for class scores ``probs [N, C]``, ground truth ``target [N]``, ``keys [N]``."""
        scores = []
        for p, t, key in zip(probs.float().cpu(), target.cpu().tolist(), keys.cpu().tolist()):
            trials = distractor_trials(p.shape[0], int(t), self.n_way, self.n_trials, derive_seed(self.seed, int(key)))
            trial_scores = p[trials]  # [n_trials, n_way]; column 0 is the ground truth
            rank = (trial_scores[:, 1:] > trial_scores[:, :1]).sum(dim=1)
            scores.append((rank < self.top_k).double().mean())
        return torch.stack(scores) if scores else torch.zeros(0, dtype=torch.float64)

    def update(self, probs: Tensor, target: Tensor, keys: Tensor) -> None:
        """``probs [N, C]`` class probabilities (or logits: the ranking is the same) of generated images,
        ``target [N]`` ground-truth classes, ``keys [N]`` integer ids seeding each image's trials."""
        scores = self.image_scores(probs, target, keys)
        self.hits += scores.sum().to(self.hits.device)
        self.images += scores.numel()

    def compute(self) -> Tensor:
        if self.images == 0:
            raise RuntimeError("NWayTopKAccuracy.compute() before any update: no images were scored")
        return self.hits / self.images


class MeanMetric(Metric):
    """Mean of per-item values (sum and count states, DDP-safe); used for best-of-samples and retrieval."""

    full_state_update = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("total", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, values: Tensor) -> None:
        self.total += values.double().sum().to(self.total.device)
        self.count += values.numel()

    def compute(self) -> Tensor:
        if self.count == 0:
            raise RuntimeError(f"{type(self).__name__}.compute() before any update")
        return self.total / self.count


class PerceptualDistance(Metric):
    """LPIPS (Zhang et al. 2018) around an injected network ``net(a, b) -> [N, 1, 1, 1]`` taking images in
    ``[-1, 1]``; mean over image pairs. Build ``net`` with :func:`dreamdiffusion.models.eval_models.load_lpips_net`."""

    full_state_update = False
    higher_is_better = False

    def __init__(self, net: nn.Module, **kwargs) -> None:
        super().__init__(**kwargs)
        self.net = net.eval().requires_grad_(False)
        self.add_state("total", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: Tensor, target: Tensor) -> None:
        """``preds``, ``target``: ``[N, 3, H, W]`` in ``[0, 1]``."""
        distance = self.net(preds.float() * 2 - 1, target.float() * 2 - 1).flatten()
        self.total += distance.double().sum()
        self.count += distance.numel()

    def compute(self) -> Tensor:
        if self.count == 0:
            raise RuntimeError("PerceptualDistance.compute() before any update")
        return self.total / self.count


class InceptionScore(Metric):
    """Inception Score (Salimans et al. 2016) with torchmetrics' formula — ``exp(E_x KL(p(y|x) ‖ p(y)))`` per
    split, mean and std over ``splits`` — but with the images ordered by an integer key before splitting
    (torchmetrics shuffles with the global RNG, and its per-batch feature lists cannot be gathered when a
    process received no images). So the score does not depend on batch size, process count or RNG state.

    ``feature``: uint8 images ``[N, 3, H, W]`` → logits ``[N, C]``. Keys must be distinct integers below 2**24.
    """

    full_state_update = False
    higher_is_better = True

    def __init__(self, feature: nn.Module, splits: int = 10, **kwargs) -> None:
        super().__init__(**kwargs)
        self.inception, self.splits = feature, splits
        self.add_state("logits", [], dist_reduce_fx="cat")  # flattened [N * C]: gathers even from empty processes
        self.add_state("keys", [], dist_reduce_fx="cat")
        self.next_key = 0

    def update(self, images: Tensor, keys: Tensor | None = None) -> None:
        if keys is None:
            keys = torch.arange(self.next_key, self.next_key + images.shape[0])
        self.next_key += images.shape[0]
        if keys.numel() and int(keys.max()) >= 2**24:
            raise ValueError("InceptionScore keys must be below 2**24 (they are stored as float32)")
        logits = self.inception(images).float()
        self.logits.append(logits.flatten())
        self.keys.append(keys.to(logits.device, torch.float32))

    def compute(self) -> tuple[Tensor, Tensor]:
        from torchmetrics.utilities import dim_zero_cat

        keys = dim_zero_cat(self.keys)
        if keys.numel() < self.splits:
            raise RuntimeError(f"Inception Score needs at least {self.splits} images for {self.splits} splits, got {keys.numel()}")
        logits = dim_zero_cat(self.logits).double().view(keys.numel(), -1)[keys.argsort()]
        scores = []
        for chunk in logits.chunk(self.splits, dim=0):
            prob, log_prob = chunk.softmax(dim=1), chunk.log_softmax(dim=1)
            mean_prob = prob.mean(dim=0, keepdim=True)
            scores.append((prob * (log_prob - mean_prob.log())).sum(dim=1).mean().exp())
        scores = torch.stack(scores)
        return scores.mean().float(), scores.std().float()


@dataclass(frozen=True)
class MetricSettings:
    """What each image metric measures with; written to ``metrics.json`` beside the figures."""

    fid_features: int = 2048
    is_splits: int = 10
    data_range: float = 1.0
    ssim_kernel_size: int = 11
    ssim_sigma: float = 1.5
    lpips_net: str = "alex"

    def to_dict(self) -> dict:
        return asdict(self)


def to_uint8(images: Tensor) -> Tensor:
    """``[N, 3, H, W]`` in ``[0, 1]`` → uint8 in ``[0, 255]`` (rounded), the input Inception networks expect."""
    return (images.float().clamp(0, 1) * 255).round().to(torch.uint8)


class ImageMetrics(nn.Module):
    """FID, IS, PSNR, SSIM and LPIPS of generated images against their ground truth, as torchmetrics objects.

    ``fid_feature`` and ``is_feature`` take uint8 images ``[N, 3, H, W]`` and return ``[N, d]`` pool features
    (``num_features`` attribute = d) and ``[N, classes]`` logits; ``lpips_net`` is an LPIPS network.
    """

    def __init__(self, fid_feature: nn.Module, is_feature: nn.Module, lpips_net: nn.Module, settings: MetricSettings) -> None:
        super().__init__()
        from torchmetrics.image import FrechetInceptionDistance, StructuralSimilarityIndexMeasure

        self.settings = settings
        self.fid = FrechetInceptionDistance(feature=fid_feature, normalize=False)
        # FID sets its output dtype in update(); a process that received no images still joins compute()
        self.fid.orig_dtype = torch.float32
        self.inception_score = InceptionScore(is_feature, splits=settings.is_splits)
        # mean of per-image PSNR (not the PSNR of the pooled error), kept as sum + count states: torchmetrics'
        # per-image PSNR keeps lists of mixed dtypes that cannot be gathered from a process without images
        self.psnr = MeanMetric()
        self.ssim = StructuralSimilarityIndexMeasure(
            data_range=settings.data_range, kernel_size=settings.ssim_kernel_size, sigma=settings.ssim_sigma
        )
        self.lpips = PerceptualDistance(lpips_net)

    def update(self, generated: Tensor, ground_truth: Tensor) -> None:
        """``generated``, ``ground_truth``: ``[N, 3, H, W]`` in ``[0, 1]``, pair ``i`` ↔ ``i``, same size.
        Both sets feed FID; use :meth:`update_real` + :meth:`update_generated` when several generated
        images share one ground truth (each real image should count once)."""
        self.update_real(ground_truth)
        self.update_generated(generated, ground_truth)

    def update_real(self, ground_truth: Tensor) -> None:
        """Ground-truth images ``[N, 3, H, W]`` in ``[0, 1]`` → FID's real statistics."""
        self.fid.update(to_uint8(ground_truth), real=True)

    def update_generated(self, generated: Tensor, ground_truth: Tensor, keys: Tensor | None = None) -> None:
        """Generated images and their ground truth (same shape) → FID fake statistics, IS, PSNR, SSIM, LPIPS.
        ``keys``: distinct integer ids (< 2**24) of the generated images, ordering them for IS."""
        if generated.shape != ground_truth.shape:
            raise ValueError(
                f"generated images {tuple(generated.shape)} and ground truth {tuple(ground_truth.shape)} differ; "
                "resize the ground truth to the generated size first"
            )
        generated, ground_truth = generated.float(), ground_truth.float()
        self.fid.update(to_uint8(generated), real=False)
        self.inception_score.update(to_uint8(generated), keys)
        self.psnr.update(
            peak_signal_noise_ratio(generated, ground_truth, data_range=self.settings.data_range, dim=(1, 2, 3), reduction="none")
        )
        self.ssim.update(generated, ground_truth)
        self.lpips.update(generated, ground_truth)

    def compute(self) -> dict[str, float]:
        is_mean, is_std = self.inception_score.compute()
        return {
            "fid": float(self.fid.compute()),
            "inception_score": float(is_mean),
            "inception_score_std": float(is_std),
            "psnr": float(self.psnr.compute()),
            "ssim": float(self.ssim.compute()),
            "lpips": float(self.lpips.compute()),
        }

    def reset(self) -> None:
        for metric in (self.fid, self.inception_score, self.psnr, self.ssim, self.lpips):
            metric.reset()


# ------------------------------------------------------------------------------------- EEG -> CLIP retrieval
def image_ids(names: list[str], device: torch.device | str | None = None) -> Tensor:
    """A stable id per image name (CRC-32, float64 so it survives the float states of a metric), so image
    identity can cross processes as a tensor."""
    return torch.tensor([float(zlib.crc32(n.encode())) for n in names], dtype=torch.float64, device=device)


def retrieval_top1(predicted: Tensor, gallery: Tensor, query_ids: Tensor, gallery_ids: Tensor) -> Tensor:
    """EEG→CLIP retrieval: share of queries whose most cosine-similar gallery embedding is of their own image.

    ``predicted [N, d]`` = h(y) per trial; ``gallery [M, d]`` = CLIP image embeddings (an image may appear
    several times: its copies are identical, so ranking is unchanged).
    """
    sim = nn.functional.normalize(predicted.float(), dim=-1) @ nn.functional.normalize(gallery.float(), dim=-1).T
    return (gallery_ids[sim.argmax(dim=1)] == query_ids).float().mean()


class RetrievalTop1(nn.Module):
    """EEG→CLIP retrieval top-1 over a whole split: the CLIP head's prediction h(y) of each trial against
    the CLIP image embeddings of all trials; a hit when the nearest (cosine) embedding is of the trial's
    own image. Embeddings are gathered from every process (``cat`` states) before ranking."""

    def __init__(self) -> None:
        super().__init__()
        from torchmetrics import CatMetric

        self.predicted = CatMetric()
        self.target = CatMetric()
        self.image = CatMetric().set_dtype(torch.float64)  # CRC-32 ids need more than float32's 24 bits

    def update(self, predicted: Tensor, target: Tensor, image_ids: Tensor) -> None:
        # flattened: a process that saw no trial contributes an empty 1-D state that still gathers
        self.predicted.update(nn.functional.normalize(predicted.float(), dim=-1).flatten())
        self.target.update(nn.functional.normalize(target.float(), dim=-1).flatten())
        self.image.update(image_ids.double())

    def compute(self) -> tuple[float, int]:
        """(top-1 accuracy, number of distinct candidate images)."""
        image = self.image.compute()
        predicted = self.predicted.compute().view(image.numel(), -1)
        target = self.target.compute().view(image.numel(), -1)
        return float(retrieval_top1(predicted, target, image, image)), int(image.unique().numel())

    def reset(self) -> None:
        for metric in (self.predicted, self.target, self.image):
            metric.reset()
