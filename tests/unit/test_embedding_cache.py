"""CLIP-embedding and VAE-latent caches: computed once, reused, rebuilt when the model or the data change."""

import json
import os
import shutil

import pytest
import torch

from dreamdiffusion.data import embedding_cache
from dreamdiffusion.data.imagenet_eeg import ImageNetEEGDataModule
from dreamdiffusion.data.images import read_image, to_tensor
from dreamdiffusion.data.synthetic import write_synthetic_imagenet_eeg
from dreamdiffusion.models.backbones import build_tiny_clip, build_tiny_sd, load_clip, load_sd


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    root = tmp_path_factory.mktemp("cache")
    data = write_synthetic_imagenet_eeg(root / "data", classes=3, images_per_class=3, subjects=1, seed=5)
    return data, build_tiny_clip(root / "clip", seed=0), build_tiny_sd(root / "sd", seed=0)


@pytest.fixture
def run(source, tmp_path):
    """A private copy of data and models, and a factory of data modules that cache into tmp_path/cache."""
    for name, folder in zip(("data", "clip", "sd"), source, strict=True):
        shutil.copytree(folder, tmp_path / name)

    def make(**kwargs):
        options = dict(
            image_size=64, clip_model=str(tmp_path / "clip"), sd_model=str(tmp_path / "sd"), local_files_only=True,
            cache_clip_embeds=True, cache_latents=True, augment_p=0.0, cache_dir=str(tmp_path / "cache"),
            num_workers=0, batch_size=4, cache_device="cpu",
        )
        data = kwargs.pop("data", tmp_path / "data")
        options.update(kwargs)
        return ImageNetEEGDataModule(str(data / "eeg_5_95_std.pth"), str(data / "block_splits_by_image_all.pth"),
                                     str(data / "images"), **options)

    return tmp_path, make


@pytest.fixture
def counted(monkeypatch):
    """Count how often each cache is computed."""
    calls = {"clip": 0, "vae": 0}
    clip, vae = embedding_cache.compute_clip_embeds, embedding_cache.compute_vae_latents

    def count_clip(*a, **k):
        calls["clip"] += 1
        return clip(*a, **k)

    def count_vae(*a, **k):
        calls["vae"] += 1
        return vae(*a, **k)

    monkeypatch.setattr(embedding_cache, "compute_clip_embeds", count_clip)
    monkeypatch.setattr(embedding_cache, "compute_vae_latents", count_vae)
    return calls


def prepared(make, **kwargs):
    dm = make(**kwargs)
    dm.prepare_data()
    dm.setup("fit")
    return dm


def test_cached_values_are_the_frozen_models_outputs_on_un_augmented_images(run):
    root, make = run
    dm = prepared(make)
    clip, processor = load_clip(str(root / "clip"), local_files_only=True)
    vae = load_sd(str(root / "sd"), local_files_only=True).vae
    item = dm.datasets["val"][0]
    picture = read_image(root / "data" / "images" / item["image_name"].split("_")[0] / f"{item['image_name']}.JPEG")
    with torch.no_grad():
        embeds = clip(pixel_values=processor(images=picture, return_tensors="pt").pixel_values).image_embeds[0]
        posterior = vae.encode(to_tensor(picture, 64)[None]).latent_dist
    assert item["clip_embeds"].shape == (32,) and item["clip_embeds"].dtype == torch.float32
    assert torch.allclose(item["clip_embeds"], embeds, atol=1e-5)
    assert item["latent_mean"].shape == item["latent_std"].shape == (4, 8, 8)
    assert torch.allclose(item["latent_mean"], posterior.mean[0], atol=1e-5)
    assert torch.allclose(item["latent_std"], posterior.std[0], atol=1e-5)
    batch = next(iter(dm.val_dataloader()))
    n = len(dm.datasets["val"])
    assert batch["clip_embeds"].shape == (n, 32) and batch["latent_mean"].shape == (n, 4, 8, 8)


def test_miss_then_hit(run, counted):
    root, make = run
    prepared(make)
    assert counted == {"clip": 1, "vae": 1}
    folders = sorted(p.name for p in (root / "cache").iterdir())
    assert [f.split("-")[0] for f in folders] == ["clip_embeds", "vae_latents"]
    manifest = json.loads((root / "cache" / folders[0] / "manifest.json").read_text())
    assert manifest["tensors"]["clip_embeds"] == [9, 32] and len(manifest["names"]) == 9
    prepared(make)
    assert counted == {"clip": 1, "vae": 1}


