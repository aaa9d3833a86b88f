"""A large unpaired synthetic EEG corpus for stage 1, with the synthetic twin's physics and none of its classes.

The paper pre-trains on ~120k unpaired MOABB windows from 400+ subjects and fine-tunes on the small
ImageNet-EEG set. The embedded default keeps those proportions with :class:`SyntheticEEGCorpus`: many
subjects' continuous recordings, read through the very same MOABB path (``MOABBDataModule`` lists it by
class path in ``data.init_args.datasets``, preprocesses, windows and caches it like any MOABB dataset).

What a recording holds (``sfreq`` Hz, 250 by default; 128 electrodes; every building block is a function of
:mod:`dreamdiffusion.data.synthetic_eeg`, so the two cannot drift apart):

* spatially correlated 1/f background noise (:func:`~dreamdiffusion.data.synthetic_eeg.background_noise`),
  unit SD per channel;
* visual onsets at random times (gaps uniform in ``onset_gap_seconds``), as in an unlabelled viewing
  experiment whose pictures never repeat. Each onset elicits the class-independent visual evoked
  response over the occipital pole (:func:`~dreamdiffusion.data.synthetic_eeg.visual_evoked_response`,
  amplitude ``1.5 × snr`` times a log-normal factor) and ``components`` evoked Gabor transients, each
  with a FRESH dipole-like scalp map (:func:`~dreamdiffusion.data.synthetic_eeg.spatial_map`) and FRESH
  latency / frequency / width / phase (:func:`~dreamdiffusion.data.synthetic_eeg.gabor_parameters`),
  amplitude ``snr`` times a log-normal factor;
* per-subject electrode gains (:func:`~dreamdiffusion.data.synthetic_eeg.subject_gains`) on the evoked
  signal, as in the paired set.

The band-pass (5–95 Hz) and the standardisation are those of the MOABB path
(:func:`dreamdiffusion.signal.preprocess_raw`), applied to the whole recording like to any MOABB raw.

Why it does not leak the paired set's class structure: the paired set's classes ARE a fixed set of
``2 × classes`` (scalp map, waveform) templates. Here no template is ever reused: every onset draws its
components anew from the same generic distributions, so the corpus teaches what such events look like
(smooth dipolar maps, 6–30 Hz transients, the spatial correlation of the noise), never which ones
mark a class. Nothing is read from the paired set, and the random streams are the corpus's own: every
generator is seeded with ``[seed, STREAM, ...]``, a seed sequence the paired-set generator never uses
(it seeds with ``seed`` and ``[seed, 1..4]``), so even equal seeds give unrelated maps. The electrodes lie on the
same Fibonacci lattice as the paired set's cap, turned about the vertical axis by the corpus's own
random angle: channel ``i``'s neighbours and the noise's correlation are the same, the absolute
orientation (hence where the occipital response lands) is the corpus's own. There are no labels,
no pictures and no trial onsets in what :meth:`SyntheticEEGCorpus.get_data` returns.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from dreamdiffusion.data.synthetic_eeg import (
    N_CHANS,
    background_noise,
    electrode_positions,
    gabor,
    gabor_parameters,
    noise_mixing,
    occipital_map,
    spatial_map,
    subject_gains,
    visual_evoked_response,
)

# Seeds ``[seed, STREAM, ...]``: a seed sequence disjoint from the paired generator's ``[seed, 1..4]``.
STREAM = 7_011_931
GENERATOR_VERSION = 1  # part of the cache key: bump when the generated signal changes
EVOKED_SPAN = 0.6  # s after an onset over which its transients are computed (latest peak 0.35 s + 4 widths)


@dataclass(frozen=True)
class CorpusConfig:
    """What :class:`SyntheticEEGCorpus` generates (its constructor arguments)."""

    subjects: int = 25
    seconds: float = 360.0
    snr: float = 1.5
    components: int = 2
    onset_gap_seconds: tuple[float, float] = (0.5, 1.0)
    sfreq: float = 250.0
    seed: int = 0

    def check(self) -> None:
        """Refuse values that cannot make a corpus, naming the key and a valid range."""
        where = "SyntheticEEGCorpus (data.init_args.dataset_kwargs)"
        if isinstance(self.subjects, bool) or not isinstance(self.subjects, int) or self.subjects < 1:
            raise ValueError(f"{where}: subjects={self.subjects!r} must be an integer >= 1 (use >= 2 for a train/val split)")
        if not self.seconds >= 1.0:
            raise ValueError(f"{where}: seconds={self.seconds!r} must be >= 1 s of recording per subject")
        if not self.snr >= 0:
            raise ValueError(f"{where}: snr={self.snr!r} must be >= 0 (0 gives background noise only)")
        if isinstance(self.components, bool) or not isinstance(self.components, int) or self.components < 0:
            raise ValueError(f"{where}: components={self.components!r} must be an integer >= 0")
        gap = tuple(self.onset_gap_seconds)
        if len(gap) != 2 or not 0 < gap[0] <= gap[1]:
            raise ValueError(f"{where}: onset_gap_seconds={list(gap)!r} must be [low, high] seconds with 0 < low <= high")
        if not self.sfreq >= 2.5 * 95.0:
            raise ValueError(f"{where}: sfreq={self.sfreq!r} must be >= 237.5 Hz so the 95 Hz band edge lies well below Nyquist")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"{where}: seed={self.seed!r} must be an integer >= 0")


class SyntheticEEGCorpus:
    """Unpaired synthetic EEG with MOABB's dataset interface: one 128-channel recording per subject.

    Parameters
    ----------
    subjects
        Number of subjects (1-based ids ``1..subjects``); none of them is a paired-set subject.
    seconds
        Recording length per subject in seconds; the corpus holds about ``subjects × seconds / 0.44``
        stage-1 windows.
    snr
        Peak amplitude of an evoked component relative to the background noise SD (the paired set's
        ``--snr`` has the same meaning).
    components
        Evoked transients per visual onset, each with a fresh map and waveform (the paired set: 2 per class).
    onset_gap_seconds
        ``[low, high]``: seconds between consecutive onsets, uniform.
    sfreq
        Sampling rate in Hz (default 250, a common MOABB rate: a quarter of the samples of 1 kHz, so a
        quarter of the build; stage 1 resamples every 0.44 s window to 512 samples anyway).
    seed
        Seed of the corpus's own random streams; subject ``s`` depends only on ``seed`` and ``s``.
    """

    def __init__(
        self,
        subjects: int = CorpusConfig.subjects,
        seconds: float = CorpusConfig.seconds,
        snr: float = CorpusConfig.snr,
        components: int = CorpusConfig.components,
        onset_gap_seconds: tuple[float, float] | list[float] = CorpusConfig.onset_gap_seconds,
        sfreq: float = CorpusConfig.sfreq,
        seed: int = CorpusConfig.seed,
    ) -> None:
        self.config = CorpusConfig(subjects, float(seconds), float(snr), components,
                                   tuple(float(g) for g in onset_gap_seconds), float(sfreq), seed)
        self.config.check()
        shared = np.random.default_rng([seed, STREAM, 0])
        self.positions = electrode_positions(shared)  # [C, 3]: the corpus's own turn of the lattice
        self.mixing = noise_mixing(self.positions)  # [C, C]
        self.visual_map = occipital_map(self.positions)  # [C]
        self.gains = subject_gains(shared, self.config.subjects)  # [S, C]

    @property
    def subject_list(self) -> list[int]:
        return list(range(1, self.config.subjects + 1))

    @property
    def fingerprint(self) -> dict:
        """Part of the stage-1 cache key besides the constructor arguments: the generator's version."""
        return {"generator": GENERATOR_VERSION}

    def recording(self, subject: int) -> np.ndarray:
        """Subject ``subject``'s continuous recording ``[128, round(seconds × sfreq)]`` float64, in noise-SD units."""
        if subject not in self.subject_list:
            raise ValueError(f"subject {subject!r} is not in SyntheticEEGCorpus (subjects 1..{self.config.subjects})")
        cfg = self.config
        n = int(round(cfg.seconds * cfg.sfreq))
        span = int(round(EVOKED_SPAN * cfg.sfreq))
        t = np.arange(span) / cfg.sfreq
        events = np.random.default_rng([cfg.seed, STREAM, 1, subject])
        signal = np.zeros((N_CHANS, n + span))  # room for the last onset's transients, cut below
        onset = events.uniform(0, cfg.onset_gap_seconds[1])
        while onset < cfg.seconds:
            i = int(round(onset * cfg.sfreq))
            vep = visual_evoked_response(events, t)
            signal[:, i : i + span] += cfg.snr * 1.5 * math.exp(events.normal(0, 0.3)) * np.outer(self.visual_map, vep)
            for _ in range(cfg.components):
                cmap = spatial_map(events, self.positions)
                latency, frequency, width, phase = gabor_parameters(events)
                amplitude = cfg.snr * math.exp(events.normal(0, 0.25))
                signal[:, i : i + span] += amplitude * np.outer(cmap, gabor(t, latency, frequency, width, phase))
            onset += events.uniform(*cfg.onset_gap_seconds)
        signal = signal[:, :n] * self.gains[subject - 1][:, None]
        noise = background_noise(np.random.default_rng([cfg.seed, STREAM, 2, subject]), self.mixing, n, cfg.sfreq)
        return signal + noise

    def get_data(self, subjects: list[int]) -> dict:
        """``{subject: {"0": {"0": mne.io.RawArray}}}`` (one session, one run), EEG channels ``EEG001..EEG128``;
        values are given to MNE as µV. No events, no labels."""
        import mne

        info = mne.create_info([f"EEG{i + 1:03d}" for i in range(N_CHANS)], self.config.sfreq, "eeg")
        return {s: {"0": {"0": mne.io.RawArray(self.recording(s) * 1e-6, info, verbose="error")}} for s in subjects}

    def __repr__(self) -> str:
        return f"SyntheticEEGCorpus({', '.join(f'{k}={v!r}' for k, v in asdict(self.config).items())})"
