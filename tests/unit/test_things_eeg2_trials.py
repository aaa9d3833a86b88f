"""THINGS-EEG2 training EEG through the MOABB path of stage 1: one window per train-split trial, never val or test."""

import numpy as np
import pytest
import torch

from dreamdiffusion.data.moabb import MOABBDataModule
from dreamdiffusion.data.things_eeg2 import validation_concepts
from dreamdiffusion.data.things_eeg2_files import load_metadata
from dreamdiffusion.data.things_eeg2_synthetic import ThingsSyntheticConfig, write_synthetic_things_eeg2
from dreamdiffusion.data.things_eeg2_trials import ThingsEEG2Trials

NAME = "dreamdiffusion.data.things_eeg2_trials.ThingsEEG2Trials"
CFG = ThingsSyntheticConfig(subjects=(1, 8), train_concepts=5, images_per_concept=2, test_concepts=2, sfreq=250.0)


@pytest.fixture(scope="module")
def twin(tmp_path_factory):
    return write_synthetic_things_eeg2(tmp_path_factory.mktemp("things") / "data", CFG)


def test_one_window_per_train_trial_of_each_subject(twin, tmp_path):
    dm = MOABBDataModule(datasets=[NAME], dataset_kwargs={NAME: {"root": str(twin), "val_concepts": 2, "trials_per_run": 7}},
                         cache_dir=str(tmp_path), val_fraction=0.5, batch_size=4)
    dm.prepare_data()
    dm.setup("fit")
    train_trials = (5 - 2) * 2 * 4  # (concepts - held out) x pictures x repetitions
    assert dm.manifest["counts"]["windows"] == 2 * train_trials  # two subjects
    batch = next(iter(dm.train_dataloader()))
    assert batch.shape == (4, 128, 512) and batch.dtype == torch.float32


def test_runs_hold_exactly_the_train_trials_post_onset(twin):
    source = ThingsEEG2Trials(str(twin), subjects=[8], val_concepts=2, trials_per_run=5)
    runs = source.get_data([8])[8]["0"]
    meta = load_metadata(twin / "image_metadata.npy")
    held_out = validation_concepts(meta.concepts["training"], 2, 0)
    kept = [i for i, c in enumerate(meta.concepts["training"]) if c not in held_out]
    stored = np.load(twin / "preprocessed_data" / "sub-08" / "preprocessed_eeg_training.npy", allow_pickle=True).item()
    data = np.concatenate([runs[r].get_data(units="uV") for r in runs], axis=1)  # 110 samples (0.44 s at 250 Hz) per trial
    expected = np.concatenate([stored["preprocessed_eeg_data"][c, r, :, 50:160] for c in kept for r in range(4)], axis=1)
    np.testing.assert_allclose(data, expected, rtol=1e-10)
    assert len(runs) == -(-len(kept) * 4 // 5)
    assert list(runs[next(iter(runs))].ch_names) == list(stored["ch_names"])


def test_missing_files_say_where_they_go(tmp_path):
    with pytest.raises(FileNotFoundError, match="synth-things-eeg2"):
        ThingsEEG2Trials(str(tmp_path), subjects=[3])
