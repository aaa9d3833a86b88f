"""THINGS-EEG2 from the raw recordings: epochs, MVNN fit on training EEG only, the release's layout, clear errors."""

import json
import shutil

import numpy as np
import pytest

from dreamdiffusion.data.mvnn import noise_covariance, shrunk_covariance, whitening_matrix
from dreamdiffusion.data.npy_dict import load_npy_dict
from dreamdiffusion.data.things_eeg2 import FROM_RAW_NOTE, OFFICIAL_WHITENING_NOTE, ThingsEEG2DataModule
from dreamdiffusion.data.things_eeg2_preprocess import RawPreprocessing, preprocess_subject
from dreamdiffusion.data.things_eeg2_raw import cut_epochs, load_raw_session
from dreamdiffusion.data.things_eeg2_synthetic import CHANNELS_17, ThingsSyntheticConfig, write_synthetic_things_eeg2

CFG = ThingsSyntheticConfig(subjects=(8,), train_concepts=4, images_per_concept=2, test_concepts=3, train_repetitions=4,
                            test_repetitions=8, signal_to_noise=3.0, raw=True)
SETTINGS = RawPreprocessing(chunk_conditions=3)  # chunks smaller than a session: the chunked path is the one tested


@pytest.fixture(scope="module")
def twin(tmp_path_factory):
    root = write_synthetic_things_eeg2(tmp_path_factory.mktemp("things-raw") / "data", CFG)
    preprocess_subject(root / "raw_data", 8, root / "from_raw", SETTINGS)
    return root


def preprocessed(folder, part):
    return load_npy_dict(folder / f"preprocessed_eeg_{part}.npy")


def rewrite(path, **changes):
    """Re-save a raw file with some keys changed (``None`` removes a key)."""
    content = load_npy_dict(path)
    content = {k: np.array(v) if isinstance(v, np.ndarray) else v for k, v in content.items()}
    for key, value in changes.items():
        if value is None:
            del content[key]
        else:
            content[key] = value
    np.save(path, content, allow_pickle=True)


# --------------------------------------------------------------------------------------------- MVNN


def test_shrunk_covariance_is_scikit_learns_estimator_the_release_used():
    sklearn = pytest.importorskip("sklearn.discriminant_analysis")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 2, 17)) * rng.uniform(0.5, 3.0, 17)
    x[1, :, 3] = 7.0  # a constant channel keeps unit scale
    expected = np.stack([sklearn._cov(batch, shrinkage="auto") for batch in x])
    np.testing.assert_allclose(shrunk_covariance(x), expected, rtol=1e-10, atol=1e-12)


def test_whitening_matrix_turns_the_covariance_into_the_identity():
    rng = np.random.default_rng(1)
    epochs = np.einsum("ij,crjt->crit", rng.standard_normal((5, 5)), rng.standard_normal((6, 3, 5, 40)))
    sigma = noise_covariance(epochs, "time") / len(epochs)
    w = whitening_matrix(sigma)
    np.testing.assert_allclose(w @ sigma @ w, np.eye(5), atol=1e-10)
    with pytest.raises(ValueError, match="not positive definite"):
        whitening_matrix(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="at least 2 repetitions"):
        noise_covariance(epochs[:, :1], "time")


# ------------------------------------------------------------------------------------------- epochs


