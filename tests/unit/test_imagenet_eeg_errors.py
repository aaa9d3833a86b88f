"""Every bad input of the paired data is refused with an error that names it; nothing is substituted."""

import json
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch

from dreamdiffusion.data.imagenet_eeg import ImageNetEEGDataModule
from dreamdiffusion.data.images import ImageReadError
from dreamdiffusion.data.plain_load import NotPlainDataError, load_plain
from dreamdiffusion.data.synthetic import write_synthetic_imagenet_eeg
from dreamdiffusion.models.backbones import build_tiny_clip


def _write_marker(path: str) -> None:
    Path(path).write_text("the pickle ran code")


class RunsCodeWhenUnpickled:
    """A pickle payload: unpickling it calls ``_write_marker`` (harmless, but proves execution)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (_write_marker, (self.marker,))


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    data = write_synthetic_imagenet_eeg(root / "data", classes=3, images_per_class=3, subjects=2, seed=3)
    return data, build_tiny_clip(root / "clip")


@pytest.fixture
def data(source, tmp_path):
    """A private copy of the synthetic files that a test may break."""
    copy = tmp_path / "data"
    shutil.copytree(source[0], copy)
    return copy


def build(data, clip, addressing="all", subject=0, splits=None, **kwargs):
    options = dict(image_size=32, clip_model=str(clip), local_files_only=True, num_workers=0)
    options.update(kwargs)
    return ImageNetEEGDataModule(str(data / "eeg_5_95_std.pth"), str(splits or data / f"block_splits_by_image_{addressing}.pth"),
                                 str(data / "images"), subject=subject, **options)


def setup(data, clip, **kwargs):
    dm = build(data, clip, **kwargs)
    dm.prepare_data()
    dm.setup("fit")
    return dm


def edit(path: Path, change) -> None:
    content = torch.load(path, weights_only=True)
    change(content)
    torch.save(content, path)


def check(data, *extra, splits="block_splits_by_image_all.pth"):
    from dreamdiffusion.commands import build_parser
    from dreamdiffusion.commands.imagenet_eeg import check as run

    args = build_parser().parse_args(["data", "check-imagenet-eeg", "--eeg", str(data / "eeg_5_95_std.pth"),
                                      "--splits", str(data / splits), "--images", str(data / "images"), *extra])
    return run(args)


# -- files that are not plain data ------------------------------------------------------------------


def test_a_pickle_that_would_run_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "marker"
    torch.save({"dataset": [RunsCodeWhenUnpickled(marker)], "labels": [], "images": []}, tmp_path / "evil.pth")
    with pytest.raises(NotPlainDataError, match=r"evil.pth is not a plain data file \(tensors, lists, dicts, strings, numbers only\)"):
        load_plain(tmp_path / "evil.pth")
    assert not marker.exists()
    # the payload is live: an unrestricted unpickler does run it (so the assertion above can fail)
    live = tmp_path / "live.pkl"
    live.write_bytes(pickle.dumps(RunsCodeWhenUnpickled(marker)))
    pickle.loads(live.read_bytes())
    assert marker.exists()


def test_the_data_module_refuses_an_eeg_file_that_would_run_code(data, source, tmp_path):
    marker = tmp_path / "marker"
    torch.save({"dataset": [{"eeg": RunsCodeWhenUnpickled(marker)}], "labels": [], "images": []}, data / "eeg_5_95_std.pth")
    with pytest.raises(NotPlainDataError, match="eeg_5_95_std.pth is not a plain data file"):
        setup(data, source[1])
    assert not marker.exists()


def test_a_split_file_that_would_run_code_is_refused(data, source, tmp_path):
    marker = tmp_path / "marker"
    torch.save({"splits": [RunsCodeWhenUnpickled(marker)]}, data / "block_splits_by_image_all.pth")
    with pytest.raises(NotPlainDataError, match="block_splits_by_image_all.pth is not a plain data file"):
        setup(data, source[1])
    assert not marker.exists()


def test_a_file_that_is_not_a_torch_file_is_named(data, source):
    (data / "eeg_5_95_std.pth").write_bytes(b"not a torch file at all")
    with pytest.raises(ValueError, match="eeg_5_95_std.pth is not a readable torch .pth file"):
        setup(data, source[1])


def test_a_missing_eeg_file_is_named(data, source):
    (data / "eeg_5_95_std.pth").unlink()
    with pytest.raises(FileNotFoundError, match="ImageNet-EEG file .*eeg_5_95_std.pth does not exist"):
        setup(data, source[1])


# -- missing keys, wrong shapes ---------------------------------------------------------------------


def test_missing_top_level_key_is_named(data, source):
    edit(data / "eeg_5_95_std.pth", lambda c: c.pop("images"))
    with pytest.raises(KeyError, match="lacks key\\(s\\) 'images'"):
        setup(data, source[1])


def test_missing_trial_key_is_named_with_the_trial(data, source):
    edit(data / "eeg_5_95_std.pth", lambda c: c["dataset"][4].pop("subject"))
    with pytest.raises(KeyError, match=r"dataset\[4\] lacks key\(s\) 'subject'"):
        setup(data, source[1])


def test_missing_splits_key_is_named(data, source):
    torch.save({"folds": []}, data / "block_splits_by_image_all.pth")
    with pytest.raises(KeyError, match="block_splits_by_image_all.pth lacks key 'splits'"):
        setup(data, source[1])


def test_split_without_val_is_named(data, source):
    edit(data / "block_splits_by_image_all.pth", lambda c: c["splits"][0].pop("val"))
    with pytest.raises(KeyError, match=r"splits\[0\] lacks key\(s\) 'val'"):
        setup(data, source[1])


def test_eeg_of_the_wrong_rank_is_refused(data, source):
    def flatten(c):
        c["dataset"][2]["eeg"] = c["dataset"][2]["eeg"].reshape(-1)

    edit(data / "eeg_5_95_std.pth", flatten)
    with pytest.raises(ValueError, match=r"dataset\[2\]\['eeg'\] has shape \[\d+\]; expected \[128 channels, samples\]"):
        setup(data, source[1])


def test_eeg_with_another_channel_count_is_refused(data, source):
    edit(data / "eeg_5_95_std.pth", lambda c: c["dataset"][0].update(eeg=c["dataset"][0]["eeg"][:64]))
    with pytest.raises(ValueError, match=r"dataset\[0\]\['eeg'\] has shape \[64, \d+\]"):
        setup(data, source[1])


def test_label_outside_the_labels_list_is_refused(data, source):
    edit(data / "eeg_5_95_std.pth", lambda c: c["dataset"][1].update(label=99))
    with pytest.raises(ValueError, match=r"dataset\[1\]\['label'\] = 99 is outside 0..2"):
        setup(data, source[1])


# -- addressing, indices, subjects ------------------------------------------------------------------


def test_all_index_out_of_range_is_refused(data, source):
    edit(data / "block_splits_by_image_all.pth", lambda c: c["splits"][0]["test"].append(18))
    with pytest.raises(IndexError, match=r"test index 18 is out of range for 'all' addressing \(1 such indices; valid 0..17"):
        setup(data, source[1])


def test_single_index_out_of_range_is_refused(data, source):
    # 9 trials per subject: index 9 exists in the whole list but not among one subject's trials
    edit(data / "block_splits_by_image_single.pth", lambda c: c["splits"][0]["val"].append(9))
    with pytest.raises(IndexError, match=r"val index 9 is out of range for 'single' addressing .*valid 0..8, subject 1's 9 trials"):
        setup(data, source[1], addressing="single", subject=1)


def test_single_addressing_needs_a_subject(data, source):
    with pytest.raises(ValueError, match=r"'single' addressing \(indices into ONE subject's trials\), so subject=0 \(all\) cannot be read"):
        build(data, source[1], addressing="single", subject=0)


def test_a_subject_with_no_trials_is_refused(data, source):
    with pytest.raises(ValueError, match=r"subject 5 has no trials in .*eeg_5_95_std.pth \(subjects present: \[1, 2\]\)"):
        setup(data, source[1], addressing="all", subject=5)


def test_split_index_out_of_range_is_refused(data, source):
    with pytest.raises(IndexError, match=r"split_index 1 is out of range: .*block_splits_by_image_all.pth holds 1 split\(s\)"):
        setup(data, source[1], split_index=1)


def test_auto_addressing_needs_a_telling_file_name(data, source):
    renamed = data / "my_splits.pth"
    shutil.copy(data / "block_splits_by_image_all.pth", renamed)
    with pytest.raises(ValueError, match="cannot tell from the name 'my_splits.pth'.*set split_addressing to 'single'.*or 'all'"):
        build(data, source[1], splits=renamed)
    dm = build(data, source[1], splits=renamed, split_addressing="all")
    dm.setup("fit")
    assert len(dm.datasets["train"]) > 0


def test_a_split_empty_after_filtering_is_refused(data, source):
    # every val trial of subject 2 becomes too long for the 450..600 rule
    def lengthen(c):
        for trial in c["dataset"]:
            if trial["subject"] == 2:
                trial["eeg"] = torch.zeros(128, 700)

    edit(data / "eeg_5_95_std.pth", lengthen)
    empty = r"the train split of .*block_splits_by_image_all.pth \(split_index 0, subject 2\) holds no trials after filtering"
    with pytest.raises(ValueError, match=empty):
        setup(data, source[1], subject=2)
    report = check(data, "--subject", "2")
    assert not report["ok"] and report["splits"] == {"train": 0, "val": 0, "test": 0}


# -- images ------------------------------------------------------------------------------------------


def test_a_missing_image_is_named(data, source):
    eeg = torch.load(data / "eeg_5_95_std.pth", weights_only=True)
    name = eeg["images"][4]
    path = data / "images" / name.split("_")[0] / f"{name}.JPEG"
    path.unlink()
    with pytest.raises(FileNotFoundError, match=f"1 image\\(s\\) of the split are missing: {path}"):
        setup(data, source[1])
    report = check(data)
    assert not report["ok"] and report["missing_images"] == [name]


def test_a_corrupt_image_is_named(data, source):
    eeg = torch.load(data / "eeg_5_95_std.pth", weights_only=True)
    dm = setup(data, source[1])
    item_name = dm.datasets["val"].image_names[0]
    path = data / "images" / item_name.split("_")[0] / f"{item_name}.JPEG"
    path.write_bytes(path.read_bytes()[:200])  # a truncated JPEG
    with pytest.raises(ImageReadError, match=f"image {path} is unreadable"):
        dm.datasets["val"][0]
    report = check(data)
    assert not report["ok"] and report["unreadable_images"] == [item_name] and item_name in eeg["images"]


def test_any_case_of_the_jpeg_extension_is_found(data, source):
    eeg = torch.load(data / "eeg_5_95_std.pth", weights_only=True)
    for i, name in enumerate(eeg["images"]):
        folder = data / "images" / name.split("_")[0]
        os.replace(folder / f"{name}.JPEG", folder / f"{name}.{['jpeg', 'Jpeg', 'JPEG'][i % 3]}")
    dm = setup(data, source[1])
    assert dm.datasets["train"][0]["image"].shape == (3, 32, 32)
    assert check(data)["ok"]


def test_a_missing_image_folder_is_named(data, source):
    shutil.rmtree(data / "images")
    with pytest.raises(FileNotFoundError, match=f"image folder {data / 'images'} does not exist"):
        setup(data, source[1])


def test_check_exits_non_zero_and_prints_json_when_a_run_would_fail(data, capsys):
    from dreamdiffusion.cli import main

    (data / "eeg_5_95_std.pth").unlink()
    status = main(["data", "check-imagenet-eeg", "--eeg", str(data / "eeg_5_95_std.pth"),
                   "--splits", str(data / "block_splits_by_image_all.pth"), "--images", str(data / "images")])
    report = json.loads(capsys.readouterr().out)
    assert status == 1 and not report["ok"] and "does not exist" in report["errors"][0]


# -- options that cannot work together -------------------------------------------------------------


def test_cached_latents_with_augmentation_are_refused(data, source):
    with pytest.raises(ValueError, match="cache_latents=True caches latents of the un-augmented picture, but augment_p=0.5"):
        build(data, source[1], cache_latents=True, augment_p=0.5)


def test_unknown_addressing_is_refused(data, source):
    with pytest.raises(ValueError, match="split_addressing='both'; use one of auto, single, all"):
        build(data, source[1], split_addressing="both")


def test_excluded_images_leave_out_their_trials_and_are_counted(data, source):
    eeg = torch.load(data / "eeg_5_95_std.pth", weights_only=True)
    name = eeg["images"][0]
    full = setup(data, source[1])
    dm = setup(data, source[1], exclude_images=[name])
    for split in ("train", "val", "test"):
        assert name not in dm.datasets[split].image_names
    removed = sum(d.image_names.count(name) for d in full.datasets.values())
    assert removed > 0
    assert sum(len(d) for d in full.datasets.values()) - sum(len(d) for d in dm.datasets.values()) == removed
    report = check(data, "--exclude-image", name)
    assert report["ok"] and sum(report["excluded_by_image"].values()) == 2  # one trial per subject


def test_an_unknown_excluded_image_is_refused(data, source):
    with pytest.raises(ValueError, match=r"exclude_images names \['n99999999_1'\], which are not in the 'images' list"):
        setup(data, source[1], exclude_images=["n99999999_1"])


# -- non-finite EEG ----------------------------------------------------------------------------------


def poison(data, change) -> tuple[int, int]:
    """Apply ``change`` to the EEG of the first train trial kept by the length rule; returns its (position, subject)."""
    train = torch.load(data / "block_splits_by_image_all.pth", weights_only=True)["splits"][0]["train"]
    content = torch.load(data / "eeg_5_95_std.pth", weights_only=True)
    position = next(p for p in train if 450 <= content["dataset"][p]["eeg"].shape[1] <= 600)
    change(content["dataset"][position]["eeg"])
    torch.save(content, data / "eeg_5_95_std.pth")
    return position, int(content["dataset"][position]["subject"])


def test_an_all_nan_trial_is_found_by_the_check_by_index_and_subject(data):
    position, subject = poison(data, lambda eeg: eeg.fill_(float("nan")))
    report = check(data)
    assert report["ok"] and report["nonfinite_trials"] == [{"index": position, "subject": subject, "split": "train"}]
    assert report["dropped_nonfinite"] == {"train": 1, "val": 0, "test": 0}
    assert f"trial {position} (subject {subject}, train)" in report["warnings"][0] and "eeg_5_95_std.pth" in report["warnings"][0]
    strict = check(data, "--nonfinite-trials", "error")
    assert not strict["ok"] and f"trial {position} (subject {subject}, train)" in strict["errors"][0]


def test_the_data_module_drops_and_counts_nan_trials_so_training_never_meets_them(data, source, caplog):
    from dreamdiffusion.models.mae import check_eeg

    full = len(setup(data, source[1]).datasets["train"])
    position, subject = poison(data, lambda eeg: eeg.fill_(float("nan")))
    dm = setup(data, source[1], batch_size=4)
    assert len(dm.datasets["train"]) == full - 1 and dm.selection.nonfinite["train"] == [position]
    assert f"trial {position} (subject {subject}, train)" in caplog.text and "eeg_5_95_std.pth" in caplog.text
    for batch in dm.train_dataloader():  # what the encoder would get, every batch of an epoch
        check_eeg(batch["eeg"], 128, 512)


def test_nan_trials_are_refused_by_setting_with_the_file_the_trial_and_the_fix(data, source):
    position, subject = poison(data, lambda eeg: eeg.__setitem__((3, 100), float("inf")))
    with pytest.raises(ValueError) as info:
        setup(data, source[1], nonfinite_trials="error")
    message = str(info.value)
    assert str(data / "eeg_5_95_std.pth") in message and f"trial {position} (subject {subject}, train)" in message
    assert "nonfinite_trials: drop" in message and "samples 20..460" in message
    with pytest.raises(ValueError, match="nonfinite_trials='skip'; use one of drop, error"):
        build(data, source[1], nonfinite_trials="skip")


def test_only_the_windows_own_samples_decide_whether_a_trial_is_finite(data, source):
    def outside_the_window(eeg):
        eeg[:, :20] = float("nan")
        eeg[:, 460:] = float("nan")

    poison(data, outside_the_window)
    report = check(data)
    assert report["ok"] and report["nonfinite_trials"] == []
    dm = setup(data, source[1])
    assert dm.selection.nonfinite["train"] == [] and torch.isfinite(dm.datasets["train"].windows).all()
