"""benchmarks/samplers.py: sampler specs, paired intervals, the table, and a run on a smoke-sized demo base model."""

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from dreamdiffusion.bootstrap import BootstrapSettings


@pytest.fixture(scope="module")
def bench():
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "samplers.py"
    spec = importlib.util.spec_from_file_location("bench_samplers", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def test_sampler_specs_name_the_scheduler_its_steps_and_dpm_solver_plus_plus(bench):
    dpm = bench.parse_spec("dpm++:20")
    assert (dpm.title, dpm.name, dpm.steps) == ("DPM-Solver++-20", "DPMSolverMultistepScheduler", 20)
    from dreamdiffusion.generation import SD15_SCHEDULE

    scheduler = dpm.build(SD15_SCHEDULE)
    assert type(scheduler).__name__ == "DPMSolverMultistepScheduler" and scheduler.config.algorithm_type == "dpmsolver++"
    assert scheduler.config.beta_end == SD15_SCHEDULE["beta_end"]  # from_config of the model's schedule
    plms = bench.parse_spec("plms:250").build(SD15_SCHEDULE)
    assert type(plms).__name__ == "PNDMScheduler" and plms.config.skip_prk_steps
    assert bench.parse_spec("HeunDiscreteScheduler:10").title == "HeunDiscrete-10"


@pytest.mark.parametrize(
    "text, message",
    [("ddim", "must be NAME:STEPS"), ("ddim:x", "is not an integer"), ("ddim:0", "steps must be >= 1"),
     ("nosuch:20", "unknown sampler 'nosuch'")],
)
def test_bad_sampler_specs_are_refused_with_the_fix(bench, text, message):
    with pytest.raises(ValueError, match=message):
        bench.parse_spec(text)


def test_the_paired_difference_is_the_bootstrap_of_per_image_differences(bench):
    settings = BootstrapSettings(n_resamples=500, seed=0)
    reference = torch.tensor([1, 1, 0, 0] * 25)
    same = reference.clone()
    diff, interval = bench.paired_difference(same, reference, settings)
    assert diff == 0 and interval == (0.0, 0.0)  # identical images: no uncertainty in the difference
    better = reference.clone()
    better[2::4] = 1  # 25 more hits out of 100
    diff, (low, high) = bench.paired_difference(better, reference, settings)
    assert diff == pytest.approx(0.25) and 0.1 < low < 0.25 < high < 0.4
    with pytest.raises(ValueError, match="same images"):
        bench.paired_difference(better[:10], reference, settings)


def test_the_table_has_a_row_per_sampler_and_the_verdict_names_the_interval(bench):
    settings = BootstrapSettings(n_resamples=200, seed=0)
    ref = bench.SamplerResult(bench.parse_spec("ddim:50"), torch.tensor([1, 0] * 50), seconds=10.0, calls_per_image=50)
    fast = bench.SamplerResult(bench.parse_spec("dpm++:20"), torch.tensor([1, 0] * 50), seconds=4.0, calls_per_image=20)
    table = bench.markdown_table([fast, ref], ref, settings)
    rows = table.splitlines()
    assert len(rows) == 4 and rows[0].startswith("| sampler |")
    assert rows[2].startswith("| DPM-Solver++-20 | 20 | 20 | 25.0 | 2.50× | 50.0% [") and "+0.0 [+0.0, +0.0]" in rows[2]
    assert rows[3].startswith("| DDIM-50 | 50 | 50 | 10.0 | 1.00× | 50.0% [") and rows[3].endswith("| reference |")
    assert bench.verdict(fast, ref, settings).startswith("DPM-Solver++-20 top-1 50.0% is within DDIM-50's 95% CI [")
    worse = bench.SamplerResult(fast.spec, torch.zeros(100, dtype=torch.int64), seconds=4.0, calls_per_image=20)
    assert " is outside " in bench.verdict(worse, ref, settings)


def test_a_folder_without_the_demo_models_is_refused_with_the_command_that_writes_them(bench, tmp_path):
    with pytest.raises(FileNotFoundError, match="dreamdiffusion weights demo --out"):
        bench.load_demo_weights(tmp_path)


@pytest.mark.slow
def test_a_run_on_a_smoke_base_model_counts_unet_calls_and_pairs_the_images(bench, tmp_path):
    from dreamdiffusion.models.picture_classifier import (
        PictureClassifierConfig,
        train_picture_classifier,
        write_picture_classifier,
    )
    from dreamdiffusion.stages.base_model import BaseModelConfig, fit_base_model, save_base_model

    base = BaseModelConfig(classes=3, pictures_per_class=4, vae_steps=2, vae_batch_size=4, unet_steps=2, unet_batch_size=4)
    save_base_model(fit_base_model(base), tmp_path / "sd", ["n90000000", "n90000001", "n90000002"])
    config = PictureClassifierConfig(classes=3, architecture="resnet18", image_size=32, steps=2, batch_size=4, pictures_per_class=4)
    write_picture_classifier(tmp_path / "eval", train_picture_classifier(config)[0], config)

    out = tmp_path / "report.md"
    report = bench.main(["--weights", str(tmp_path), "--samplers", "dpm++:3", "plms:2", "--reference", "ddim:4",
                         "--samples-per-class", "2", "--batch", "4", "--resamples", "50", "--out", str(out)])
    assert out.read_text() == report
    rows = [line for line in report.splitlines() if line.startswith("| ")]  # header, then one per sampler
    assert [row.split(" | ")[0] for row in rows[1:]] == ["| DPM-Solver++-3", "| PLMS-2", "| DDIM-4"]
    assert [row.split(" | ")[2] for row in rows[1:]] == ["3", "3", "4"]  # PLMS k steps = k + 1 UNet calls
    assert "6 images" not in report and "2 images × 3 classes" in report
    assert "DPM-Solver++-3 top-1" in report.splitlines()[-1]
