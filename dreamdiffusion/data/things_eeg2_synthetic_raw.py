"""Raw recordings of the synthetic THINGS-EEG2 twin, in the release's raw format, so the raw preprocessing runs on them.

:func:`write_raw_recordings` writes, for each subject and session (``raw_sessions``, the release has 4)::

    raw_data/sub-XX/ses-YY/raw_eeg_training.npy   np.save of {"raw_eeg_data": [64, samples] float64 (63 EEG channels
    raw_data/sub-XX/ses-YY/raw_eeg_test.npy          and "stim"), "ch_names", "ch_types", "sfreq": 1000.0}

as the release schedules them: every training picture is shown in half of the sessions (odd pictures in odd
sessions, even in even), ``train_repetitions / (raw_sessions / 2)`` times each; every test picture in every session,
``test_repetitions / raw_sessions`` times each; plus ``raw_targets`` target trials (code 99999) per file; one
picture every 0.2 s in random order (RSVP, so the responses overlap), after 1 s of rest and before 1 s more.

Signal: at each onset the picture's evoked response (concept pattern + picture pattern, built like the preprocessed
twin's on the 63 channels at 1000 Hz, peak ``signal_to_noise``) is added to noise that is correlated between
channels (a fixed random mixing of white noise, unit variance per channel on average) and offset per channel (a
DC level that the baseline correction removes). The stimulus channel holds the picture's number for 5 ms at onset.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dreamdiffusion.data.synthetic_pictures import SHAPES

RAW_SFREQ = 1000.0
SOA = 200  # samples between onsets (0.2 s)
REST = 1000  # samples before the first and after the last onset
PULSE = 5  # samples a trigger stays on
TARGET = 99999


def _schedule(cfg, part: str, pictures: int, session: int, rng: np.random.Generator) -> np.ndarray:
    """Picture numbers (1-based) shown in one session, in presentation order, targets included."""
    if part == "training":
        shown = [i + 1 for i in range(pictures) if i % 2 == (session - 1) % 2]
        repetitions = cfg.train_repetitions // (cfg.raw_sessions // 2)
    else:
        shown = list(range(1, pictures + 1))
        repetitions = cfg.test_repetitions // cfg.raw_sessions
    codes = np.array(shown * repetitions + [TARGET] * cfg.raw_targets)
    return codes[rng.permutation(len(codes))]


def write_raw_recordings(root: Path, cfg, patterns: dict[str, np.ndarray], ch_names: list[str],
                         rng: np.random.Generator) -> None:
    """Write the twin's raw files under ``root/raw_data``; ``patterns[part]``: ``[pictures, 63, 1001]`` evoked
    responses from −0.2 s (sample 0) to 0.8 s at 1000 Hz."""
    if cfg.raw_sessions < 2 or cfg.raw_sessions % 2:
        raise ValueError(f"raw_sessions={cfg.raw_sessions}: an even number (training pictures are shown in half the sessions)")
    if cfg.train_repetitions % (cfg.raw_sessions // 2) or cfg.test_repetitions % cfg.raw_sessions:
        raise ValueError(
            f"train_repetitions={cfg.train_repetitions} must be a multiple of raw_sessions/2 and test_repetitions="
            f"{cfg.test_repetitions} a multiple of raw_sessions={cfg.raw_sessions} (the same count in every session)"
        )
    n_chans = len(ch_names)
    mixing = np.eye(n_chans) + rng.standard_normal((n_chans, n_chans)) / np.sqrt(n_chans)
    mixing /= np.sqrt((mixing**2).sum(axis=1, keepdims=True))  # unit variance per channel
    offset = 20 * rng.standard_normal((n_chans, 1))
    onset_at = int(0.2 * RAW_SFREQ)  # sample of the onset within a pattern
    for subject in cfg.subjects:
        for session in range(1, cfg.raw_sessions + 1):
            for part in ("training", "test"):
                codes = _schedule(cfg, part, len(patterns[part]), session, rng)
                n_samples = 2 * REST + SOA * len(codes)
                eeg = mixing @ rng.standard_normal((n_chans, n_samples)) + offset
                stim = np.zeros(n_samples)
                for j, code in enumerate(codes):
                    onset = REST + SOA * j
                    stim[onset : onset + PULSE] = code
                    if code != TARGET:
                        start = onset - onset_at
                        eeg[:, start : start + patterns[part].shape[2]] += cfg.signal_to_noise * patterns[part][code - 1]
                path = root / "raw_data" / f"sub-{subject:02d}" / f"ses-{session:02d}" / f"raw_eeg_{part}.npy"
                path.parent.mkdir(parents=True, exist_ok=True)
                np.save(path, {
                    "raw_eeg_data": np.vstack([eeg, stim[None]]),
                    "ch_names": [*ch_names, "stim"],
                    "ch_types": ["eeg"] * n_chans + ["stim"],
                    "sfreq": RAW_SFREQ,
                }, allow_pickle=True)


def raw_patterns(rng: np.random.Generator, evoked, concept_labels: dict[str, list[int]], n_classes: int, hue,
                 n_chans: int) -> dict[str, np.ndarray]:
    """``{part: [pictures, n_chans, 1001]}`` evoked responses at 1000 Hz (−0.2…0.8 s): a component per shape, two hue
    components (cos/sin of the hue angle) and half a picture-specific one, as the preprocessed twin builds them.
    ``concept_labels[part]``: the concept label of each picture."""
    times = np.arange(-int(0.2 * RAW_SFREQ), int(0.8 * RAW_SFREQ) + 1) / RAW_SFREQ
    shape_pattern = [evoked(rng, n_chans, times) for _ in SHAPES]
    hue_pattern = (evoked(rng, n_chans, times), evoked(rng, n_chans, times))
    patterns = {}
    for part, labels in concept_labels.items():
        rows = []
        for label in labels:
            angle = 2 * np.pi * hue(label, n_classes)
            concept = shape_pattern[label % len(SHAPES)] + np.cos(angle) * hue_pattern[0] + np.sin(angle) * hue_pattern[1]
            rows.append(concept + 0.5 * evoked(rng, n_chans, times))
        patterns[part] = np.stack(rows)
    return patterns
