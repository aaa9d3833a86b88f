import mne
import numpy as np
import pytest
import torch

from dreamdiffusion.signal import (
    Preprocessing,
    band_pass,
    cut_windows,
    harmonise_channels,
    preprocess_raw,
    replication_index,
    resample_window,
)


def make_raw(data_uv: np.ndarray, sfreq: float, names=None, types=None) -> mne.io.RawArray:
    names = names or [f"EEG{i:03d}" for i in range(data_uv.shape[0])]
    info = mne.create_info(names, sfreq, types or "eeg")
    return mne.io.RawArray(data_uv * 1e-6, info, verbose="error")


def power_at(x: np.ndarray, sfreq: float, freq: float) -> float:
    spectrum = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / sfreq)
    return float(spectrum[np.argmin(np.abs(freqs - freq))])


def test_band_pass_removes_2_hz_and_keeps_40_hz():
    sfreq = 250.0
    t = np.arange(int(20 * sfreq)) / sfreq
    slow, fast = np.sin(2 * np.pi * 2 * t), np.sin(2 * np.pi * 40 * t)
    out = band_pass(np.stack([slow, fast]), sfreq, 5.0, 95.0)
    mid = slice(1000, -1000)  # away from the edges
    assert power_at(out[0, mid], sfreq, 2) < 1e-3 * power_at(slow[mid], sfreq, 2)
    assert power_at(out[1, mid], sfreq, 40) == pytest.approx(power_at(fast[mid], sfreq, 40), rel=0.05)


def test_upper_edge_is_lowered_below_nyquist_with_a_warning():
    data = np.random.default_rng(0).standard_normal((2, 1280))
    with pytest.warns(UserWarning, match="not below Nyquist"):
        band_pass(data, 128.0, 5.0, 95.0)


def test_sampling_rate_too_low_for_the_band_is_an_error():
    with pytest.raises(ValueError, match=r"8.0 Hz is too low for a 5.0 Hz high-pass"):
        band_pass(np.zeros((1, 100)), 8.0, 5.0, 95.0, source="rec.edf")


def test_preprocess_keeps_eeg_only_and_gives_512_sample_windows():
    rng = np.random.default_rng(0)
    data = rng.standard_normal((4, 2500)) * 20
    raw = make_raw(data, 250.0, ["C3", "Cz", "C4", "STI"], ["eeg", "eeg", "eeg", "stim"])
    windows = preprocess_raw(raw, Preprocessing())
    assert windows.ch_names == ["C3", "Cz", "C4"]
    assert windows.data.shape == (2500 // 110, 3, 512)
    assert windows.data.dtype == np.float32


def test_nan_and_flat_windows_are_dropped_and_counted():
    rng = np.random.default_rng(0)
    data = rng.standard_normal((3, 1000))
    data[:, 100:110] = np.nan  # inside window 0
    data[:, 300:400] = 0.0  # window 1 spans 250..499, not entirely flat
    data[:, 500:750] = 5.0  # window 2 is flat on every channel
    windows, n_nonfinite, n_flat = cut_windows(data, 250.0, window_seconds=1.0, n_times=512)
    assert (n_nonfinite, n_flat) == (1, 1)
    assert windows.shape == (2, 3, 512)


def test_recording_shorter_than_a_window_is_an_error():
    raw = make_raw(np.random.default_rng(0).standard_normal((3, 50)), 250.0)
    with pytest.raises(ValueError, match=r"shorter than one window of 0.44 s"):
        preprocess_raw(raw, source="sub-1 run 0")


def test_onset_beyond_the_recording_is_an_error():
    with pytest.raises(ValueError, match="outside the recording"):
        cut_windows(np.zeros((2, 1000)), 250.0, onsets=np.array([950]))


def test_resample_window_is_linear_and_keeps_shape():
    x = torch.linspace(0, 1, 440).repeat(3, 1)
    out = resample_window(x, 512)
    assert out.shape == (3, 512)
    assert torch.allclose(out[0], torch.linspace(0, 1, 512), atol=1e-6)


@pytest.mark.parametrize("n_source", [440, 300, 700])
def test_resample_window_matches_interp1d_over_linspace(n_source):
    """The authors' loader: interp1d over linspace(0, 1, n) for both grids (end points kept)."""
    from scipy.interpolate import interp1d

    x = np.random.default_rng(n_source).normal(size=(4, n_source))
    expected = interp1d(np.linspace(0, 1, n_source), x, axis=-1)(np.linspace(0, 1, 512))
    out = resample_window(x, 512)
    assert np.abs(out.numpy() - expected).max() < 1e-5
    assert torch.equal(out[:, 0], torch.as_tensor(x[:, 0], dtype=torch.float32))


@pytest.mark.parametrize("n_source", [19, 32, 64, 128, 160])
def test_channels_harmonised_to_128(n_source):
    index = replication_index(n_source)
    x = torch.arange(n_source, dtype=torch.float32)[:, None].repeat(1, 8)
    out = harmonise_channels(x, index)
    assert out.shape == (128, 8)
    if n_source <= 128:
        # every source channel is used, replicated in order
        assert set(out[:, 0].long().tolist()) == set(range(n_source))
        assert torch.equal(out[:n_source, 0], torch.arange(n_source, dtype=torch.float32))
    else:
        assert out[0, 0] == 0 and out[-1, 0] == n_source - 1
        assert len(set(out[:, 0].tolist())) == 128


def test_window_stride_spaces_the_windows():
    raw = make_raw(np.random.default_rng(0).standard_normal((2, 2500)) * 20, 250.0)
    back_to_back = preprocess_raw(raw, Preprocessing())
    sparse = preprocess_raw(raw, Preprocessing(window_stride_seconds=0.88))
    assert len(back_to_back.data) == 22 and len(sparse.data) == 11
    np.testing.assert_array_equal(sparse.data[1], back_to_back.data[2])


def test_eeg_data_is_in_microvolts_without_stim_channels():
    from dreamdiffusion.signal import eeg_data

    raw = make_raw(np.full((3, 100), 20.0), 250.0, ["C3", "C4", "STI"], ["eeg", "eeg", "stim"])
    data, names, sfreq = eeg_data(raw)
    assert names == ["C3", "C4"] and sfreq == 250.0
    np.testing.assert_allclose(data, 20.0)  # stored as 20e-6 V


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
@pytest.mark.parametrize(
    "index", [np.arange(4), np.array([0, 1, 3, 2]), np.array([0, 1, 2, 3, 0, 1])], ids=["identity", "permuted", "replicated"]
)
def test_harmonise_channels_gives_a_new_float32_copy_equal_to_the_gather(dtype, index):
    x = np.random.default_rng(0).normal(size=(2, 4, 8)).astype(dtype)
    before = x.copy()
    x.setflags(write=False)  # as a memory-mapped cache is
    out = harmonise_channels(x, index)
    assert out.dtype == torch.float32
    assert torch.equal(out, torch.from_numpy(x.astype(np.float32)[:, index]))
    out += 1  # writable, and not the input's memory
    assert np.array_equal(x, before)


def test_resample_window_equals_the_plain_interpolation_bit_for_bit_and_leaves_its_input_alone():
    x = torch.randn(3, 5, 110)
    before = x.clone()
    position = torch.linspace(0, 109, 512, dtype=torch.float64)
    left = position.floor().long().clamp(max=108)
    w = (position - left).to(torch.float32)
    assert torch.equal(resample_window(x, 512), x[..., left] * (1 - w) + x[..., left + 1] * w)
    assert torch.equal(x, before)
