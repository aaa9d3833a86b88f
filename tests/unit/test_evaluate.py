"""EvalModule on a pipeline and evaluation networks built small, with batches shaped like the paired contract."""

import json
from pathlib import Path

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from dreamdiffusion.models.backbones import build_tiny_clip
from dreamdiffusion.models.eval_models import ClassifierConfig, InceptionConfig, LPIPSConfig, build_tiny_eval_networks
from dreamdiffusion.pipeline import build_tiny_pipeline
from dreamdiffusion.stages.evaluate import EvalModule, metrics_table


class PairedTrials(Dataset):
    """Items shaped like ImageNetEEGDataModule's (contract): eeg, image in [-1, 1], clip_pixels, label, index..."""

    def __init__(self, n: int, classes: int = 3, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.eeg = torch.randn(n, 128, 512, generator=g)
        low = torch.rand(n, 3, 8, 8, generator=g) * 2 - 1
        self.image = torch.nn.functional.interpolate(low, size=(64, 64), mode="bilinear")
        self.clip_pixels = torch.randn(n, 3, 32, 32, generator=g)
        self.classes = classes

    def __len__(self):
        return len(self.eeg)

    def __getitem__(self, i):
        label = i % self.classes
        return {
            "eeg": self.eeg[i], "image": self.image[i], "clip_pixels": self.clip_pixels[i], "label": label,
            "subject": 4, "image_name": f"n0000000{label}_{100 + i}", "index": 10 + 3 * i,
        }


class PairedData(L.LightningDataModule):
    def __init__(self, n: int = 6, batch_size: int = 4):
        super().__init__()
        self.dataset, self.batch_size = PairedTrials(n), batch_size

    def test_dataloader(self):
        return DataLoader(self.dataset, batch_size=self.batch_size, shuffle=False)

    predict_dataloader = test_dataloader


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    nets = build_tiny_eval_networks(root / "evalnets", seed=0, n_classes=100)
    return {"pipeline": str(build_tiny_pipeline(root / "pipeline")), "clip": str(build_tiny_clip(root / "clip")), **nets}


def module(assets, n_classes=100, **kwargs):
    args = dict(
        num_samples=2, num_inference_steps=2, is_splits=2, clip_model=assets["clip"], local_files_only=True,
        classifier=ClassifierConfig("squeezenet1_1", None, assets["classifier"], num_classes=n_classes, image_size=64),
        inception=InceptionConfig("tiny", assets["inception"]), lpips=LPIPSConfig(assets["lpips"]),
    )
    return EvalModule(assets["pipeline"], **{**args, **kwargs})


def run(assets, folder, batch_size, **kwargs):
    trainer = L.Trainer(default_root_dir=folder, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False)
    trainer.test(module(assets, **kwargs), datamodule=PairedData(batch_size=batch_size))
    return json.loads((folder / "metrics.json").read_text())


@pytest.mark.slow
def test_eval_writes_every_metric_samples_and_grids_independent_of_batch_size(assets, tmp_path):
    a = run(assets, tmp_path / "a", batch_size=4)
    m = a["metrics"]
    for key in ("fid", "inception_score", "psnr", "ssim", "lpips", "top1_mean", "top1_best", "retrieval_top1"):
        assert isinstance(m[key], float), key
    assert 0 <= m["top1_mean"] <= m["top1_best"] <= 1
    assert a["trials"] == 6 and a["generated_images"] == 12 and a["fid_images"] == {"generated": 12, "ground_truth": 6}
    assert a["settings"]["n_way"] == 50 and a["settings"]["fid_features"] == 64 and a["settings"]["data_range"] == 1.0
    assert a["pipeline"] == str(Path(assets["pipeline"]).resolve())
    samples = tmp_path / "a" / "samples"
    assert (samples / "trial00010_n00000000_100_gt.png").is_file()
    assert (samples / "trial00025_n00000002_105_sample1.png").is_file()
    assert sorted(p.name for p in samples.glob("grid_*.png")) == ["grid_class000.png", "grid_class001.png", "grid_class002.png"]
    from PIL import Image

    assert Image.open(samples / "grid_class000.png").size == (64 * 3, 64 * 2)  # gt | 2 samples, 2 trials
    table = (tmp_path / "a" / "metrics.md").read_text()
    assert "| DreamDiffusion (paper) | 3.61 | 28.54 | 14.6 | 0.267 | 0.644 | 45.8% |" in table
    assert "| Brain2Image (paper) | 18.76 | 5.06 | 12.8 | 0.213 | 0.701 |" in table
    b = run(assets, tmp_path / "b", batch_size=5)
    for key in ("psnr", "ssim", "lpips", "top1_mean", "top1_best", "retrieval_top1"):
        assert b["metrics"][key] == pytest.approx(m[key], abs=1e-5), key
    assert b["metrics"]["fid"] == pytest.approx(m["fid"], rel=1e-3, abs=1e-3)


def test_n_way_is_capped_at_the_classifier_classes_and_said_so(assets, tmp_path):
    nets = build_tiny_eval_networks(tmp_path / "nets", seed=1, n_classes=20)
    trainer = L.Trainer(default_root_dir=tmp_path, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False)
    model = module({**assets, "classifier": nets["classifier"]}, n_classes=20, num_samples=1, is_splits=10)
    trainer.test(model, datamodule=PairedData(n=3))
    result = json.loads((tmp_path / "metrics.json").read_text())
    assert result["settings"]["n_way"] == 20 and result["settings"]["n_way_requested"] == 50
    assert any("20-way, not 50-way" in note for note in result["notes"])
    assert result["metrics"]["inception_score"] is None
    assert any("IS not computed: 3 generated images for 10 splits" in note for note in result["notes"])
    assert "20-way top-1" in (tmp_path / "metrics.md").read_text()


def test_predict_writes_pngs_named_by_trial(assets, tmp_path):
    trainer = L.Trainer(default_root_dir=tmp_path, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False)
    paths = trainer.predict(module(assets), datamodule=PairedData(n=3))
    flat = [p for batch in paths for p in batch]
    assert len(flat) == 6 and all(p.endswith(".png") for p in flat)
    assert (tmp_path / "predictions" / "trial00013_n00000001_101_sample0.png").is_file()


def test_sampler_by_diffusers_class_name_and_a_wrong_name(assets, tmp_path):
    sampled = module(assets, sampler="DPMSolverMultistepScheduler", num_inference_steps=3)
    trainer = L.Trainer(default_root_dir=tmp_path, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False)
    assert len([p for batch in trainer.predict(sampled, datamodule=PairedData(n=2)) for p in batch]) == 4
    with pytest.raises(ValueError, match="unknown sampler 'dpm'; choose ddim, plms or a diffusers scheduler class name"):
        module(assets, sampler="dpm")
