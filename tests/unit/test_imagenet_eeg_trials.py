import os

import pytest
import torch

from dreamdiffusion.data.imagenet_eeg_files import load_eeg_file, load_split_file
from dreamdiffusion.data.imagenet_eeg_selection import select_trials
from dreamdiffusion.data.imagenet_eeg_trials import ImageNetEEGTrials
from dreamdiffusion.data.moabb import MOABBDataModule
from dreamdiffusion.data.synthetic import write_synthetic_imagenet_eeg

NAME = "dreamdiffusion.data.imagenet_eeg_trials.ImageNetEEGTrials"


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return write_synthetic_imagenet_eeg(tmp_path_factory.mktemp("synth"), classes=4, images_per_class=4, subjects=2)


def module(synth, cache_dir, **kwargs):
    files = {"eeg_path": str(synth / "eeg_5_95_std.pth"), "splits_path": str(synth / "block_splits_by_image_all.pth")}
    return MOABBDataModule(datasets=[NAME], dataset_kwargs={NAME: {**files, **kwargs}}, cache_dir=str(cache_dir),
                           val_fraction=0.5, batch_size=4)


def test_one_window_per_train_trial_of_each_subject(synth, tmp_path):
    eeg = load_eeg_file(synth / "eeg_5_95_std.pth")
    split = load_split_file(synth / "block_splits_by_image_all.pth", 0)
    train = select_trials(eeg, split, "x_all.pth", "all").positions["train"]
    dm = module(synth, tmp_path)
    dm.prepare_data()
    dm.setup("fit")
    assert len(dm.train_set) + len(dm.val_set) == len(train)
    assert dm.manifest["counts"]["windows"] == len(train)
    batch = next(iter(dm.train_dataloader()))
    assert batch.shape == (4, 128, 512) and batch.dtype == torch.float32


def test_test_split_trials_are_not_used_by_default(synth):
    trials = ImageNetEEGTrials(str(synth / "eeg_5_95_std.pth"), str(synth / "block_splits_by_image_all.pth"))
    eeg = load_eeg_file(synth / "eeg_5_95_std.pth")
    split = load_split_file(synth / "block_splits_by_image_all.pth", 0)
    test = set(select_trials(eeg, split, "x_all.pth", "all").positions["test"])
    used = {p for positions in trials._select().values() for p in positions}
    assert used and not used & test


def test_a_changed_eeg_file_is_rebuilt(synth, tmp_path):
    dm = module(synth, tmp_path / "cache")
    dm.prepare_data()
    assert dm.report["subjects_built"] == 2
    dm = module(synth, tmp_path / "cache")
    dm.prepare_data()
    assert dm.report == {"subjects_reused": 2, "subjects_built": 0}
    path = synth / "eeg_5_95_std.pth"
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    dm = module(synth, tmp_path / "cache")
    dm.prepare_data()
    assert dm.report["subjects_built"] == 2


def test_missing_file_says_how_to_make_one(tmp_path):
    with pytest.raises(FileNotFoundError, match="synth-imagenet-eeg"):
        ImageNetEEGTrials(str(tmp_path / "eeg_5_95_std.pth"), str(tmp_path / "s_all.pth"))


def test_unknown_class_path_is_a_clear_error(tmp_path):
    dm = MOABBDataModule(datasets=["dreamdiffusion.data.nowhere.Nothing"], cache_dir=str(tmp_path))
    with pytest.raises(ValueError, match="not an importable class"):
        dm.prepare_data()


def test_a_moved_run_folder_keeps_its_stage1_cache(synth, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(synth, run / "data", copy_function=shutil.copy2)  # a copy that keeps mtimes, as mv does
    module(run / "data", run / "cache").prepare_data()
    os.rename(run, tmp_path / "moved")
    dm = module(tmp_path / "moved" / "data", tmp_path / "moved" / "cache")
    dm.prepare_data()
    assert dm.report == {"subjects_reused": 2, "subjects_built": 0}
