"""EvalModule on a pipeline and evaluation networks built small, with batches shaped like the paired contract."""

import json
from pathlib import Path

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from dreamdiffusion.models.backbones import build_tiny_clip
from dreamdiffusion.models.eval_models import ClassifierConfig, InceptionConfig, LPIPSConfig
from dreamdiffusion.models.tiny_eval_networks import build_tiny_eval_networks
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
    assert all(a["ci"][key][0] <= m[key] <= a["ci"][key][1] for key in ("psnr", "ssim", "lpips", "top1_mean", "retrieval_top1"))
    assert a["ci"]["fid"][0] < a["ci"]["fid"][1] and a["ci"]["inception_score"] is not None
    assert a["settings"]["bootstrap"] == {"n_resamples": 1000, "set_resamples": 100, "level": 0.95, "seed": 0}
    assert set(a["controls"]) == {"shuffled_eeg", "null_condition"} and a["per_subject"]["4"]["trials"] == 6
    assert {k for k, v in a["meaningful"].items() if not v["meaningful"]} == {"fid", "inception_score", "lpips", "top1_mean", "top1_best"}
    table = (tmp_path / "a" / "metrics.md").read_text()
    assert "| **ours** |" not in table and "| ours |" in table  # random evaluation networks: never bold
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


# ---------------------------------------------------------------------------------------------- controls
def read_trials(folder):
    import csv

    with open(folder / "trials.csv") as f:
        return list(csv.DictReader(f))


def test_a_pipeline_whose_condition_ignores_eeg_gives_shuffled_equal_to_unshuffled(assets, tmp_path):
    from dreamdiffusion.pipeline import DreamDiffusionPipeline

    folder = tmp_path / "pipeline"
    pipe = DreamDiffusionPipeline.from_pretrained(assets["pipeline"])
    with torch.no_grad():  # τ(y) = bias: the same condition whatever the EEG
        pipe.condition_model.dim_mapper.weight.zero_()
    pipe.save_pretrained(folder)
    result = run({**assets, "pipeline": str(folder)}, tmp_path / "out", batch_size=4)
    rows = read_trials(tmp_path / "out")
    assert len(rows) == 6 and all(r["shuffled_partner_index"] != r["index"] for r in rows)
    for key in ("top1_mean", "psnr", "ssim", "lpips"):
        assert [r[f"shuffled_{key}"] for r in rows] == [r[key] for r in rows], key
    samples = tmp_path / "out" / "samples"
    for real in samples.glob("trial*_sample*.png"):
        if "_shuffled_" not in real.name and "_null_" not in real.name:
            shuffled = real.with_name(real.name.replace("_sample", "_shuffled_sample"))
            assert shuffled.read_bytes() == real.read_bytes()
    assert result["controls"]["shuffled_eeg"]["metrics"]["psnr"] == pytest.approx(result["metrics"]["psnr"])


N_CLASSES, N_IMAGES = 4, 24
PALETTE = torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]])


class ClassCodedTrials(Dataset):
    """Trial i shows picture i (class i % 4, a flat colour); its EEG carries the class on channels 0..3 and the
    picture on channels 4..27; ``clip_embeds`` is the picture's one-hot code. Two subjects alternate."""

    def __init__(self, clip_dim: int):
        self.clip_dim = clip_dim

    def __len__(self):
        return N_IMAGES

    def __getitem__(self, i):
        label = i % N_CLASSES
        eeg = torch.zeros(128, 512)
        eeg[label] = 1.0
        eeg[N_CLASSES + i] = 1.0
        code = torch.zeros(self.clip_dim)
        code[i] = 1.0
        image = (PALETTE[label][:, None, None].expand(3, 64, 64) * 2 - 1).clone()
        return {"eeg": eeg, "image": image, "clip_embeds": code, "label": label, "subject": 1 + i % 2,
                "image_name": f"n0000000{label}_{i}", "index": 100 + i}


