"""THINGS-EEG2: the safe .npy-dict reader, the synthetic twin in the release's formats, the leak-free splits."""

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from dreamdiffusion.data.npy_dict import NotPlainNpyError, load_npy_dict
from dreamdiffusion.data.things_eeg2 import ThingsEEG2DataModule
from dreamdiffusion.data.things_eeg2_dataset import AVERAGE, trial_index
from dreamdiffusion.data.things_eeg2_files import load_metadata
from dreamdiffusion.data.things_eeg2_synthetic import ThingsSyntheticConfig, write_synthetic_things_eeg2
from dreamdiffusion.models.backbones import build_tiny_clip
from dreamdiffusion.signal import replication_index, resample_window

CFG = ThingsSyntheticConfig(subjects=(1, 8), train_concepts=6, images_per_concept=2, test_concepts=3,
                            train_repetitions=4, test_repetitions=5, channels=17, sfreq=100.0)


@pytest.fixture(scope="module")
def twin(tmp_path_factory):
    root = tmp_path_factory.mktemp("things")
    return write_synthetic_things_eeg2(root / "data", CFG), build_tiny_clip(root / "clip")


def module(twin, **kwargs):
    data, clip = twin
    options = dict(subjects=[8], val_concepts=2, image_size=32, clip_model=str(clip), local_files_only=True,
                   batch_size=4, num_workers=0)
    options.update(kwargs)
    dm = ThingsEEG2DataModule(str(data), **options)
    dm.setup()
    return dm


def write_npy_with_pickle(path: Path, payload: bytes) -> None:
    """An .npy file whose header says 'object array' followed by an arbitrary pickle stream."""
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "|O", "fortran_order": False, "shape": ()})
        f.write(payload)


# ------------------------------------------------------------------------------------------- reader


def test_reader_returns_the_saved_dict_and_memory_maps_large_arrays(tmp_path):
    eeg = np.random.default_rng(0).standard_normal((30, 4, 17, 100))
    np.save(tmp_path / "x.npy", {"preprocessed_eeg_data": eeg, "ch_names": ["Oz"] * 17, "times": np.arange(100) / 100})
    content = load_npy_dict(tmp_path / "x.npy", mmap_threshold=1000)
    assert isinstance(content["preprocessed_eeg_data"], np.memmap)
    np.testing.assert_array_equal(content["preprocessed_eeg_data"], eeg)
    assert content["ch_names"] == ["Oz"] * 17
    small = load_npy_dict(tmp_path / "x.npy", mmap_threshold=10**9)["preprocessed_eeg_data"]
    assert not isinstance(small, np.memmap) and np.array_equal(small, eeg)


@pytest.mark.parametrize("protocol", [2, 3, 5])
def test_reader_reads_files_of_older_and_newer_pickle_protocols(tmp_path, protocol):
    value = {"a": np.arange(6.0).reshape(2, 3), "names": np.array(["x", "yy"]), "n": 3}
    write_npy_with_pickle(tmp_path / "p.npy", pickle.dumps(np.array(value, dtype=object), protocol=protocol))
    content = load_npy_dict(tmp_path / "p.npy", mmap_threshold=8)
    np.testing.assert_array_equal(content["a"], value["a"])
    assert list(content["names"]) == ["x", "yy"] and content["n"] == 3


def test_reader_refuses_a_hostile_file_without_running_it(tmp_path):
    marker = tmp_path / "pwned"

    class Hostile:
        def __reduce__(self):
            return (__import__("os").system, (f"touch {marker}",))

    path = tmp_path / "hostile.npy"
    write_npy_with_pickle(path, pickle.dumps(np.array({"preprocessed_eeg_data": Hostile()}, dtype=object), protocol=3))
    with pytest.raises(NotPlainNpyError, match=r"hostile\.npy.*(posix|os)\.system"):
        load_npy_dict(path)
    assert not marker.exists()
    # what np.load(allow_pickle=True) would have done, to prove the file is really hostile
    np.load(path, allow_pickle=True)
    assert marker.exists()


def test_reader_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.npy"):
        load_npy_dict(tmp_path / "nothere.npy")
    np.save(tmp_path / "plain.npy", np.zeros(3))
    with pytest.raises(ValueError, match=r"plain\.npy holds a plain float64 array"):
        load_npy_dict(tmp_path / "plain.npy")
    (tmp_path / "junk.npy").write_bytes(b"not numpy at all")
    with pytest.raises(ValueError, match=r"junk\.npy is not an \.npy file"):
        load_npy_dict(tmp_path / "junk.npy")


# -------------------------------------------------------------------------------------------- twin


