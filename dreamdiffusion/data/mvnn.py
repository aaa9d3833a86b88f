"""Multivariate noise normalisation (MVNN): whitening of epoched EEG by its noise covariance between channels.

Guggenmos, Sterzer & Cichy (2018, NeuroImage 173:434) introduced it for decoding; THINGS-EEG2's preprocessing
(Gifford et al., 2022, NeuroImage 264:119754) applies it per recording session: the channel covariance of the
trial-to-trial variability of each image condition is estimated with Ledoit-Wolf shrinkage, averaged over the
conditions, and the epochs are multiplied by its inverse square root ``Σ^(-1/2)``.

``dim = "time"`` (the release's choice): for each condition and time point, the covariance over the condition's
repetitions ``[repetitions, channels]``, averaged over time points. ``dim = "epochs"``: for each condition and
repetition, the covariance over the epoch's time points ``[times, channels]``, averaged over repetitions.

The release averaged the training and the **test** covariances into one ``Σ``: test statistics in the training
input. :func:`noise_covariance` is given one partition; the caller fits it on training epochs only.

The estimator is scikit-learn's ``_cov(X, shrinkage="auto")`` (the one the release used), vectorised over a batch
of matrices: standardise every channel, Ledoit-Wolf shrinkage of the standardised data, scale back.
"""

from __future__ import annotations

import numpy as np

MVNN_DIMS = ("time", "epochs")
MAX_BATCH = 4096  # covariance matrices computed at once (63 channels: 130 MB of float64)


def shrunk_covariance(x: np.ndarray) -> np.ndarray:
    """Ledoit-Wolf covariance of each of a batch of sample matrices, on standardised channels.

    x: ``[B, n, p]`` (B batches of n samples of p channels) -> ``[B, p, p]``. A channel that is constant within a
    batch keeps unit scale (as ``StandardScaler`` does), so the result stays finite.
    """
    x = np.asarray(x, dtype=np.float64)
    n, p = x.shape[1], x.shape[2]
    mean = x.mean(axis=1, keepdims=True)
    var = x.var(axis=1, keepdims=True)
    eps = np.finfo(np.float64).eps
    constant = var <= n * eps * var + (n * mean * eps) ** 2
    scale = np.where(constant, 1.0, np.sqrt(var))
    z = (x - mean) / scale  # [B, n, p], centred, unit variance
    empirical = np.einsum("bni,bnj->bij", z, z) / n  # [B, p, p]
    trace = np.einsum("bii->bi", empirical)  # [B, p]
    mu = trace.sum(axis=1) / p  # [B]
    if p == 1:
        shrinkage = np.zeros(len(x))
    else:
        beta_ = (np.square(z).sum(axis=2) ** 2).sum(axis=1)  # sum over i, j, k of z_ki^2 z_kj^2
        delta_ = np.square(empirical).sum(axis=(1, 2))  # ||Z^T Z||_F^2 / n^2
        beta = (beta_ / n - delta_) / (p * n)
        delta = (delta_ - 2.0 * mu * trace.sum(axis=1) + p * mu**2) / p
        beta = np.minimum(beta, delta)
        shrinkage = np.divide(beta, delta, out=np.zeros_like(beta), where=beta != 0)
    shrunk = (1.0 - shrinkage)[:, None, None] * empirical
    shrunk[:, np.arange(p), np.arange(p)] += (shrinkage * mu)[:, None]
    s = scale[:, 0, :]  # [B, p]
    return s[:, :, None] * shrunk * s[:, None, :]


def noise_covariance(epochs: np.ndarray, dim: str = "time") -> np.ndarray:
    """Sum over conditions of each condition's noise covariance (divide by the conditions for the mean).

    epochs: ``[conditions, repetitions, channels, times]`` of one session and partition -> ``[channels,
    channels]``. Summing lets a caller accumulate a session chunk by chunk.
    """
    if dim not in MVNN_DIMS:
        raise ValueError(f"mvnn_dim={dim!r}; use one of {', '.join(MVNN_DIMS)}")
    conditions, repetitions, channels, times = epochs.shape
    if dim == "time":
        if repetitions < 2:
            raise ValueError(
                f"mvnn_dim='time' needs at least 2 repetitions of a condition in a session, got {repetitions}; "
                "use mvnn_dim='epochs'"
            )
        batch = np.moveaxis(epochs, 3, 1).reshape(conditions * times, repetitions, channels)
        per_condition = times  # matrices averaged into one condition's covariance
    else:
        batch = np.swapaxes(epochs, 2, 3).reshape(conditions * repetitions, times, channels)
        per_condition = repetitions
    # every matrix weighs 1 / per_condition in the sum; in steps, so memory holds at most MAX_BATCH matrices
    total = np.zeros((channels, channels))
    for start in range(0, len(batch), MAX_BATCH):
        total += shrunk_covariance(batch[start : start + MAX_BATCH]).sum(axis=0)
    return total / per_condition


def whitening_matrix(covariance: np.ndarray, what: str = "the noise covariance") -> np.ndarray:
    """``Σ^(-1/2)`` of a symmetric positive definite ``[C, C]`` matrix (symmetric, so ``W x = (x^T W)^T``)."""
    covariance = (covariance + covariance.T) / 2
    values, vectors = np.linalg.eigh(covariance)
    if not np.all(np.isfinite(values)) or values.min() <= 0:
        raise ValueError(
            f"{what} is not positive definite (smallest eigenvalue {values.min():.3g}): a channel may be flat or "
            "two channels identical; check the raw recording"
        )
    return (vectors / np.sqrt(values)) @ vectors.T


def whiten(epochs: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """``W x`` for every epoch: ``epochs [..., channels, times]``, ``matrix [channels, channels]`` -> same shape."""
    return np.einsum("ij,...jt->...it", matrix, epochs)
