"""Stage 0 of the embedded default: a tiny base model in SD's classes and layout, conditioned on class captions."""

import json

import pytest
import torch

from dreamdiffusion.models.backbones import load_sd
from dreamdiffusion.models.captions import load_captions, sample_from_captions
from dreamdiffusion.models.provenance import read_provenance
from dreamdiffusion.stages.base_model import BaseModelConfig, fit_base_model, save_base_model

# A budget that only exercises the code path (the figures it reaches are checked in test_demo_weights.py).
SMOKE = BaseModelConfig(classes=3, pictures_per_class=4, vae_steps=2, vae_batch_size=4, unet_steps=2, unet_batch_size=4)


@pytest.fixture(scope="module")
def smoke_model(tmp_path_factory):
    module = fit_base_model(SMOKE)
    return module, save_base_model(module, tmp_path_factory.mktemp("stage0") / "sd", ["n90000000", "n90000001", "n90000002"])


def test_the_base_model_folder_loads_through_load_sd_with_sds_schedule(smoke_model):
    module, folder = smoke_model
    sd = load_sd(str(folder), local_files_only=True)
    assert sd.vae_scale_factor == 4 and sd.image_size == 32
    assert sd.unet.config.cross_attention_dim == 32
    schedule = sd.scheduler.config
    assert (schedule.num_train_timesteps, schedule.beta_start, schedule.beta_end, schedule.beta_schedule) == (
        1000, 0.00085, 0.012, "scaled_linear")
    # the latent scale was measured (SD's 0.18215 was chosen the same way), not left at the class default 0.18215
    assert sd.vae.config.scaling_factor == pytest.approx(module.vae.config.scaling_factor)
    assert sd.vae.config.scaling_factor != pytest.approx(0.18215)
    for name, param in module.unet.state_dict().items():
        assert torch.equal(sd.unet.state_dict()[name], param)


def test_captions_are_77_tokens_per_class_and_every_file_says_what_it_learned_from(smoke_model):
    module, folder = smoke_model
    captions, names = load_captions(folder)
    assert captions.shape == (3, 77, 32) and names == ["n90000000", "n90000001", "n90000002"]
    assert torch.equal(captions, module.captions.detach())
    for file in ("unet/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.safetensors", "captions/captions.safetensors"):
        provenance = read_provenance(folder / file)
        assert provenance.startswith("stage 0 of the embedded default") and "none from a synthetic dataset" in provenance
    assert json.loads((folder / "captions" / "captions.json").read_text())["tokens"] == 77


def test_sampling_from_captions_gives_seeded_images(smoke_model):
    _, folder = smoke_model
    a = sample_from_captions(folder, [0, 2], seeds=[1, 2], num_inference_steps=2)
    b = sample_from_captions(folder, [0, 2], seeds=[1, 2], num_inference_steps=2)
    assert a.shape == (2, 3, 32, 32) and 0 <= a.min() and a.max() <= 1
    assert torch.equal(a, b)
    guided = sample_from_captions(folder, [0, 2], seeds=[1, 2], num_inference_steps=2, guidance_scale=3.0)
    assert guided.shape == a.shape and not torch.equal(guided, a)  # guided against the learned empty caption


def test_stage_0_is_deterministic_and_its_losses_are_recorded():
    config = BaseModelConfig(classes=2, pictures_per_class=2, vae_steps=2, vae_batch_size=2, unet_steps=2, unet_batch_size=2)
    first, second = fit_base_model(config), fit_base_model(config)
    assert len(first.losses["vae"]) == 2 and len(first.losses["unet"]) == 2
    assert first.losses == second.losses
    assert torch.equal(first.captions, second.captions)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"classes": 1}, "at least 2 classes"),
        ({"image_size": 36}, "multiple of 8"),
        ({"caption_dropout": 1.0}, "caption_dropout=1.0 must lie in"),
        ({"vae_steps": 0}, "vae_steps=0 must be >= 1"),
    ],
)
def test_bad_stage_0_settings_are_refused_with_the_key(change, message):
    with pytest.raises(ValueError, match=message):
        BaseModelConfig(**change)


def test_captions_of_a_folder_without_them_are_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="only a base model trained by `dreamdiffusion weights demo`"):
        load_captions(tmp_path)
