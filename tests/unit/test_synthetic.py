"""The synthetic twin of ImageNet-EEG: real file layout, determinism, and a class that can be learned."""

import hashlib

import numpy as np
import pytest
import torch
from PIL import Image

from dreamdiffusion.data.synthetic import SyntheticConfig, write_synthetic_imagenet_eeg
from dreamdiffusion.signal import resample_window


def _read(folder):
    eeg = torch.load(folder / "eeg_5_95_std.pth", weights_only=True)
    single = torch.load(folder / "block_splits_by_image_single.pth", weights_only=True)
    every = torch.load(folder / "block_splits_by_image_all.pth", weights_only=True)
    return eeg, single["splits"][0], every["splits"][0]


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    folder = write_synthetic_imagenet_eeg(tmp_path_factory.mktemp("syn") / "data", classes=4, images_per_class=3, subjects=3, seed=7)
    return folder, *_read(folder)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo's default size (10 classes x 5 images x 3 subjects)."""
    folder = write_synthetic_imagenet_eeg(tmp_path_factory.mktemp("demo") / "data")
    return folder, *_read(folder)


def test_files_have_the_real_formats(small):
    folder, eeg, single, every = small
    assert set(eeg) == {"dataset", "labels", "images"}
    assert len(eeg["labels"]) == 4 and len(eeg["images"]) == 12 and len(eeg["dataset"]) == 36
    for trial in eeg["dataset"]:
        assert set(trial) == {"eeg", "label", "image", "subject"}
        assert trial["eeg"].dtype == torch.float32 and trial["eeg"].shape[0] == 128
        assert eeg["images"][trial["image"]].startswith(eeg["labels"][trial["label"]] + "_")
        assert 1 <= trial["subject"] <= 3
    for name in eeg["images"]:
        assert (folder / "images" / name.split("_")[0] / f"{name}.JPEG").is_file()
    assert set(single) == set(every) == {"train", "val", "test"}


def test_every_subject_sees_every_image_once_in_one_shared_order(small):
    _, eeg, _, _ = small
    order = {s: [t["image"] for t in eeg["dataset"] if t["subject"] == s] for s in (1, 2, 3)}
    assert order[1] == order[2] == order[3]
    assert sorted(order[1]) == list(range(12))
    # stored interleaved, so `_all` indices and one subject's indices differ: the addressing matters
    assert [t["subject"] for t in eeg["dataset"][:6]] == [1, 2, 3, 1, 2, 3]


def test_splits_are_by_image_and_address_as_the_real_files_do(small):
    _, eeg, single, every = small
    trials = eeg["dataset"]
    per_subject = [t for t in trials if t["subject"] == 2]
    assert sorted(single["train"] + single["val"] + single["test"]) == list(range(12))  # one subject's trials
    assert sorted(every["train"] + every["val"] + every["test"]) == list(range(len(trials)))
    images_single = {k: {per_subject[i]["image"] for i in v} for k, v in single.items()}
    images_all = {k: {trials[i]["image"] for i in v} for k, v in every.items()}
    assert images_single == images_all
    train, val, test = images_all["train"], images_all["val"], images_all["test"]
    assert not (train & val or train & test or val & test)
    for name in ("train", "val", "test"):  # stratified: every class in every split
        assert {trials[i]["label"] for i in every[name]} == {0, 1, 2, 3}


def test_lengths_spread_so_the_length_rule_bites_and_trials_are_standardised(demo):
    _, eeg, _, _ = demo
    lengths = np.array([t["eeg"].shape[1] for t in eeg["dataset"]])
    assert lengths.min() >= 440 and lengths.max() <= 620
    assert (lengths < 450).any() and (lengths > 600).any()
    assert ((lengths >= 460) & (lengths <= 600)).mean() > 0.75
    x = eeg["dataset"][0]["eeg"]
    assert torch.allclose(x.mean(1), torch.zeros(128), atol=1e-4) and torch.allclose(x.std(1, unbiased=False), torch.ones(128), atol=1e-3)


