"""The EEG physics of the synthetic twins: electrodes, scalp maps, evoked transients, noise, filtering.

Every function draws from the ``numpy`` generator it is given (in a fixed order), so a caller that seeds its
streams gets the same signal every time. Two writers build on them: the paired ImageNet-EEG twin
(:func:`dreamdiffusion.data.synthetic.write_synthetic_imagenet_eeg`, one :class:`EEGModel` of class templates
and :func:`synth_trial` per trial) and the unpaired stage-1 corpus
(:class:`dreamdiffusion.data.synthetic_corpus.SyntheticEEGCorpus`, fresh maps and waveforms per onset).

The model (1 kHz, trial onset at sample 0): each class has two evoked components, each a spatial map
(a dipole-like difference of two Gaussian blobs over 128 electrode positions, :func:`spatial_map`) times a
Gabor transient (:func:`gabor`; class-specific latency 80–350 ms, frequency 6–30 Hz, phase locked to the
onset, :func:`gabor_parameters`). A class-independent visual evoked response over the occipital pole
(:func:`visual_evoked_response` under :func:`occipital_map`) is added to every trial. Per trial the latency
jitters (SD 6 ms) and the amplitude varies (log-normal); every subject has its own electrode gains
(:func:`subject_gains`). Under it lies spatially correlated 1/f (pink) noise (:func:`background_noise`); each
trial is then band-passed 5–95 Hz (:func:`band_pass_fft`) and standardised per channel, as the real
``_std`` file is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

SFREQ = 1000.0
N_CHANS = 128


def electrode_positions(rng: np.random.Generator, n_chans: int = N_CHANS) -> np.ndarray:
    """``[n_chans, 3]`` points spread over the upper unit hemisphere (a stand-in for a 128-channel cap)."""
    i = np.arange(n_chans) + 0.5
    z = 1 - i / n_chans  # uniform in height over the upper hemisphere: Fibonacci lattice
    azimuth = math.pi * (1 + 5**0.5) * i + rng.uniform(0, 2 * math.pi)
    r = np.sqrt(1 - z**2)
    return np.stack([r * np.cos(azimuth), r * np.sin(azimuth), z], axis=1)


def _blob(positions: np.ndarray, centre: np.ndarray, width: float) -> np.ndarray:
    return np.exp(-((positions - centre) ** 2).sum(1) / (2 * width**2))


def _random_direction(rng: np.random.Generator) -> np.ndarray:
    v = rng.normal(size=3)
    v[2] = abs(v[2]) + 0.3
    return v / np.linalg.norm(v)


def spatial_map(rng: np.random.Generator, positions: np.ndarray) -> np.ndarray:
    """A dipole-like scalp map ``[C]``: positive blob minus negative blob, peak |value| 1."""
    m = _blob(positions, _random_direction(rng), 0.45) - _blob(positions, _random_direction(rng), 0.45)
    return m / np.abs(m).max()


def gabor(t: np.ndarray, latency: float, frequency: float, width: float, phase: float) -> np.ndarray:
    """Transient ``[T]``: a cosine of ``frequency`` Hz under a Gaussian envelope centred at ``latency`` s."""
    return np.exp(-0.5 * ((t - latency) / width) ** 2) * np.cos(2 * math.pi * frequency * (t - latency) + phase)


def pink_noise(rng: np.random.Generator, n_sources: int, n_times: int, sfreq: float = SFREQ) -> np.ndarray:
    """``[n_sources, n_times]`` noise sampled at ``sfreq`` Hz with power ∝ 1/f above 1 Hz (unit SD per source)."""
    spectrum = rng.normal(size=(n_sources, n_times // 2 + 1)) + 1j * rng.normal(size=(n_sources, n_times // 2 + 1))
    f = np.fft.rfftfreq(n_times, 1 / sfreq)
    spectrum *= 1 / np.sqrt(np.maximum(f, 1.0))
    spectrum[:, 0] = 0
    x = np.fft.irfft(spectrum, n=n_times)
    return x / x.std(axis=1, keepdims=True)


def band_pass_fft(x: np.ndarray, l_freq: float = 5.0, h_freq: float = 95.0) -> np.ndarray:
    """Zero-phase band-pass of ``x [C, T]`` (1 kHz) by a raised-cosine mask in the frequency domain."""
    n = x.shape[-1]
    f = np.fft.rfftfreq(n, 1 / SFREQ)
    edge = 2.0  # Hz of cosine roll-off on each side
    mask = np.clip((f - (l_freq - edge)) / (2 * edge), 0, 1) * np.clip(((h_freq + edge) - f) / (2 * edge), 0, 1)
    mask = 0.5 - 0.5 * np.cos(math.pi * mask)
    return np.fft.irfft(np.fft.rfft(x, axis=-1) * mask, n=n, axis=-1)


@dataclass
class EEGModel:
    """The generative model's fixed parts: per-class components, per-subject gains, noise mixing."""

    positions: np.ndarray  # [C, 3]
    class_maps: np.ndarray  # [K, 2, C]
    class_waves: np.ndarray  # [K, 2, 4]: latency s, frequency Hz, width s, phase rad
    common_map: np.ndarray  # [C]
    subject_gains: np.ndarray  # [S, C]
    mixing: np.ndarray  # [C, C] spatial correlation of the background noise


