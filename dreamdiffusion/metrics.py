"""Stage-3 metrics (DreamDiffusion Sec. 4 and Table 2), all torchmetrics ``Metric`` objects so they sync under DDP.

* :class:`NWayTopKAccuracy` — the paper's n-way top-k classification accuracy (Table 2 reports 50-way top-1).
* :class:`ImageMetrics` — FID (Inception-v3 pool features, 2048), IS (:class:`InceptionScore`: Inception-v3 logits, 10 splits), PSNR
  (mean over images) and SSIM (Gaussian 11×11, σ 1.5), both with data range 1.0 on images in [0, 1], and LPIPS
  (AlexNet), from torchmetrics, around feature networks loaded by :mod:`dreamdiffusion.models.eval_models`.
* :class:`TrialTable` — per-trial values gathered from every process (the bootstrap and the controls need
  each trial's value, not only a sum).
* :func:`frechet_distance`, :func:`inception_score_from_logits` — FID and IS from stored features, so both
  can be recomputed on resampled trial sets.

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
    """n-way top-k accuracy of generated images (DreamDiffusion Table 2).

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
        for p, t, key in zip(probs.float().cpu(), target.cpu().tolist(), keys.cpu().tolist(), strict=True):
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


# Seed of the fixed permutation that mixes the images of the Inception Score's splits.
SPLIT_SEED = 0