def test_epochs_are_baseline_corrected_resampled_and_targets_dropped(tmp_path):
    sfreq, n = 1000.0, 9000
    names, types = ["Cz", "O1", "Pz", "STI"], ["eeg", "eeg", "eeg", "stim"]
    data = np.zeros((4, n))
    data[:3] += np.array([[5.0], [-3.0], [2.0]])  # DC offsets, removed by the baseline
    codes = [2, 99999, 1, 3, 1]
    for j, code in enumerate(codes):
        onset = 1000 + 1500 * j  # 1.5 s apart: epochs do not overlap
        data[3, onset : onset + 5] = code
        data[:3, onset + 100 : onset + 300] += code  # a box of height `code` from 0.1 to 0.3 s
    np.save(tmp_path / "raw.npy", {"raw_eeg_data": data, "ch_names": names, "ch_types": types, "sfreq": sfreq})
    session = load_raw_session(tmp_path / "raw.npy")
    assert session.targets == 1 and session.conditions.tolist() == [2, 1, 3, 1]
    rows = session.eeg_channels("occipito-parietal")
    assert [names[r] for r in rows] == ["O1", "Pz"]
    epochs, times = cut_epochs(session, session.onsets, rows, 100.0)
    assert epochs.shape == (4, 2, 100) and times[0] == -0.2 and times[-1] == 0.79
    inside = (times >= 0.15) & (times <= 0.25)
    np.testing.assert_allclose(epochs[:, :, inside].mean(axis=2), np.array([[2, 2], [1, 1], [3, 3], [1, 1]]), atol=0.05)
    np.testing.assert_allclose(epochs[:, :, times < -0.05].mean(axis=2), 0, atol=0.05)


# ------------------------------------------------------------------------------------- preprocessing


def test_output_has_the_release_layout_sorted_by_picture(twin):
    folder = twin / "from_raw" / "sub-08"
    training, test = preprocessed(folder, "training"), preprocessed(folder, "test")
    assert training["preprocessed_eeg_data"].shape == (8, 4, 17, 100)  # 4 concepts x 2 pictures, 2 sessions x 2
    assert test["preprocessed_eeg_data"].shape == (3, 8, 17, 100)  # 4 sessions x 2
    assert list(training["ch_names"]) == list(CHANNELS_17) == list(test["ch_names"])
    np.testing.assert_allclose(training["times"], np.round(-0.2 + np.arange(100) / 100, 6))
    # repetitions of one picture come from different sessions, each whitened by its own matrix, and are shuffled:
    # still, the mean of half of a picture's repetitions matches the other half of the same picture best
    x = test["preprocessed_eeg_data"]
    first, second = x[:, ::2].mean(axis=1).reshape(3, -1), x[:, 1::2].mean(axis=1).reshape(3, -1)
    assert (np.corrcoef(first, second)[:3, 3:].argmax(axis=1) == np.arange(3)).all()
    manifest = json.loads((folder / "preprocessing.json").read_text())
    assert manifest["whitening_fit"] == "training" and manifest["target_trials_removed"] == {"training": 8, "test": 8}
    assert np.load(folder / "whitening.npy").shape == (4, 17, 17)


def test_changing_the_test_eeg_leaves_the_training_output_and_the_whitening_unchanged(twin, tmp_path):
    raw = tmp_path / "raw_data"
    shutil.copytree(twin / "raw_data", raw)
    rng = np.random.default_rng(5)
    for path in raw.glob("sub-08/ses-*/raw_eeg_test.npy"):
        data = np.array(load_npy_dict(path)["raw_eeg_data"])
        data[:-1] = 10 * rng.standard_normal(data[:-1].shape)  # other EEG, same stimulus channel
        rewrite(path, raw_eeg_data=data)
    folder = preprocess_subject(raw, 8, tmp_path / "out", SETTINGS)
    original = twin / "from_raw" / "sub-08"
    np.testing.assert_array_equal(np.load(folder / "whitening.npy"), np.load(original / "whitening.npy"))
    np.testing.assert_array_equal(preprocessed(folder, "training")["preprocessed_eeg_data"],
                                  preprocessed(original, "training")["preprocessed_eeg_data"])
    assert not np.allclose(preprocessed(folder, "test")["preprocessed_eeg_data"],
                           preprocessed(original, "test")["preprocessed_eeg_data"])


