"""EEG harmonisation: the one way EEG enters the project, in every stage.

A recording becomes model input in these steps, each a function here:

1. :func:`eeg_data` — keep EEG channels only (no stim, EOG, EMG, misc), in µV.
2. :func:`band_pass` — 5–95 Hz (upper edge lowered below Nyquist, with a warning, for low-rate data).
3. :func:`standardise` — per-channel zero mean / unit variance over the recording.
4. :func:`cut_windows` — windows of ``window_seconds`` (0.44 s, the ImageNet-EEG window; back to back,
   or every ``window_stride_seconds``), each
   resampled to ``n_times`` samples (512) by :func:`resample_window`, so every source shares one time
   scale; windows that hold NaN/Inf or are flat are dropped and counted.
5. :func:`harmonise_channels` — at load time, to the model's 128 channels (replication, the paper's
   default, or a montage map by electrode name).

:func:`preprocess_raw` chains 1–4 for an ``mne.io.Raw``.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

import numpy as np
import torch

N_CHANS = 128
N_TIMES = 512


@dataclass(frozen=True)
class Preprocessing:
    """Parameters of :func:`preprocess_raw`; part of every cache key."""

    l_freq: float = 5.0
    h_freq: float = 95.0
    window_seconds: float = 0.44
    n_times: int = N_TIMES
    flat_threshold: float = 1e-6  # a window whose channels all have std below this (standardised units) is flat
    window_stride_seconds: float | None = None  # start-to-start distance of windows; None: back to back

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Windows:
    """Windows of one recording: ``data [N, C, n_times]`` float32 and what was dropped."""

    data: np.ndarray
    ch_names: list[str]
    sfreq: float
    n_nonfinite: int = 0
    n_flat: int = 0


def eeg_data(raw, source: str = "recording") -> tuple[np.ndarray, list[str], float]:
    """EEG channels of an ``mne.io.Raw`` in µV: ``([C, T] float64, channel names, sfreq in Hz)``.

    Stimulus, EOG, EMG and other non-EEG channels are dropped; MNE keeps EEG in volts, so the
    volt-to-µV factor comes from MNE's own unit handling. Channels marked bad are dropped too.
    """
    import mne

    picks = mne.pick_types(raw.info, eeg=True, exclude="bads")
    if len(picks) == 0:
        kinds = sorted(set(raw.get_channel_types()))
        raise ValueError(
            f"{source} has no EEG channels (channel types found: {kinds}); "
            "exclude it from the dataset list or set its channel types with raw.set_channel_types"
        )
    units = {raw.info["chs"][i]["unit"] for i in picks}
    if len(units) > 1:
        raise ValueError(
            f"{source}: EEG channels are stored with different units {sorted(int(u) for u in units)}; "
            "fix the channel info (all EEG must be in volts) before preprocessing"
        )
    data = raw.get_data(picks=picks, units="uV")
    return data, [raw.ch_names[i] for i in picks], float(raw.info["sfreq"])


def band_pass(data: np.ndarray, sfreq: float, l_freq: float, h_freq: float, source: str = "recording") -> np.ndarray:
    """Zero-phase FIR band-pass of ``data [C, T]`` sampled at ``sfreq`` Hz.

    An upper edge at or above Nyquist is lowered to 90% of Nyquist with a warning; a rate that
    cannot hold the lower edge (``sfreq <= 2 * l_freq``) is an error.
    """
    import mne

    nyquist = sfreq / 2
    if sfreq <= 2 * l_freq:
        raise ValueError(
            f"{source}: sampling rate {sfreq} Hz is too low for a {l_freq} Hz high-pass "
            f"(needs more than {2 * l_freq} Hz); exclude this recording"
        )
    if h_freq >= nyquist:
        lowered = 0.9 * nyquist
        warnings.warn(
            f"{source}: band-pass upper edge {h_freq} Hz is not below Nyquist ({nyquist} Hz); "
            f"using {lowered:.1f} Hz instead",
            stacklevel=2,
        )
        h_freq = lowered
    if data.shape[-1] < 2:
        raise ValueError(f"{source} holds {data.shape[-1]} samples: too short to filter")
    with warnings.catch_warnings():
        # MNE warns when the filter is longer than a short signal; cut_windows rejects those anyway.
        warnings.simplefilter("ignore", RuntimeWarning)
        return mne.filter.filter_data(data, sfreq, l_freq, h_freq, verbose="error")


def standardise(data: np.ndarray) -> np.ndarray:
    """Per-channel zero mean and unit variance of ``data [C, T]``, ignoring NaN/Inf samples."""
    finite = np.where(np.isfinite(data), data, np.nan)
    mean = np.nanmean(finite, axis=-1, keepdims=True)
    std = np.nanstd(finite, axis=-1, keepdims=True)
    std = np.where(np.isfinite(std) & (std > 0), std, 1.0)
    return (data - np.nan_to_num(mean)) / std


def resample_window(x: torch.Tensor | np.ndarray, n_times: int = N_TIMES) -> torch.Tensor:
    """Linear resampling of the last axis to ``n_times`` samples: ``[..., T] -> [..., n_times]`` float32.

    Both grids span the same interval with their end points on it (``align_corners=True``), so the first
    and last samples are kept: the interpolation the DreamDiffusion authors' loader applies to the 440-sample
    ImageNet-EEG window (``scipy.interpolate.interp1d`` from ``linspace(0, 1, T)`` to ``linspace(0, 1, n_times)``).
    """
    x = torch.as_tensor(x, dtype=torch.float32)
    if x.shape[-1] == n_times:
        return x.clone()
    n_source = x.shape[-1]
    if n_source < 2:
        raise ValueError(f"cannot resample a window of {n_source} sample(s) to {n_times}: need at least 2")
    # positions on the source grid in float64: F.interpolate's float32 positions are off by up to 1e-4
    position = torch.linspace(0, n_source - 1, n_times, dtype=torch.float64)
    left = position.floor().long().clamp(max=n_source - 2)
    weight = (position - left).to(torch.float32)
    # in place on the two gathered copies: the same products and sum as x[..., left] * (1 - w) + x[..., left + 1] * w
    return x[..., left].mul_(1 - weight).add_(x[..., left + 1].mul_(weight))


def cut_windows(
    data: np.ndarray,
    sfreq: float,
    window_seconds: float = 0.44,
    n_times: int = N_TIMES,
    onsets: np.ndarray | None = None,
    flat_threshold: float = 1e-6,
    source: str = "recording",
) -> tuple[np.ndarray, int, int]:
    """Windows of ``window_seconds`` from ``data [C, T]``, each resampled to ``n_times``.

    ``onsets``: window starts in samples; by default consecutive non-overlapping windows.
    Returns ``(windows [N, C, n_times] float32, n_nonfinite, n_flat)`` where the counts are windows
    dropped for NaN/Inf or for being flat on every channel.
    """
    length = int(round(window_seconds * sfreq))
    if length < 2:
        raise ValueError(f"{source}: a {window_seconds} s window at {sfreq} Hz holds fewer than 2 samples")
    if onsets is None:
        onsets = np.arange(0, data.shape[-1] - length + 1, length)
        if len(onsets) == 0:
            raise ValueError(
                f"{source} is {data.shape[-1] / sfreq:.3f} s long, shorter than one window of "
                f"{window_seconds} s; exclude it or shorten window_seconds"
            )
    onsets = np.asarray(onsets, dtype=int)
    beyond = onsets[(onsets < 0) | (onsets + length > data.shape[-1])]
    if len(beyond):
        raise ValueError(
            f"{source}: window onset {beyond[0] / sfreq:.3f} s lies outside the recording "
            f"(0 to {(data.shape[-1] - length) / sfreq:.3f} s for a {window_seconds} s window)"
        )
    segments = np.stack([data[:, o : o + length] for o in onsets]) if len(onsets) else np.empty((0, data.shape[0], length))
    finite = np.isfinite(segments).all(axis=(1, 2))
    flat = np.zeros_like(finite)
    flat[finite] = (segments[finite].std(axis=-1) < flat_threshold).all(axis=-1)
    keep = finite & ~flat
    windows = resample_window(segments[keep], n_times).numpy() if keep.any() else np.empty((0, data.shape[0], n_times), np.float32)
    return windows, int((~finite).sum()), int(flat.sum())


def filter_and_standardise(
    data: np.ndarray, sfreq: float, params: Preprocessing = Preprocessing(), source: str = "recording"
) -> np.ndarray:
    """Band-pass and standardise ``data [C, T]``; NaN/Inf samples stay NaN and spread nowhere else.

    The filter runs over zeros where samples are missing and the gaps are put back afterwards, so only
    windows that hold a missing sample themselves are non-finite (a FIR filter would smear one NaN over
    the whole recording).
    """
    bad = ~np.isfinite(data)
    filtered = band_pass(np.where(bad, 0.0, data), sfreq, params.l_freq, params.h_freq, source)
    filtered[bad] = np.nan
    return standardise(filtered)


def preprocess_raw(raw, params: Preprocessing = Preprocessing(), source: str = "recording") -> Windows:
    """Steps 1–4 for one ``mne.io.Raw``: EEG only, µV, band-pass, standardise, window + resample."""
    data, ch_names, sfreq = eeg_data(raw, source)
    if data.shape[-1] < int(round(params.window_seconds * sfreq)):
        raise ValueError(
            f"{source} is {data.shape[-1] / sfreq:.3f} s long, shorter than one window of "
            f"{params.window_seconds} s; exclude it or shorten window_seconds"
        )
    filtered = filter_and_standardise(data, sfreq, params, source)
    onsets = None
    if params.window_stride_seconds is not None:
        if params.window_stride_seconds <= 0:
            raise ValueError(f"window_stride_seconds must be positive, got {params.window_stride_seconds}")
        length = int(round(params.window_seconds * sfreq))
        stride = max(1, int(round(params.window_stride_seconds * sfreq)))
        onsets = np.arange(0, data.shape[-1] - length + 1, stride)
    windows, n_nonfinite, n_flat = cut_windows(
        filtered, sfreq, params.window_seconds, params.n_times, onsets=onsets,
        flat_threshold=params.flat_threshold, source=source,
    )
    return Windows(windows, ch_names, sfreq, n_nonfinite, n_flat)


def replication_index(n_source: int, n_chans: int = N_CHANS) -> np.ndarray:
    """Source channel for each of ``n_chans`` outputs.

    Fewer channels are replicated cyclically (the paper: "padded to 128 by replicating existing
    channels"); more channels are thinned to ``n_chans`` evenly spaced ones in stored order, a fixed
    and documented choice that keeps coverage of the whole montage.
    """
    if n_source <= 0:
        raise ValueError("cannot harmonise a window with no channels")
    if n_source <= n_chans:
        return np.arange(n_chans) % n_source
    return np.round(np.linspace(0, n_source - 1, n_chans)).astype(int)


def montage_index(ch_names: list[str], target_names: list[str]) -> np.ndarray:
    """Source channel for each target electrode, by name (case-insensitive).

    Target electrodes missing from the recording take the nearest recorded electrode of the
    standard 10-05 montage; recorded channels without a known position are ignored.
    """
    import mne

    lower = {n.lower(): i for i, n in enumerate(ch_names)}
    positions = mne.channels.make_standard_montage("standard_1005").get_positions()["ch_pos"]
    positions = {k.lower(): v for k, v in positions.items()}
    known = [(i, positions[n.lower()]) for i, n in enumerate(ch_names) if n.lower() in positions]
    index = []
    for name in target_names:
        key = name.lower()
        if key in lower:
            index.append(lower[key])
        elif key in positions and known:
            distances = [np.linalg.norm(positions[key] - pos) for _, pos in known]
            index.append(known[int(np.argmin(distances))][0])
        else:
            raise ValueError(
                f"electrode {name!r} is neither recorded ({len(ch_names)} channels) nor in the standard "
                "10-05 montage; use channel_map='replicate' or fix the target list"
            )
    return np.asarray(index)


def harmonise_channels(x: torch.Tensor | np.ndarray, index: np.ndarray) -> torch.Tensor:
    """Select/replicate channels: ``x [..., C, T] -> [..., len(index), T]`` float32.

    Always a new tensor. An index that keeps every channel in order costs one cast-and-copy (torch's,
    vectorised for float16) instead of a gather and a cast.
    """
    if not isinstance(x, torch.Tensor):
        with warnings.catch_warnings():  # a read-only memory map is only read here: the result is always a copy
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            x = torch.as_tensor(np.asarray(x))
    index = np.asarray(index)
    if index.shape == (x.shape[-2],) and np.array_equal(index, np.arange(x.shape[-2])):
        return x.to(torch.float32, copy=True)
    return x[..., torch.as_tensor(index, dtype=torch.long), :].float()