class InceptionScore(Metric):
    """Inception Score (Salimans et al. 2016) with torchmetrics' formula — ``exp(E_x KL(p(y|x) ‖ p(y)))`` per
    split, mean and std over ``splits`` — but with the images ordered by an integer key and then permuted by a
    fixed-seed permutation before splitting (torchmetrics shuffles with the global RNG, and its per-batch
    feature lists cannot be gathered when a process received no images). So the score does not depend on batch
    size, process count or RNG state, and splits mix the classes as random splits do: keys usually follow the
    test split, which is sorted by picture and so by class, and chunks of one or two classes would score the
    diversity of a chunk, not of the set.

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
        mixed = torch.randperm(keys.numel(), generator=torch.Generator().manual_seed(SPLIT_SEED)).to(logits.device)
        return inception_score_from_logits(logits[mixed], self.splits)


def inception_score_from_logits(logits: Tensor, splits: int) -> tuple[Tensor, Tensor]:
    """Inception Score of images with Inception logits ``[N, C]`` in their given order: ``exp(E_x KL(p(y|x) ‖ p(y)))``
    in each of ``splits`` consecutive chunks; (mean, std) over chunks."""
    scores = []
    for chunk in logits.double().chunk(splits, dim=0):
        prob, log_prob = chunk.softmax(dim=1), chunk.log_softmax(dim=1)
        mean_prob = prob.mean(dim=0, keepdim=True)
        scores.append((prob * (log_prob - mean_prob.log())).sum(dim=1).mean().exp())
    scores = torch.stack(scores)
    return scores.mean().float(), scores.std().float()


def frechet_distance(real: Tensor, fake: Tensor) -> float:
    """FID between the Gaussians fitted to feature sets ``real [n1, d]`` and ``fake [n2, d]`` (Heusel et al. 2017):
    ``‖μ1 − μ2‖² + tr Σ1 + tr Σ2 − 2 tr (Σ1 Σ2)^{1/2}``, the same figure as torchmetrics' FID on the same features.

    ``tr (Σ1 Σ2)^{1/2}`` is the sum of singular values of ``X1 X2ᵀ / sqrt((n1 − 1)(n2 − 1))`` (``X`` centred
    features), computed in the smaller of the trial and feature dimensions: a 2048-feature FID over a few
    hundred images costs milliseconds, so it can be recomputed for every bootstrap resample.
    """
    if real.shape[0] < 2 or fake.shape[0] < 2:
        raise ValueError(f"FID needs at least 2 images per set, got {real.shape[0]} and {fake.shape[0]}")
    real, fake = real.double(), fake.double()
    mu1, mu2 = real.mean(dim=0), fake.mean(dim=0)
    x1, x2 = real - mu1, fake - mu2
    scale = ((real.shape[0] - 1) * (fake.shape[0] - 1)) ** 0.5
    d = real.shape[1]
    if min(real.shape[0], fake.shape[0]) < d:
        small, large = (x1, x2) if x1.shape[0] <= x2.shape[0] else (x2, x1)
        cross = small @ large.T  # [n_small, n_large]
        eig = torch.linalg.eigvalsh(cross @ cross.T)
    else:
        c1_values, c1_vectors = torch.linalg.eigh(x1.T @ x1)
        root = c1_vectors @ torch.diag(c1_values.clamp(min=0).sqrt()) @ c1_vectors.T
        eig = torch.linalg.eigvalsh(root @ (x2.T @ x2) @ root)
    trace_root = eig.clamp(min=0).sqrt().sum() / scale
    traces = (x1 * x1).sum() / (real.shape[0] - 1) + (x2 * x2).sum() / (fake.shape[0] - 1)
    return float((mu1 - mu2).square().sum() + traces - 2 * trace_root)


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
        from torchmetrics.image import FrechetInceptionDistance

        self.settings = settings
        self.fid = FrechetInceptionDistance(feature=fid_feature, normalize=False)
        # FID sets its output dtype in update(); a process that received no images still joins compute()
        self.fid.orig_dtype = torch.float32
        self.inception_score = InceptionScore(is_feature, splits=settings.is_splits)
        # mean of per-image PSNR (not the PSNR of the pooled error), kept as sum + count states: torchmetrics'
        # per-image PSNR keeps lists of mixed dtypes that cannot be gathered from a process without images
        self.psnr = MeanMetric()
        # SSIM and LPIPS as means of per-image values (torchmetrics' SSIM mean is the same figure): the
        # per-image values are what stage 3 bootstraps over trials
        self.ssim = MeanMetric()
        self.lpips_net = lpips_net.eval().requires_grad_(False)
        self.lpips = MeanMetric()

    def update(self, generated: Tensor, ground_truth: Tensor) -> None:
        """``generated``, ``ground_truth``: ``[N, 3, H, W]`` in ``[0, 1]``, pair ``i`` ↔ ``i``, same size.
        Both sets feed FID; use :meth:`update_real` + :meth:`update_generated` when several generated
        images share one ground truth (each real image should count once)."""
        self.update_real(ground_truth)
        self.update_generated(generated, ground_truth)

    def update_real(self, ground_truth: Tensor) -> None:
        """Ground-truth images ``[N, 3, H, W]`` in ``[0, 1]`` → FID's real statistics."""
        self.fid.update(to_uint8(ground_truth), real=True)

    def update_generated(self, generated: Tensor, ground_truth: Tensor, keys: Tensor | None = None) -> dict[str, Tensor]:
        """Generated images and their ground truth (same shape) → FID fake statistics, IS, PSNR, SSIM, LPIPS.
        ``keys``: distinct integer ids (< 2**24) of the generated images, ordering them for IS. Returns the
        per-image scores of :meth:`pair_scores`."""
        scores = self.pair_scores(generated, ground_truth)
        self.fid.update(to_uint8(generated), real=False)
        self.inception_score.update(to_uint8(generated), keys)
        self.psnr.update(scores["psnr"])
        self.ssim.update(scores["ssim"])
        self.lpips.update(scores["lpips"])
        return scores

    @torch.no_grad()
    def pair_scores(self, generated: Tensor, ground_truth: Tensor) -> dict[str, Tensor]:
        """Per-image ``psnr``, ``ssim``, ``lpips`` ``[N]`` of generated vs ground-truth images ``[N, 3, H, W]``
        in ``[0, 1]`` (same shape); updates no state."""
        from torchmetrics.functional.image import structural_similarity_index_measure

        if generated.shape != ground_truth.shape:
            raise ValueError(
                f"generated images {tuple(generated.shape)} and ground truth {tuple(ground_truth.shape)} differ; "
                "resize the ground truth to the generated size first"
            )
        generated, ground_truth = generated.float(), ground_truth.float()
        st = self.settings
        return {
            "psnr": peak_signal_noise_ratio(generated, ground_truth, data_range=st.data_range, dim=(1, 2, 3), reduction="none"),
            "ssim": structural_similarity_index_measure(
                generated, ground_truth, data_range=st.data_range, kernel_size=st.ssim_kernel_size, sigma=st.ssim_sigma,
                reduction="none",
            ),
            "lpips": self.lpips_net(generated * 2 - 1, ground_truth * 2 - 1).flatten(),
        }

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