def test_twin_is_in_the_release_format(twin):
    data, _ = twin
    stored = np.load(data / "preprocessed_data" / "sub-08" / "preprocessed_eeg_training.npy", allow_pickle=True).item()
    assert stored["preprocessed_eeg_data"].shape == (12, 4, 17, 100)
    assert stored["preprocessed_eeg_data"].dtype == np.float64
    assert stored["times"][0] == pytest.approx(-0.2) and stored["times"][-1] == pytest.approx(0.79)
    test = np.load(data / "preprocessed_data" / "sub-01" / "preprocessed_eeg_test.npy", allow_pickle=True).item()
    assert test["preprocessed_eeg_data"].shape == (3, 5, 17, 100)
    meta = np.load(data / "image_metadata.npy", allow_pickle=True).item()
    assert sorted(meta) == ["test_img_concepts", "test_img_files", "train_img_concepts", "train_img_files"]
    for concept, file in zip(meta["train_img_concepts"], meta["train_img_files"], strict=True):
        assert (data / "training_images" / concept / file).is_file()


# ----------------------------------------------------------------------------------- data module


def test_item_i_is_picture_i_of_the_metadata_and_its_eeg(twin):
    dm = module(twin, train_repetitions="single", test_repetitions="average")
    data, _ = twin
    meta = np.load(data / "image_metadata.npy", allow_pickle=True).item()
    stored = np.load(data / "preprocessed_data" / "sub-08" / "preprocessed_eeg_training.npy", allow_pickle=True).item()
    train = dm.datasets["train"]
    for i in (0, len(train) - 1):
        subject, condition, repetition = train.rows[i]
        item = train[i]
        assert item["image_name"] == f"{meta['train_img_concepts'][condition]}/{meta['train_img_files'][condition]}"
        assert train.image_path(i) == data / "training_images" / meta["train_img_concepts"][condition] / meta["train_img_files"][condition]
        post = stored["preprocessed_eeg_data"][condition, repetition][:, 20:]  # times >= 0
        expected = resample_window(torch.as_tensor(post, dtype=torch.float32)[replication_index(17)], 512)
        torch.testing.assert_close(item["eeg"], expected)
        assert item["eeg"].shape == (128, 512) and item["image"].shape == (3, 32, 32)
        assert int(item["index"]) == trial_index(8, condition, repetition) and int(item["subject"]) == 8
    test_stored = np.load(data / "preprocessed_data" / "sub-08" / "preprocessed_eeg_test.npy", allow_pickle=True).item()
    item = dm.datasets["test"][2]
    mean = test_stored["preprocessed_eeg_data"][2].mean(axis=0)[:, 20:]
    torch.testing.assert_close(item["eeg"], resample_window(torch.as_tensor(mean, dtype=torch.float32)[replication_index(17)], 512))
    assert int(item["index"]) == trial_index(8, 2, AVERAGE)
    assert item["image_name"] == f"{meta['test_img_concepts'][2]}/{meta['test_img_files'][2]}"


def test_splits_are_leak_free_whole_concepts(twin):
    dm = module(twin)
    def concept(ds):
        return {name.split("/")[0] for name in (ds.metadata.image_name(ds.part, c) for _, c, _ in ds.rows)}

    train, val, test = (concept(dm.datasets[k]) for k in ("train", "val", "test"))
    assert len(val) == 2 and not val & train and not test & (train | val)
    meta = load_metadata(twin[0] / "image_metadata.npy")
    for held_out in val:  # every picture and repetition of a validation concept is in val
        pictures = [i for i, c in enumerate(meta.concepts["training"]) if c == held_out]
        assert {(c, r) for _, c, r in dm.datasets["val"].rows if c in pictures} == {(c, r) for c in pictures for r in range(4)}
    assert len(dm.datasets["test"]) == 3  # averaged: one item per test picture
    assert dm.protocol["name"] == "leak-free" and any("synthetic twin" in n for n in dm.protocol_notes)
    assert module(twin, split_seed=0).protocol["val_concepts"] == dm.protocol["val_concepts"]


def test_cross_subject_and_repetition_modes(twin):
    dm = module(twin, subjects=[1], test_subjects=[8], train_repetitions="average", test_repetitions="single")
    assert {s for s, _, _ in dm.datasets["train"].rows} == {1} and {s for s, _, _ in dm.datasets["test"].rows} == {8}
    assert len(dm.datasets["test"]) == 3 * 5
    assert all(r == AVERAGE for _, _, r in dm.datasets["train"].rows)
    indices = [int(dm.datasets["test"].trial_info(i)["index"]) for i in range(len(dm.datasets["test"]))]
    assert len(set(indices)) == len(indices)


def test_eeg_only_batches_for_stage_1(twin):
    dm = module(twin, eeg_only=True, clip_model="not-needed")
    batch = next(iter(dm.train_dataloader()))
    assert isinstance(batch, torch.Tensor) and batch.shape == (4, 128, 512)