class ClassCodedData(L.LightningDataModule):
    def __init__(self, clip_dim: int):
        super().__init__()
        self.dataset = ClassCodedTrials(clip_dim)

    def test_dataloader(self):
        return DataLoader(self.dataset, batch_size=5, shuffle=False)


class ReadsTheEEG(torch.nn.Module):
    """A condition model whose output is the EEG's class code (hidden states) and picture code (CLIP head)."""

    def __init__(self, clip_dim: int):
        super().__init__()
        self.config = type("Config", (), {"clip_dim": clip_dim})()

    def forward(self, eeg):
        from dreamdiffusion.models.condition import Condition

        code = eeg.mean(dim=-1)  # [B, 128]
        return Condition(tokens=code[:, None, N_CLASSES:N_CLASSES + self.config.clip_dim], hidden_states=code[:, None, :N_CLASSES])

    def clip_embedding(self, tokens):
        return tokens[:, 0]

    def null(self, batch_size):
        return torch.zeros(batch_size, 1, N_CLASSES)


class ColourClassifier(torch.nn.Module):
    """Class probabilities of flat-colour pictures: the nearest colour of the palette."""

    num_classes = N_CLASSES
    provenance = "published"

    def forward(self, images):
        colour = images.float().mean(dim=(2, 3))
        return (-torch.cdist(colour, PALETTE) * 20).softmax(dim=1)


class DrawsTheCondition(EvalModule):
    """EvalModule whose base model draws the class its condition names (a flat colour; null → class 0), so the
    controls can be checked against a model that truly reads the EEG."""

    def setup(self, stage):
        super().setup(stage)
        self.condition_model, self.classifier = ReadsTheEEG(self.condition_model.config.clip_dim), ColourClassifier()
        self.provenance["classifier"] = self.classifier.provenance

    def drawn_class(self, condition, index):
        return condition.hidden_states[:, 0].argmax(dim=1)

    def sample(self, condition, index, guided=True):
        colours = PALETTE[self.drawn_class(condition, index)]
        return colours[:, None, :, None, None].expand(-1, self.num_samples, 3, 64, 64).clone()


class LeaksTheTrial(DrawsTheCondition):
    """Draws each trial's own class whatever its condition: the figures do not come from the EEG."""

    def drawn_class(self, condition, index):
        return torch.tensor([self.split[int(i)]["label"] for i in index.tolist()])


def run_coded(assets, folder, cls):
    model = cls(
        assets["pipeline"], num_samples=2, num_inference_steps=1, is_splits=2, n_way=N_CLASSES, n_trials=20,
        classifier=ClassifierConfig("squeezenet1_1", None, assets["classifier"], num_classes=100, image_size=64),
        inception=InceptionConfig("tiny", assets["inception"]), lpips=LPIPSConfig(assets["lpips"]),
    )
    trainer = L.Trainer(default_root_dir=folder, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False)
    trainer.test(model, datamodule=ClassCodedData(32))
    return json.loads((folder / "metrics.json").read_text())