def retrieval_hits(predicted: Tensor, gallery: Tensor, query_ids: Tensor, gallery_ids: Tensor) -> Tensor:
    """EEG→CLIP retrieval per query ``[N]`` (1.0 hit, 0.0 miss): is the gallery embedding most cosine-similar to
    ``predicted[i]`` one of query ``i``'s own image?

    ``predicted [N, d]`` = h(y) per trial; ``gallery [M, d]`` = CLIP image embeddings (an image may appear
    several times: its copies are identical, so ranking is unchanged).
    """
    sim = nn.functional.normalize(predicted.float(), dim=-1) @ nn.functional.normalize(gallery.float(), dim=-1).T
    return (gallery_ids[sim.argmax(dim=1)] == query_ids).float()


def retrieval_top1(predicted: Tensor, gallery: Tensor, query_ids: Tensor, gallery_ids: Tensor) -> Tensor:
    """EEG→CLIP retrieval top-1: the share of :func:`retrieval_hits`."""
    return retrieval_hits(predicted, gallery, query_ids, gallery_ids).mean()


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


# ------------------------------------------------------------------------------------- per-trial values
class TrialTable(Metric):
    """Per-trial values from every process, as rows keyed by trial index.

    ``widths`` names the columns and their widths (1 for a scalar, ``d`` for an embedding); every update
    gives every column for the same ``B`` trials. States are flattened ``cat`` lists, so a process joins the
    gather even when it scored no trial; :meth:`compute` returns ``{"index": [N], column: [N, width]}`` sorted
    by trial index, identical for any batch size or number of processes. ``dtype`` float32 halves the memory
    of wide columns (feature vectors); indices must then stay below 2**24.
    """

    full_state_update = False

    def __init__(self, widths: dict[str, int], dtype: torch.dtype = torch.float64, **kwargs) -> None:
        super().__init__(**kwargs)
        self.widths = dict(widths)
        self.add_state("index", [], dist_reduce_fx="cat")
        for name in self.widths:
            self.add_state(f"column_{name}", [], dist_reduce_fx="cat")
        self.set_dtype(dtype)

    def update(self, index: Tensor, **columns: Tensor) -> None:
        if set(columns) != set(self.widths):
            raise ValueError(f"TrialTable.update needs exactly the columns {sorted(self.widths)}, got {sorted(columns)}")
        if self.dtype == torch.float32 and index.numel() and int(index.max()) >= 2**24:
            raise ValueError("a float32 TrialTable holds trial indices below 2**24 only")
        n = index.numel()
        self.index.append(index.detach().to(self.device, self.dtype).flatten())
        for name, width in self.widths.items():
            getattr(self, f"column_{name}").append(columns[name].detach().reshape(n, width).to(self.device, self.dtype).flatten())

    def compute(self) -> dict[str, Tensor]:
        from torchmetrics.utilities import dim_zero_cat

        if isinstance(self.index, list) and not self.index:  # after a sync the states are gathered tensors
            raise RuntimeError("TrialTable.compute() before any update: no trial was scored")
        index = dim_zero_cat(self.index)
        order = index.argsort()
        table = {"index": index[order].long()}
        for name, width in self.widths.items():
            table[name] = dim_zero_cat(getattr(self, f"column_{name}")).view(-1, width)[order]
        return table