def gabor_parameters(rng: np.random.Generator) -> np.ndarray:
    """One evoked component's waveform ``[4]``: latency 80–350 ms (s), frequency 6–30 Hz, width 30–60 ms (s),
    phase (rad), drawn in this order from ``rng``."""
    return np.array([rng.uniform(0.08, 0.35), rng.uniform(6, 30), rng.uniform(0.03, 0.06), rng.uniform(0, 2 * math.pi)])


def occipital_map(positions: np.ndarray) -> np.ndarray:
    """Scalp map ``[C]`` of the class-independent visual response: one blob over the occipital pole, peak 1."""
    m = _blob(positions, np.array([0.0, -0.8, 0.6]) / np.linalg.norm([0.0, -0.8, 0.6]), 0.5)
    return m / m.max()


def subject_gains(rng: np.random.Generator, subjects: int, n_chans: int = N_CHANS) -> np.ndarray:
    """``[subjects, n_chans]`` log-normal electrode gains (SD 0.15 in log units): each head and cap differs."""
    return np.exp(rng.normal(0, 0.15, size=(subjects, n_chans)))


def noise_mixing(positions: np.ndarray) -> np.ndarray:
    """``[C, C]`` mixing that makes background noise spatially correlated: Gaussian in electrode distance
    (0.35 on the unit sphere), each row of unit norm."""
    distance = np.linalg.norm(positions[:, None] - positions[None], axis=-1)
    mixing = np.exp(-((distance / 0.35) ** 2))
    return mixing / np.linalg.norm(mixing, axis=1, keepdims=True)


def visual_evoked_response(rng: np.random.Generator, t: np.ndarray) -> np.ndarray:
    """The waveform ``[T]`` every picture elicits whatever its class (P100-like then N170-like), onset at
    ``t = 0`` s, each peak's latency jittered (SD 10 ms)."""
    return gabor(t, 0.1 + rng.normal(0, 0.01), 10.0, 0.04, 0.0) - 0.6 * gabor(t, 0.17 + rng.normal(0, 0.01), 7.0, 0.05, 0.0)


def background_noise(rng: np.random.Generator, mixing: np.ndarray, n_times: int, sfreq: float = SFREQ) -> np.ndarray:
    """``[C, n_times]`` spatially correlated pink noise sampled at ``sfreq`` Hz, unit SD per channel."""
    noise = mixing @ pink_noise(rng, mixing.shape[0], n_times, sfreq)
    return noise / noise.std(axis=1, keepdims=True)


def make_eeg_model(rng: np.random.Generator, classes: int, subjects: int) -> EEGModel:
    """The fixed parts for ``classes`` classes (two components each) and ``subjects`` subjects, drawn from ``rng``
    in this order: electrode positions, class maps, class waveforms, subject gains."""
    positions = electrode_positions(rng)
    maps = np.stack([[spatial_map(rng, positions) for _ in range(2)] for _ in range(classes)])
    waves = np.stack([[gabor_parameters(rng) for _ in range(2)] for _ in range(classes)])
    gains = subject_gains(rng, subjects)
    return EEGModel(positions, maps, waves, occipital_map(positions), gains, noise_mixing(positions))


def synth_trial(rng: np.random.Generator, model: EEGModel, label: int, subject: int, length: int, snr: float) -> np.ndarray:
    """One standardised trial ``[128, length]`` float32 of class ``label`` seen by ``subject`` (0-based)."""
    t = np.arange(length) / SFREQ
    signal = np.zeros((N_CHANS, length))
    for c in range(2):
        latency, frequency, width, phase = model.class_waves[label, c]
        latency += rng.normal(0, 0.006)
        amplitude = snr * math.exp(rng.normal(0, 0.25))
        signal += amplitude * np.outer(model.class_maps[label, c], gabor(t, latency, frequency, width, phase))
    vep = visual_evoked_response(rng, t)
    signal += snr * 1.5 * math.exp(rng.normal(0, 0.3)) * np.outer(model.common_map, vep)
    signal *= model.subject_gains[subject][:, None]
    x = band_pass_fft(signal + background_noise(rng, model.mixing, length))
    x = (x - x.mean(axis=1, keepdims=True)) / x.std(axis=1, keepdims=True)
    return x.astype(np.float32)
