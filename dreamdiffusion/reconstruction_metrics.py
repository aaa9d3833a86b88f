"""The reconstruction metric suite of MindEye (Scotti et al., 2023), as torchmetrics Metrics with per-trial values.

Images are float ``[N, 3, H, W]`` in ``[0, 1]`` (resize both sets to 256 px first: :func:`resize_for_suite`).
Reconstructions come as ``[N, S, 3, H, W]`` (``S`` samples per trial); a trial's value is the mean over its samples,
sample ``k`` of every trial being one set of ``N`` reconstructions.

* :class:`PixCorr` — Pearson correlation of the flattened pixels of a reconstruction and its ground truth (↑).
* :class:`GreySSIM` — SSIM of the grey images (ITU-R 709 luma, as ``skimage.color.rgb2gray``), Gaussian window
  σ 1.5 (11 × 11), data range 1 (↑).
* :class:`TwoWayIdentification` — on a network's features: for reconstruction ``i``, the share of the other
  ground truths ``j`` with ``corr(gt_j, rec_i) < corr(gt_i, rec_i)``; chance 0.5 (↑). AlexNet(2)/(5),
  InceptionV3, CLIP.
* :class:`CorrelationDistance` — ``1 − corr(gt_i, rec_i)`` of a network's features (↓). EfficientNet-B1, SwAV.

Every Metric keeps per-trial rows (``cat`` states with the trial index), so it syncs across processes and
:meth:`compute` returns ``(index [N], value [N])`` sorted by index: the bootstrap resamples those values.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

SUITE_SIZE = 256
GREY_WEIGHTS = (0.2125, 0.7154, 0.0721)  # skimage.color.rgb2gray


def resize_for_suite(images: Tensor, size: int = SUITE_SIZE) -> Tensor:
    """``[..., 3, H, W] -> [..., 3, size, size]`` (bilinear, antialiased)."""
    lead = images.shape[:-3]
    flat = images.reshape(-1, *images.shape[-3:]).float()
    out = nn.functional.interpolate(flat, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return out.reshape(*lead, 3, size, size)


def row_correlation(a: Tensor, b: Tensor) -> Tensor:
    """Pearson correlation of matching rows: ``[N, D], [N, D] -> [N]`` (float64)."""
    a, b = a.double().flatten(1), b.double().flatten(1)
    a, b = a - a.mean(dim=1, keepdim=True), b - b.mean(dim=1, keepdim=True)
    return (a * b).sum(dim=1) / (a.norm(dim=1) * b.norm(dim=1))


def correlation_matrix(a: Tensor, b: Tensor) -> Tensor:
    """``C[i, j] = corr(a_i, b_j)`` for ``a [N, D]``, ``b [M, D]`` (float64)."""
    a, b = a.double().flatten(1), b.double().flatten(1)
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    return (a / a.norm(dim=1, keepdim=True)) @ (b / b.norm(dim=1, keepdim=True)).T


def two_way_identification(ground_truth: Tensor, reconstructions: Tensor) -> Tensor:
    """Per reconstruction ``[N]``: the share of other ground truths ``j ≠ i`` whose correlation with
    reconstruction ``i`` is below that of its own ground truth ``i`` (``gt [N, D]``, ``rec [N, D]``; N ≥ 2)."""
    n = ground_truth.shape[0]
    if n < 2:
        raise ValueError("two-way identification needs at least 2 trials")
    corr = correlation_matrix(reconstructions, ground_truth)  # [i, j] = corr(rec_i, gt_j)
    own = corr.diagonal().unsqueeze(1)
    return (corr < own).sum(dim=1).double() / (n - 1)  # the diagonal is never < itself


def grey(images: Tensor) -> Tensor:
    """``[N, 3, H, W] -> [N, 1, H, W]`` luma."""
    weights = torch.tensor(GREY_WEIGHTS, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    return (images * weights).sum(dim=1, keepdim=True)


class _TrialRows(Metric):
    """Rows ``[S, D]`` per trial (``cat`` states) and the trial index; ``compute`` sorts by index."""

    full_state_update = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("index", [], dist_reduce_fx="cat")
        self.add_state("rows", [], dist_reduce_fx="cat")
        # (R, D) of a row; a max-reduced state, so a process that scored no trial still knows it after the sync
        self.add_state("row_shape", torch.zeros(2, dtype=torch.long), dist_reduce_fx="max")

    def _append(self, index: Tensor, rows: Tensor) -> None:
        """``index [N]``, ``rows [N, R, D]``."""
        self.row_shape = torch.tensor(rows.shape[1:], dtype=torch.long, device=self.device)
        self.index.append(index.detach().double().flatten().to(self.device))
        self.rows.append(rows.detach().float().flatten().to(self.device))

    def _gathered(self) -> tuple[Tensor, Tensor]:
        if isinstance(self.index, list) and not self.index:
            raise RuntimeError(f"{type(self).__name__}.compute() before any update")
        index = dim_zero_cat(self.index)
        order = index.argsort()
        rows = dim_zero_cat(self.rows).view(index.numel(), *self.row_shape.tolist())
        return index[order].long(), rows[order]


class _PairMetric(_TrialRows):
    """A value per (reconstruction, its ground truth) pair, averaged over a trial's samples."""

    def pair_values(self, reconstructions: Tensor, ground_truth: Tensor) -> Tensor:
        """``[M, 3, H, W], [M, 3, H, W] -> [M]``."""
        raise NotImplementedError

    def update(self, reconstructions: Tensor, ground_truth: Tensor, index: Tensor) -> None:
        """``reconstructions [N, S, 3, H, W]``, ``ground_truth [N, 3, H, W]``, trial ``index [N]``."""
        n, s = reconstructions.shape[:2]
        values = self.pair_values(reconstructions.flatten(0, 1), ground_truth.repeat_interleave(s, dim=0))
        self._append(index, values.view(n, 1, s))

    def compute(self) -> tuple[Tensor, Tensor]:
        """``(index [N], value [N])``: each trial's mean over its samples."""
        index, rows = self._gathered()
        return index, rows[:, 0].double().mean(dim=1)


