"""The unpaired synthetic corpus for stage 1: through the real MOABB path, deterministic, unpaired, checked."""

import numpy as np
import pytest
import torch

from dreamdiffusion.data.moabb import MOABBDataModule
from dreamdiffusion.data.synthetic import write_synthetic_imagenet_eeg
from dreamdiffusion.data.synthetic_corpus import SyntheticEEGCorpus
from dreamdiffusion.data.synthetic_eeg import noise_mixing

NAME = "dreamdiffusion.data.synthetic_corpus.SyntheticEEGCorpus"


def module(cache_dir, **kwargs):
    corpus = {"subjects": 5, "seconds": 4.4, **kwargs}
    return MOABBDataModule(datasets=[NAME], dataset_kwargs={NAME: corpus}, cache_dir=str(cache_dir),
                           val_fraction=0.2, batch_size=6)


def all_windows(dm):
    return torch.cat([dm.train_set[i][None] for i in range(len(dm.train_set))] + [dm.val_set[i][None] for i in range(len(dm.val_set))])


@pytest.mark.slow
def test_windows_subjects_and_a_split_by_subject_through_the_moabb_data_module(tmp_path):
    dm = module(tmp_path)
    dm.prepare_data()
    dm.setup("fit")
    # 4.4 s at 250 Hz: ten back-to-back 0.44 s windows per subject, 5 subjects
    assert dm.manifest["counts"]["windows"] == 50 and dm.manifest["counts"]["skipped_recordings"] == 0
    train, val = set(map(tuple, dm.manifest["split"]["train"])), set(map(tuple, dm.manifest["split"]["val"]))
    assert train | val == {(NAME, s) for s in range(1, 6)} and not train & val and len(val) == 1
    assert (len(dm.train_set), len(dm.val_set)) == (40, 10)
    batch = next(iter(dm.train_dataloader()))
    assert batch.shape == (6, 128, 512) and batch.dtype == torch.float32 and torch.isfinite(batch).all()
    # standardised per channel by the MOABB path, and 128 distinct channels (none replicated)
    x = all_windows(dm)
    assert abs(x.mean().item()) < 0.05 and 0.8 < x.std().item() < 1.2
    assert not torch.equal(x[:, 0], x[:, 64])


def test_same_kwargs_same_windows_and_another_seed_other_windows(tmp_path):
    built = []
    for folder, seed in (("a", 0), ("b", 0), ("c", 1)):
        dm = module(tmp_path / folder, subjects=3, seed=seed)
        dm.prepare_data()
        dm.setup("fit")
        built.append(all_windows(dm))
    assert torch.equal(built[0], built[1])
    assert not torch.allclose(built[0], built[2])


def test_a_subject_depends_only_on_the_seed_and_its_id():
    few, many = SyntheticEEGCorpus(subjects=2, seconds=2), SyntheticEEGCorpus(subjects=30, seconds=2)
    assert np.array_equal(few.recording(2), many.recording(2))
    assert not np.allclose(many.recording(1), many.recording(2))


def test_the_corpus_does_not_depend_on_the_paired_set_and_returns_no_labels(tmp_path):
    before = SyntheticEEGCorpus(subjects=2, seconds=3).get_data([1, 2])
    # paired sets of other seeds and class counts, written in between, change nothing
    write_synthetic_imagenet_eeg(tmp_path / "p0", classes=2, images_per_class=3, subjects=1, seed=0)
    write_synthetic_imagenet_eeg(tmp_path / "p5", classes=5, images_per_class=3, subjects=2, seed=5)
    after = SyntheticEEGCorpus(subjects=2, seconds=3).get_data([1, 2])
    for s in (1, 2):
        raw_before, raw_after = before[s]["0"]["0"], after[s]["0"]["0"]
        assert np.array_equal(raw_before.get_data(), raw_after.get_data())
        # EEG channels only: no stimulus channel, no events, no annotations that could carry a label
        assert set(raw_after.get_channel_types()) == {"eeg"} and len(raw_after.ch_names) == 128
        assert len(raw_after.annotations) == 0
    assert set(before) == {1, 2} and set(before[1]) == {"0"} and set(before[1]["0"]) == {"0"}


def test_same_noise_physics_as_the_paired_set():
    corpus = SyntheticEEGCorpus(subjects=1, seconds=40, snr=0.0)
    x = corpus.recording(1)  # snr 0: the background alone
    assert np.allclose(x.std(axis=1), 1.0)
    mixing = noise_mixing(corpus.positions)
    expected = mixing @ mixing.T  # correlation of unit-norm rows mixing independent sources
    measured = np.corrcoef(x)
    assert np.abs(measured - expected).max() < 0.1
    # evoked transients add variance on top of the same noise
    assert SyntheticEEGCorpus(subjects=1, seconds=40, snr=1.5).recording(1).std() > 1.03


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"subjects": 0}, "subjects=0 must be an integer >= 1"),
        ({"snr": -1.0}, "snr=-1.0 must be >= 0"),
        ({"seconds": 0}, "seconds=0.0 must be >= 1 s"),
        ({"components": -1}, "components=-1 must be an integer >= 0"),
        ({"onset_gap_seconds": [1.0, 0.5]}, r"onset_gap_seconds=\[1.0, 0.5\] must be \[low, high\]"),
        ({"sfreq": 100}, "sfreq=100.0 must be >= 237.5 Hz"),
        ({"seed": -3}, "seed=-3 must be an integer >= 0"),
    ],
)
def test_bad_arguments_are_refused_naming_the_key(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SyntheticEEGCorpus(**kwargs)


def test_a_bad_argument_in_the_config_stops_the_data_module_with_the_key(tmp_path):
    with pytest.raises(ValueError, match=r"SyntheticEEGCorpus \(data.init_args.dataset_kwargs\): subjects=0"):
        module(tmp_path, subjects=0).prepare_data()


def test_an_unknown_subject_is_refused():
    with pytest.raises(ValueError, match="subject 4 is not in SyntheticEEGCorpus"):
        SyntheticEEGCorpus(subjects=3, seconds=2).recording(4)