def test_a_model_that_reads_eeg_drops_to_chance_when_its_eeg_is_shuffled(assets, tmp_path):
    result = run_coded(assets, tmp_path, DrawsTheCondition)
    assert result["metrics"]["top1_mean"] == 1.0 and result["metrics"]["retrieval_top1"] == 1.0
    assert result["ci"]["top1_mean"] == [1.0, 1.0]
    shuffled, null = result["controls"]["shuffled_eeg"], result["controls"]["null_condition"]
    assert shuffled["chance"] == {"top1_mean": 0.25, "retrieval_top1": pytest.approx(1 / 24)}
    assert shuffled["at_chance"]["top1_mean"] and shuffled["metrics"]["top1_mean"] < 0.5
    # it retrieves the partner's picture, never its own: below chance, reported, not a failure
    assert shuffled["metrics"]["retrieval_top1"] == 0.0 and shuffled["versus_chance"]["retrieval_top1"] == "below"
    assert null["metrics"]["top1_mean"] == 0.25 and null["at_chance"] == {"top1_mean": True}  # always class 0
    assert result["failures"] == [] and len(result["below_chance"]) == 1
    assert set(result["per_subject"]) == {"1", "2"} and result["per_subject"]["1"]["trials"] == 12
    assert result["per_subject"]["2"]["metrics"]["retrieval_top1"] == 1.0
    assert result["meaningful"]["top1_mean"]["meaningful"] is True  # a published classifier
    table = (tmp_path / "metrics.md").read_text()
    assert "FAILURE" not in table and "below chance" in table
    ours = next(line for line in table.splitlines() if line.startswith("| ours |"))  # random Inception/AlexNet: not bold
    assert "100.0% [100.0%, 100.0%] |" in ours and ours.count("(random network — not meaningful)") == 3  # FID, IS, LPIPS
    published = {**result, "meaningful": {k: {**v, "meaningful": True} for k, v in result["meaningful"].items()}}
    ours = next(line for line in metrics_table(published).splitlines() if line.startswith("| **ours** |"))
    assert "not meaningful" not in ours
    assert (tmp_path / "samples" / "trial00100_n00000000_0_shuffled_sample1.png").is_file()
    assert (tmp_path / "samples" / "trial00100_n00000000_0_null_sample0.png").is_file()
    rows = read_trials(tmp_path)  # per-trial hits, for paired comparisons of runs
    assert [float(r["retrieval_hit"]) for r in rows] == [1.0] * N_IMAGES
    assert [float(r["shuffled_retrieval_hit"]) for r in rows] == [0.0] * N_IMAGES


def test_a_control_above_chance_is_reported_as_a_failure_of_the_run(assets, tmp_path):
    result = run_coded(assets, tmp_path, LeaksTheTrial)
    shuffled = result["controls"]["shuffled_eeg"]
    assert shuffled["metrics"]["top1_mean"] == 1.0 and shuffled["versus_chance"]["top1_mean"] == "above"
    assert len(result["failures"]) == 2  # shuffled and null n-way top-1
    assert any(f.startswith("shuffled_eeg control: top1_mean") for f in result["failures"])
    table = (tmp_path / "metrics.md").read_text()
    assert table.index("## ⚠ FAILURE") < table.index("| model |")
    assert "ABOVE chance — FAILURE" in table


def test_controls_can_be_switched_off(assets, tmp_path):
    model = DrawsTheCondition(
        assets["pipeline"], num_samples=1, num_inference_steps=1, is_splits=2, n_way=N_CLASSES, controls=False,
        bootstrap_set_resamples=0,
        classifier=ClassifierConfig("squeezenet1_1", None, assets["classifier"], num_classes=100, image_size=64),
        inception=InceptionConfig("tiny", assets["inception"]), lpips=LPIPSConfig(assets["lpips"]),
    )
    trainer = L.Trainer(default_root_dir=tmp_path, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False)
    trainer.test(model, datamodule=ClassCodedData(32))
    result = json.loads((tmp_path / "metrics.json").read_text())
    assert result["controls"] == {} and result["failures"] == []
    assert result["ci"]["fid"] is None and result["ci"]["top1_mean"] == [1.0, 1.0]
    assert not list((tmp_path / "samples").glob("*_shuffled_*"))


def test_sampler_by_diffusers_class_name_and_a_wrong_name(assets, tmp_path):
    sampled = module(assets, sampler="DPMSolverMultistepScheduler", num_inference_steps=3)
    trainer = L.Trainer(default_root_dir=tmp_path, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False)
    assert len([p for batch in trainer.predict(sampled, datamodule=PairedData(n=2)) for p in batch]) == 4
    with pytest.raises(ValueError, match="unknown sampler 'dpm'; choose ddim, plms or a diffusers scheduler class name"):
        module(assets, sampler="dpm")