def test_fitting_never_opens_the_test_eeg(twin, tmp_path):
    import shutil

    data, clip = twin
    copy = tmp_path / "copy"
    shutil.copytree(data, copy)
    (copy / "preprocessed_data" / "sub-08" / "preprocessed_eeg_test.npy").unlink()
    (copy / "synthetic.json").unlink()  # from here on it looks like the release
    dm = ThingsEEG2DataModule(str(copy), subjects=[8], val_concepts=2, image_size=32, clip_model=str(clip),
                              local_files_only=True, num_workers=0)
    dm.setup("fit")
    assert set(dm.datasets) == {"train", "val"}
    assert any("used statistics that include the test EEG" in n for n in dm.protocol_notes)
    with pytest.raises(FileNotFoundError, match=r"sub-08/preprocessed_eeg_test\.npy"):
        dm.setup("test")


def test_bad_inputs_are_named(twin, tmp_path):
    data, _ = twin
    with pytest.raises(FileNotFoundError, match="sub-03"):
        module(twin, subjects=[3])
    with pytest.raises(ValueError, match="val_concepts=6"):
        module(twin, val_concepts=6)
    with pytest.raises(ValueError, match="train_repetitions='mean'"):
        ThingsEEG2DataModule(str(data), train_repetitions="mean")
    with pytest.raises(ValueError, match="window"):
        module(twin, window_start=0.5, window_stop=0.505)
    # a test concept among the training concepts is a leak
    meta = np.load(data / "image_metadata.npy", allow_pickle=True).item()
    meta["test_img_concepts"] = ["00099_" + meta["train_img_concepts"][0].split("_", 1)[1]] + list(meta["test_img_concepts"][1:])
    np.save(tmp_path / "image_metadata.npy", meta, allow_pickle=True)
    with pytest.raises(ValueError, match="would leak"):
        load_metadata(tmp_path / "image_metadata.npy")


def test_the_63_channel_250_hz_variant_and_a_montage_map(tmp_path):
    import mne

    data = write_synthetic_things_eeg2(tmp_path / "v", ThingsSyntheticConfig(
        subjects=(8,), train_concepts=3, images_per_concept=1, test_concepts=2, channels=63, sfreq=250.0))
    stored = np.load(data / "preprocessed_data" / "sub-08" / "preprocessed_eeg_training.npy", allow_pickle=True).item()
    assert stored["preprocessed_eeg_data"].shape == (3, 4, 63, 250)
    targets = mne.channels.make_standard_montage("standard_1005").ch_names[:128]
    dm = ThingsEEG2DataModule(str(data), subjects=[8], val_concepts=1, eeg_only=True, channel_map=targets, num_workers=0)
    dm.setup("fit")
    subject, condition, repetition = dm.datasets["train"].rows[0]
    eeg = dm.datasets["train"][0]
    names = list(stored["ch_names"])
    post = torch.as_tensor(stored["preprocessed_eeg_data"][condition, repetition][:, 50:], dtype=torch.float32)  # t >= 0
    oz = targets.index("Oz")
    torch.testing.assert_close(eeg[oz], resample_window(post[names.index("Oz")], 512))
    with pytest.raises(ValueError, match="list of 128 electrode names"):
        ThingsEEG2DataModule(str(data), channel_map=["Oz"])


def test_twin_test_concepts_are_readable_from_what_training_shows(tmp_path):
    """The zero-shot premise in the twin: a new concept's EEG is (nearly) a combination of the training concepts'
    EEG (shared shape and hue components); the EEG of another twin's concepts (other components) is not."""

    def mean_eeg(seed):
        cfg = ThingsSyntheticConfig(subjects=(1,), train_concepts=20, images_per_concept=1, test_concepts=5,
                                    signal_to_noise=20.0, seed=seed)
        data = write_synthetic_things_eeg2(tmp_path / str(seed), cfg)
        return {part: np.load(data / "preprocessed_data" / "sub-01" / f"preprocessed_eeg_{part}.npy", allow_pickle=True)
                .item()["preprocessed_eeg_data"].mean(axis=1).reshape(-1, 17 * 100) for part in ("training", "test")}

    def explained(train, targets):
        coefficients, *_ = np.linalg.lstsq(train.T, targets.T, rcond=None)
        residual = targets.T - train.T @ coefficients
        return 1 - (residual**2).sum(axis=0) / (targets.T**2).sum(axis=0)

    own, other = mean_eeg(3), mean_eeg(4)
    readable, unrelated = explained(own["training"], own["test"]), explained(own["training"], other["test"])
    assert readable.min() > 0.7 and unrelated.max() < 0.35 and readable.min() > unrelated.max() + 0.4
