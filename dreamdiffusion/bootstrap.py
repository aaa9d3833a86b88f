"""Percentile-bootstrap confidence intervals over EEG trials (Efron & Tibshirani 1993, ch. 13).

Stage 3 scores every EEG trial of the test split; the uncertainty of a figure is that of the trials drawn.
A resample draws ``n`` trials with replacement from the ``n`` scored ones; the interval is the
``(1 − level)/2`` and ``(1 + level)/2`` quantiles of the statistic over ``n_resamples`` resamples. Seeded:
the same seed gives the same interval, on any machine.

* :func:`mean_interval` — per-trial values (a trial's n-way top-1 over its samples, its retrieval hit, its
  mean PSNR/SSIM/LPIPS): the statistic is their mean.
* :func:`statistic_interval` — set-level figures (FID, IS) recomputed on each resampled trial set.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class BootstrapSettings:
    """``n_resamples`` for per-trial means, ``set_resamples`` for set-level figures (0: no interval), the
    confidence ``level`` and the ``seed`` of the resampling."""

    n_resamples: int = 1000
    set_resamples: int = 100
    level: float = 0.95
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_resamples < 1 or self.set_resamples < 0:
            raise ValueError(
                f"bootstrap resamples must be >= 1 (per-trial) and >= 0 (set-level), got {self.n_resamples} and "
                f"{self.set_resamples}"
            )
        if not 0 < self.level < 1:
            raise ValueError(f"bootstrap level must be in (0, 1), got {self.level}")


def resample_indices(n: int, n_resamples: int, seed: int) -> Tensor:
    """``[n_resamples, n]`` trial positions drawn uniformly with replacement (one CPU generator seeded with ``seed``)."""
    if n < 1:
        raise ValueError("cannot bootstrap an empty set of trials")
    generator = torch.Generator("cpu").manual_seed(int(seed))
    return torch.randint(0, n, (n_resamples, n), generator=generator)


def percentile_interval(statistics: Tensor, level: float) -> tuple[float, float]:
    """``(low, high)`` quantiles of the resampled statistics ``[R]`` enclosing ``level`` of them."""
    tail = (1 - level) / 2
    low, high = torch.quantile(statistics.double(), torch.tensor([tail, 1 - tail], dtype=torch.float64)).tolist()
    return float(low), float(high)


def mean_interval(values: Tensor, settings: BootstrapSettings) -> tuple[float, float]:
    """Percentile interval of the mean of per-trial ``values [n]``."""
    values = values.double().flatten()
    means = values[resample_indices(values.numel(), settings.n_resamples, settings.seed)].mean(dim=1)
    return percentile_interval(means, settings.level)


def statistic_interval(statistic: Callable[[Tensor], float], n: int, settings: BootstrapSettings) -> tuple[float, float] | None:
    """Percentile interval of ``statistic(trial positions [n])`` over ``settings.set_resamples`` resamples of
    ``n`` trials (``None`` when ``set_resamples`` is 0)."""
    if settings.set_resamples == 0:
        return None
    draws = resample_indices(n, settings.set_resamples, settings.seed)
    return percentile_interval(torch.tensor([statistic(d) for d in draws], dtype=torch.float64), settings.level)