def test_data_module_reports_the_preprocessing_it_read(twin, tmp_path):
    def protocol(eeg_dir):
        dm = ThingsEEG2DataModule(str(twin), eeg_dir=eeg_dir, subjects=[8], val_concepts=1, eeg_only=True, num_workers=0)
        dm.setup()
        return dm.protocol

    ours = protocol("from_raw")
    assert ours["preprocessing"] == {"sub-08": "from-raw"}
    assert FROM_RAW_NOTE in ours["notes"] and OFFICIAL_WHITENING_NOTE not in ours["notes"]
    assert protocol("preprocessed_data")["preprocessing"] == {"sub-08": "synthetic"}
    copy = tmp_path / "copy"
    shutil.copytree(twin / "from_raw", copy)
    shutil.copy(twin / "preprocessed_data" / "sub-08" / "preprocessed_eeg_test.npy", copy / "sub-08")
    with pytest.raises(ValueError, match="replaced after preprocessing"):
        protocol(str(copy))


# ------------------------------------------------------------------------------------------- errors


@pytest.fixture
def session_file(twin, tmp_path):
    path = tmp_path / "raw_eeg_training.npy"
    shutil.copy(twin / "raw_data" / "sub-08" / "ses-01" / "raw_eeg_training.npy", path)
    return path


def test_a_missing_key_is_named_with_the_file(session_file):
    rewrite(session_file, ch_types=None)
    with pytest.raises(KeyError, match=r"raw_eeg_training.npy lacks key\(s\) 'ch_types'"):
        load_raw_session(session_file)


def test_a_wrong_sampling_rate_is_named_with_the_file(session_file):
    rewrite(session_file, sfreq=500.0)
    with pytest.raises(ValueError, match=r"raw_eeg_training.npy: 'sfreq' is 500 Hz but .* 1000 Hz"):
        load_raw_session(session_file)


def test_a_recording_without_stimulus_events_is_refused(session_file):
    data = np.array(load_npy_dict(session_file)["raw_eeg_data"])
    data[-1] = 0.0
    rewrite(session_file, raw_eeg_data=data)
    with pytest.raises(ValueError, match=r"raw_eeg_training.npy: the stimulus channel 'stim' holds no events"):
        load_raw_session(session_file)
    rewrite(session_file, ch_types=["eeg"] * data.shape[0])
    with pytest.raises(ValueError, match=r"names 0 stimulus channel"):
        load_raw_session(session_file)


def test_missing_sessions_are_named(twin, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"ses-05/raw_eeg_training.npy does not exist"):
        preprocess_subject(twin / "raw_data", 8, tmp_path / "out", RawPreprocessing(sessions=(1, 2, 3, 4, 5)))
    # one session alone lacks half the training pictures (each is shown in half the sessions)
    with pytest.raises(ValueError, match=r"training picture number\(s\) \[2, 4, 6, 8\] have no trial"):
        preprocess_subject(twin / "raw_data", 8, tmp_path / "out", RawPreprocessing(sessions=(1,)),
                           pictures={"training": 8, "test": 3})
    with pytest.raises(ValueError, match=r"test picture number 3 occurs .* lists 2 test pictures"):
        preprocess_subject(twin / "raw_data", 8, tmp_path / "out", SETTINGS, pictures={"training": 8, "test": 2})
    assert not (tmp_path / "out" / "sub-08").exists()


@pytest.mark.parametrize("dim", ["time", "epochs"])
def test_noise_covariance_follows_the_release_definition_in_small_steps(dim, monkeypatch):
    """Per picture: the mean over time points (``time``) or repetitions (``epochs``) of the shrunk covariance, summed
    over pictures; computed a few matrices at a time gives the same."""
    sklearn = pytest.importorskip("sklearn.discriminant_analysis")
    import dreamdiffusion.data.mvnn as mvnn

    epochs = np.random.default_rng(2).standard_normal((7, 3, 5, 11))  # [pictures, repetitions, channels, times]
    if dim == "time":
        expected = sum(np.mean([sklearn._cov(c[:, :, t], shrinkage="auto") for t in range(11)], axis=0) for c in epochs)
    else:
        expected = sum(np.mean([sklearn._cov(c[r].T, shrinkage="auto") for r in range(3)], axis=0) for c in epochs)
    monkeypatch.setattr(mvnn, "MAX_BATCH", 4)
    np.testing.assert_allclose(noise_covariance(epochs, dim), expected, rtol=1e-10, atol=1e-12)
