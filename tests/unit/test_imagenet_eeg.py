"""Round trip: synthesize -> check-imagenet-eeg -> ImageNetEEGDataModule items, with exact expectations."""

import json

import pytest
import torch
from transformers import CLIPImageProcessor

from dreamdiffusion.data.imagenet_eeg import ImageNetEEGDataModule
from dreamdiffusion.data.images import read_image, to_tensor
from dreamdiffusion.models.backbones import build_tiny_clip
from dreamdiffusion.signal import resample_window

SPLITS = ("train", "val", "test")


@pytest.fixture(scope="module")
def paired(tmp_path_factory):
    """Synthetic data written through the CLI, a tiny CLIP, and the stored files read back plainly."""
    from dreamdiffusion.cli import main

    root = tmp_path_factory.mktemp("paired")
    assert main(["data", "synth-imagenet-eeg", "--out", str(root / "data"), "--classes", "4",
                 "--images-per-class", "3", "--subjects", "3", "--seed", "7"]) == 0
    clip = build_tiny_clip(root / "clip")
    data = root / "data"
    stored = torch.load(data / "eeg_5_95_std.pth", weights_only=True)
    splits = {a: torch.load(data / f"block_splits_by_image_{a}.pth", weights_only=True)["splits"][0] for a in ("single", "all")}
    return data, clip, stored, splits


def module(paired, addressing="all", subject=0, **kwargs):
    data, clip, _, _ = paired
    options = dict(image_size=64, clip_model=str(clip), local_files_only=True, batch_size=5, num_workers=0, augment_p=0.5)
    options.update(kwargs)
    dm = ImageNetEEGDataModule(str(data / "eeg_5_95_std.pth"), str(data / f"block_splits_by_image_{addressing}.pth"),
                               str(data / "images"), subject=subject, **options)
    dm.prepare_data()
    dm.setup("fit")
    return dm


def expected_positions(stored, splits, addressing, subject):
    """What each split holds, written out plainly: positions in the `dataset` list."""
    trials = stored["dataset"]
    if addressing == "single":
        address = [i for i, t in enumerate(trials) if t["subject"] == subject]
    else:
        address = list(range(len(trials)))
    out = {}
    for name in SPLITS:
        positions = [address[i] for i in splits[addressing][name]]
        if addressing == "all" and subject:
            positions = [p for p in positions if trials[p]["subject"] == subject]
        out[name] = [p for p in positions if 460 <= trials[p]["eeg"].shape[1] <= 600]
    return out


def check_json(paired, capsys, addressing, subject):
    from dreamdiffusion.cli import main

    data = paired[0]
    status = main(["data", "check-imagenet-eeg", "--eeg", str(data / "eeg_5_95_std.pth"),
                   "--splits", str(data / f"block_splits_by_image_{addressing}.pth"),
                   "--images", str(data / "images"), "--subject", str(subject)])
    return status, json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("addressing, subject", [("all", 0), ("all", 2), ("single", 2), ("single", 3)])
def test_counts_per_split_agree_between_spec_check_and_data_module(paired, capsys, addressing, subject):
    _, _, stored, splits = paired
    expected = expected_positions(stored, splits, addressing, subject)
    status, report = check_json(paired, capsys, addressing, subject)
    assert status == 0 and report["ok"] and report["errors"] == []
    assert report["split_addressing"] == addressing
    assert report["splits"] == {k: len(v) for k, v in expected.items()}
    assert all(n > 0 for n in report["splits"].values())
    assert report["missing_images"] == [] and report["unreadable_images"] == []
    dm = module(paired, addressing, subject)
    assert {k: len(dm.datasets[k]) for k in SPLITS} == report["splits"]
    assert {k: dm.datasets[k].positions.tolist() for k in SPLITS} == expected
    for name in SPLITS:
        assert sum(report["per_subject"][name].values()) == sum(report["per_class"][name].values()) == report["splits"][name]
        if subject:
            assert set(report["per_subject"][name]) == {str(subject)}


def test_all_with_a_subject_filter_keeps_the_same_trials_as_single(paired):
    # both files split by image, so filtering `_all` (no re-indexing) must give `_single`'s trials
    for subject in (1, 2, 3):
        single, every = module(paired, "single", subject), module(paired, "all", subject)
        for name in SPLITS:
            assert sorted(single.datasets[name].positions.tolist()) == sorted(every.datasets[name].positions.tolist())


def test_subject_counts_add_up_to_all_subjects(paired):
    whole = module(paired, "all", 0)
    for name in SPLITS:
        assert sum(len(module(paired, "all", s).datasets[name]) for s in (1, 2, 3)) == len(whole.datasets[name])


def test_check_reports_trials_dropped_by_the_length_rule(paired, capsys):
    _, _, stored, splits = paired
    _, report = check_json(paired, capsys, "all", 0)
    for name in SPLITS:
        lengths = [stored["dataset"][i]["eeg"].shape[1] for i in splits["all"][name]]
        assert report["dropped_by_length"][name] == sum(not 450 <= n <= 600 for n in lengths)
        assert report["dropped_short_for_window"][name] == sum(450 <= n < 460 for n in lengths)
    assert sum(report["dropped_by_length"].values()) > 0