def test_another_clip_model_is_a_miss_and_keeps_its_own_cache(run, counted):
    root, make = run
    prepared(make)
    build_tiny_clip(root / "clip2", seed=1)  # same architecture and file sizes, other weights
    other = prepared(make, clip_model=str(root / "clip2"))
    assert counted == {"clip": 2, "vae": 1}
    assert len(list((root / "cache").glob("clip_embeds-*"))) == 2
    first = prepared(make)
    assert counted == {"clip": 2, "vae": 1}
    assert not torch.equal(first.datasets["val"][0]["clip_embeds"], other.datasets["val"][0]["clip_embeds"])


def test_changed_vae_weights_in_place_are_a_miss(run, counted):
    root, make = run
    prepared(make)
    build_tiny_sd(root / "sd", seed=1)  # rewritten where the old one was
    prepared(make)
    assert counted == {"clip": 1, "vae": 2}


def test_another_image_size_is_a_miss_for_latents_only(run, counted):
    _, make = run
    prepared(make)
    dm = prepared(make, image_size=32)
    assert counted == {"clip": 1, "vae": 2}
    assert dm.datasets["train"][0]["latent_mean"].shape == (4, 4, 4)


def test_a_changed_image_invalidates_both_caches(run, counted):
    root, make = run
    dm = prepared(make)
    name = dm.datasets["train"].image_names[0]
    path = root / "data" / "images" / name.split("_")[0] / f"{name}.JPEG"
    read_image(path).transpose(0).save(path, format="JPEG")  # mirrored picture
    again = prepared(make)
    assert counted == {"clip": 2, "vae": 2}
    assert not torch.equal(dm.datasets["train"][0]["latent_mean"], again.datasets["train"][0]["latent_mean"])


def test_a_changed_eeg_file_invalidates_the_caches(run, counted):
    root, make = run
    prepared(make)
    eeg = root / "data" / "eeg_5_95_std.pth"
    stat = eeg.stat()
    os.utime(eeg, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    prepared(make)
    assert counted == {"clip": 2, "vae": 2}


def test_a_moved_data_folder_keeps_its_caches(run, counted):
    root, make = run
    prepared(make)
    os.rename(root / "data", root / "moved")  # mv keeps sizes and mtimes: the content is the same
    prepared(make, data=root / "moved")
    assert counted == {"clip": 1, "vae": 1}


def test_setup_without_prepare_data_names_the_missing_cache(run):
    root, make = run
    dm = make(cache_latents=False)
    missing = r"the clip_embeds cache .*clip_embeds-[0-9a-f]{16} is missing.*call prepare_data\(\) first"
    with pytest.raises(FileNotFoundError, match=missing):
        dm.setup("fit")


def test_a_half_written_cache_is_not_read(run, counted):
    root, make = run
    prepared(make)
    folder = next((root / "cache").glob("clip_embeds-*"))
    (folder / "manifest.json").unlink()  # as if interrupted before the manifest landed
    prepared(make)
    assert counted == {"clip": 2, "vae": 1}
    assert (folder / "manifest.json").is_file()
    assert not list((root / "cache").glob(".*tmp*"))


def test_without_caches_prepare_data_writes_nothing(run, counted):
    root, make = run
    dm = prepared(make, cache_clip_embeds=False, cache_latents=False)
    assert counted == {"clip": 0, "vae": 0} and not (root / "cache").exists()
    assert "clip_embeds" not in dm.datasets["train"][0]


def test_the_trainer_prepares_caches_then_feeds_them(run):
    import lightning as L

    root, make = run
    seen = []

    class Probe(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(32, 1)

        def training_step(self, batch, batch_idx):
            seen.append(sorted(k for k in batch if torch.is_tensor(batch[k])))
            return self.layer(batch["clip_embeds"]).mean() + 0 * batch["latent_mean"].sum()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=str(root))
    trainer.fit(Probe(), datamodule=make(batch_size=2))
    assert seen and seen[0] == ["clip_embeds", "clip_pixels", "eeg", "image", "index", "label", "latent_mean", "latent_std", "subject"]
    assert len(list((root / "cache").iterdir())) == 2


def test_each_image_set_keeps_its_own_cache(run, counted):
    root, make = run
    eeg = torch.load(root / "data" / "eeg_5_95_std.pth", weights_only=True)
    prepared(make, cache_latents=False)
    prepared(make, cache_latents=False, exclude_images=[eeg["images"][0]])  # one picture fewer
    prepared(make, cache_latents=False)
    assert counted == {"clip": 2, "vae": 0}
    assert len(list((root / "cache").glob("clip_embeds-*"))) == 2