class PixCorr(_PairMetric):
    """Pixel correlation of each reconstruction with its ground truth (MindEye's PixCorr; ↑)."""

    higher_is_better = True

    def pair_values(self, reconstructions: Tensor, ground_truth: Tensor) -> Tensor:
        return row_correlation(reconstructions, ground_truth)


class GreySSIM(_PairMetric):
    """SSIM of grey images, Gaussian window σ 1.5 (11 × 11), data range 1 (MindEye's SSIM; ↑)."""

    higher_is_better = True

    def pair_values(self, reconstructions: Tensor, ground_truth: Tensor) -> Tensor:
        from torchmetrics.functional.image import structural_similarity_index_measure

        return structural_similarity_index_measure(
            grey(reconstructions.float()), grey(ground_truth.float()), gaussian_kernel=True, sigma=1.5, kernel_size=11,
            data_range=1.0, reduction="none",
        ).double()


class CorrelationDistance(_PairMetric):
    """``1 − corr`` of ``network``'s features of each reconstruction and its ground truth (EfficientNet-B1, SwAV; ↓)."""

    higher_is_better = False

    def __init__(self, network: nn.Module, **kwargs) -> None:
        super().__init__(**kwargs)
        self.network = network

    def pair_values(self, reconstructions: Tensor, ground_truth: Tensor) -> Tensor:
        with torch.no_grad():
            return 1 - row_correlation(self.network(reconstructions), self.network(ground_truth))


class TwoWayIdentification(_TrialRows):
    """Two-way identification on ``network``'s features (module docstring); chance 0.5 (↑)."""

    higher_is_better = True

    def __init__(self, network: nn.Module, **kwargs) -> None:
        super().__init__(**kwargs)
        self.network = network

    def update(self, reconstructions: Tensor, ground_truth: Tensor, index: Tensor) -> None:
        """``reconstructions [N, S, 3, H, W]``, ``ground_truth [N, 3, H, W]``, trial ``index [N]``."""
        n, s = reconstructions.shape[:2]
        with torch.no_grad():
            rec = self.network(reconstructions.flatten(0, 1)).flatten(1).view(n, s, -1)
            gt = self.network(ground_truth).flatten(1).view(n, 1, -1)
        self._append(index, torch.cat([gt, rec], dim=1))  # row 0: ground truth, rows 1..S: samples

    def compute(self) -> tuple[Tensor, Tensor]:
        """``(index [N], value [N])``: each trial's two-way score, averaged over the sample sets."""
        index, rows = self._gathered()
        gt = rows[:, 0]
        scores = torch.stack([two_way_identification(gt, rows[:, 1 + k]) for k in range(rows.shape[1] - 1)])
        return index, scores.mean(dim=0)