def test_items_are_the_stored_trials_windowed_with_their_pictures(paired):
    data, clip, stored, _ = paired
    dm = module(paired, "all", 0)
    processor = CLIPImageProcessor.from_pretrained(str(clip), local_files_only=True)
    for name in SPLITS:
        dataset = dm.datasets[name]
        for i in (0, len(dataset) - 1):
            item = dataset[i]
            trial = stored["dataset"][int(item["index"])]
            assert torch.equal(item["eeg"], resample_window(trial["eeg"][:, 20:460], 512))
            assert int(item["label"]) == trial["label"] and int(item["subject"]) == trial["subject"]
            assert item["image_name"] == stored["images"][trial["image"]]
            path = data / "images" / item["image_name"].split("_")[0] / f"{item['image_name']}.JPEG"
            picture = read_image(path)
            assert torch.equal(item["clip_pixels"], processor(images=picture, return_tensors="pt").pixel_values[0])
            if name != "train":
                assert torch.equal(item["image"], to_tensor(picture, 64))


def test_trial_info_is_the_item_without_its_pictures(paired, monkeypatch):
    import dreamdiffusion.data.imagenet_eeg as imagenet_eeg

    dataset = module(paired, "all", 0).datasets["test"]
    item = dataset[1]
    monkeypatch.setattr(imagenet_eeg, "read_image", lambda path: pytest.fail(f"trial_info read {path}"))
    info = dataset.trial_info(1)
    assert set(info) == {"eeg", "label", "subject", "image_name", "index"}
    assert all(torch.equal(torch.as_tensor(info[k]), torch.as_tensor(item[k])) for k in ("eeg", "label", "subject", "index"))
    assert info["image_name"] == item["image_name"]


def test_batches_have_the_contract_shapes_and_dtypes(paired):
    dm = module(paired, "all", 0)
    batch = next(iter(dm.train_dataloader()))
    assert batch["eeg"].shape == (5, 128, 512) and batch["eeg"].dtype == torch.float32
    assert batch["image"].shape == (5, 3, 64, 64) and batch["image"].dtype == torch.float32
    assert batch["image"].min() >= -1 and batch["image"].max() <= 1 and batch["image"].std() > 0.05
    assert batch["clip_pixels"].shape == (5, 3, 32, 32) and batch["clip_pixels"].dtype == torch.float32
    for key in ("label", "subject", "index"):
        assert batch[key].shape == (5,) and batch[key].dtype == torch.int64
    assert isinstance(batch["image_name"], list) and len(batch["image_name"]) == 5
    assert set(batch["label"].tolist()) <= {0, 1, 2, 3}
    assert "clip_embeds" not in batch and "latent_mean" not in batch


def test_val_test_predict_are_unshuffled_and_predict_serves_test(paired):
    dm = module(paired, "all", 0)
    for loader, name in ((dm.val_dataloader(), "val"), (dm.test_dataloader(), "test"), (dm.predict_dataloader(), "test")):
        order = torch.cat([b["index"] for b in loader]).tolist()
        assert order == dm.datasets[name].positions.tolist()


def test_augmentation_crops_training_images_only(paired):
    data = paired[0]
    dm = module(paired, "all", 0, augment_p=1.0)
    for name, augmented in (("train", True), ("val", False), ("test", False)):
        item = dm.datasets[name][0]
        picture = read_image(data / "images" / item["image_name"].split("_")[0] / f"{item['image_name']}.JPEG")
        plain = to_tensor(picture, 64)
        assert item["image"].shape == plain.shape
        assert (not torch.equal(item["image"], plain)) == augmented
    off = module(paired, "all", 0, augment_p=0.0)
    item = off.datasets["train"][0]
    picture = read_image(data / "images" / item["image_name"].split("_")[0] / f"{item['image_name']}.JPEG")
    assert torch.equal(item["image"], to_tensor(picture, 64))


def test_augmentation_applies_with_probability_augment_p(paired):
    data = paired[0]
    dm = module(paired, "all", 0, augment_p=0.5)
    dataset = dm.datasets["train"]
    item = dataset[0]
    plain = to_tensor(read_image(data / "images" / item["image_name"].split("_")[0] / f"{item['image_name']}.JPEG"), 64)
    torch.manual_seed(0)
    cropped = sum(not torch.equal(dataset[0]["image"], plain) for _ in range(40))
    assert 10 <= cropped <= 30


def test_windows_are_resampled_the_same_across_chunk_boundaries():
    from dreamdiffusion.data.imagenet_eeg_selection import cut_windows

    torch.manual_seed(0)
    trials = [{"eeg": torch.randn(128, n)} for n in (460, 500, 512, 600, 471)]
    windows = cut_windows(trials, 20, 460, 512, chunk=2)
    assert windows.shape == (5, 128, 512) and windows.dtype == torch.float32
    for window, trial in zip(windows, trials, strict=True):
        assert torch.equal(window, resample_window(trial["eeg"][:, 20:460], 512))


def test_training_order_comes_from_seed_and_epoch_and_the_loader_is_resumable(paired):
    def order(dm, epoch):
        loader = dm.train_dataloader()
        loader.sampler.set_epoch(epoch)
        return torch.cat([b["index"] for b in loader]).tolist()

    first, again, other = module(paired, seed=3), module(paired, seed=3), module(paired, seed=4)
    assert order(first, 0) == order(again, 0) != order(first, 1)
    assert order(first, 0) != order(other, 0)
    assert sorted(order(first, 0)) != order(first, 0)
    assert "served" in first.train_dataloader().state_dict()