def test_images_are_jpegs_of_varied_sizes_with_class_colours(small):
    folder, eeg, _, _ = small
    sizes, colours = set(), {}
    for i, name in enumerate(eeg["images"]):
        with Image.open(folder / "images" / name.split("_")[0] / f"{name}.JPEG") as image:
            assert image.format == "JPEG" and image.mode == "RGB"
            assert 64 <= image.width <= 96 and 64 <= image.height <= 96
            sizes.add(image.size)
            pixels = np.asarray(image).reshape(-1, 3).astype(float)
        # the most saturated pixels carry the class colour
        saturation = pixels.max(1) - pixels.min(1)
        colours.setdefault(i // 3, []).append(pixels[saturation >= np.quantile(saturation, 0.9)].mean(0))
    assert len(sizes) > 6
    within = np.mean([np.linalg.norm(c - np.mean(cs, 0)) for cs in colours.values() for c in cs])
    centres = np.array([np.mean(cs, 0) for cs in colours.values()])
    between = np.mean([np.linalg.norm(a - b) for i, a in enumerate(centres) for b in centres[i + 1 :]])
    assert between > 2 * within


def test_same_seed_same_dataset_other_seed_other_dataset(small, tmp_path):
    folder, eeg, single, _ = small
    again = write_synthetic_imagenet_eeg(tmp_path / "again", classes=4, images_per_class=3, subjects=3, seed=7)
    eeg2, single2, _ = _read(again)
    assert all(torch.equal(a["eeg"], b["eeg"]) for a, b in zip(eeg["dataset"], eeg2["dataset"], strict=True))
    assert single2 == single
    name = eeg["images"][5]
    rel = f"images/{name.split('_')[0]}/{name}.JPEG"
    def digest(p):
        return hashlib.sha256(p.read_bytes()).hexdigest()

    assert digest(folder / rel) == digest(again / rel)
    other, _, _ = _read(write_synthetic_imagenet_eeg(tmp_path / "other", classes=4, images_per_class=3, subjects=3, seed=8))
    assert not torch.equal(other["dataset"][0]["eeg"][:, :440], eeg["dataset"][0]["eeg"][:, :440])


def test_scales_with_the_arguments(tmp_path):
    eeg, single, every = _read(write_synthetic_imagenet_eeg(tmp_path / "d", classes=3, images_per_class=4, subjects=2, seed=1))
    assert len(eeg["labels"]) == 3 and len(eeg["images"]) == 12 and len(eeg["dataset"]) == 24
    assert len(single["train"] + single["val"] + single["test"]) == 12


def test_refuses_to_replace_a_folder_that_is_not_synthetic(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="refusing to replace"):
        write_synthetic_imagenet_eeg(tmp_path, classes=2, images_per_class=3, subjects=1)
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_too_few_images_per_class_for_three_splits_is_refused(tmp_path):
    with pytest.raises(ValueError, match="images_per_class=2 leaves no training image"):
        write_synthetic_imagenet_eeg(tmp_path / "d", classes=2, images_per_class=2, subjects=1)


def _windows(eeg, indices):
    """Kept trials (450..600 samples and long enough for the window) as [N, 128*512] and their labels."""
    x, y = [], []
    for i in indices:
        trial = eeg["dataset"][i]
        if 460 <= trial["eeg"].shape[1] <= 600:
            x.append(resample_window(trial["eeg"][:, 20:460], 512).reshape(-1))
            y.append(trial["label"])
    return torch.stack(x), torch.tensor(y)


def _linear_probe_accuracy(x_train, y_train, x_test, y_test, weight_decay):
    """Multinomial logistic regression (L-BFGS, L2 penalty) trained on one set, scored on another."""
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    torch.manual_seed(0)
    layer = torch.nn.Linear(x_train.shape[1], int(y_train.max()) + 1)
    torch.nn.init.zeros_(layer.weight)
    torch.nn.init.zeros_(layer.bias)
    optimiser = torch.optim.LBFGS(layer.parameters(), max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        optimiser.zero_grad()
        loss = torch.nn.functional.cross_entropy(layer(x_train), y_train) + weight_decay * layer.weight.square().sum()
        loss.backward()
        return loss

    optimiser.step(closure)
    with torch.no_grad():
        return (layer(x_test).argmax(1) == y_test).float().mean().item()


def test_a_linear_probe_learns_the_class_from_eeg_of_held_out_images(demo):
    _, eeg, _, every = demo
    x_train, y_train = _windows(eeg, every["train"])
    x_test, y_test = _windows(eeg, every["val"] + every["test"])
    chance = 1 / SyntheticConfig.classes
    accuracy = _linear_probe_accuracy(x_train, y_train, x_test, y_test, weight_decay=1e-3)
    assert accuracy > 2.5 * chance


def test_channel_means_alone_do_not_reveal_the_class(demo):
    _, eeg, _, every = demo
    x_train, y_train = _windows(eeg, every["train"])
    x_test, y_test = _windows(eeg, every["val"] + every["test"])
    def means(x):
        return x.reshape(len(x), 128, 512).mean(-1)

    accuracy = _linear_probe_accuracy(means(x_train), y_train, means(x_test), y_test, weight_decay=1e-3)
    assert accuracy < 2 * (1 / SyntheticConfig.classes)


def test_snr_option_reaches_the_generator_and_zero_removes_the_class_signal(cli, tmp_path):
    import json

    assert cli("data", "synth-imagenet-eeg", "--out", str(tmp_path / "d"), "--classes", "2", "--images-per-class", "3",
               "--subjects", "1", "--snr", "0") == 0
    assert json.loads((tmp_path / "d" / "synthetic.json").read_text())["signal_to_noise"] == 0.0
    loud = _read(write_synthetic_imagenet_eeg(tmp_path / "loud", classes=2, images_per_class=3, subjects=1, signal_to_noise=3.0))[0]
    quiet = _read(tmp_path / "d")[0]
    # same seed, same noise: only the evoked signal differs, and at snr 0 there is none
    assert not torch.equal(loud["dataset"][0]["eeg"], quiet["dataset"][0]["eeg"])


def test_negative_snr_is_refused(tmp_path):
    with pytest.raises(ValueError, match="signal_to_noise=-1.0: must be >= 0"):
        write_synthetic_imagenet_eeg(tmp_path / "d", classes=2, images_per_class=3, subjects=1, signal_to_noise=-1.0)
