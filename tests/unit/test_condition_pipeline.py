import json

import pytest
import torch

from dreamdiffusion.models.backbones import build_tiny_sd, load_sd
from dreamdiffusion.models.condition import ConditionConfig, EEGConditionModel
from dreamdiffusion.models.encoder_file import save_encoder
from dreamdiffusion.models.mae import MaskedEEGAutoencoder, preset
from dreamdiffusion.pipeline import DreamDiffusionPipeline


def tiny_condition(**kwargs) -> EEGConditionModel:
    torch.manual_seed(0)
    return EEGConditionModel(ConditionConfig(preset("tiny"), cross_attention_dim=32, clip_dim=16, **kwargs))


def test_condition_shapes():
    model = tiny_condition(time_embed_dim=128)
    out = model(torch.randn(3, 128, 512))
    assert out.tokens.shape == (3, 128, 64)
    assert out.hidden_states.shape == (3, 77, 32)
    assert out.time_vector.shape == (3, 128)
    assert model.clip_embedding(out.tokens).shape == (3, 16)
    assert model.null(3).shape == (3, 77, 32)


def test_from_stage1_loads_the_pretrained_encoder(tmp_path):
    mae = MaskedEEGAutoencoder(preset("tiny")).eval()
    save_encoder(mae.encoder, tmp_path, preset="tiny")
    model = EEGConditionModel.from_stage1(tmp_path, preset("tiny"), cross_attention_dim=32, clip_dim=16).eval()
    x = torch.randn(2, 128, 512)
    with torch.no_grad():
        assert torch.equal(model(x).tokens, mae.encode(x))


def test_from_stage1_refuses_an_encoder_of_another_preset(tmp_path):
    save_encoder(MaskedEEGAutoencoder(preset("tiny")).encoder, tmp_path, preset="tiny")
    with pytest.raises(ValueError, match="does not match the configured architecture"):
        EEGConditionModel.from_stage1(tmp_path, preset("18.3M"), cross_attention_dim=32, clip_dim=16)


def test_condition_round_trip_and_damaged_weights(tmp_path):
    model = tiny_condition().eval()
    model.save_pretrained(tmp_path)
    loaded = EEGConditionModel.from_pretrained(tmp_path).eval()
    x = torch.randn(2, 128, 512)
    with torch.no_grad():
        assert torch.equal(loaded(x).hidden_states, model(x).hidden_states)
    meta = json.loads((tmp_path / "condition.json").read_text())
    meta["sha256"] = "0" * 64
    (tmp_path / "condition.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="does not match the checksum"):
        EEGConditionModel.from_pretrained(tmp_path)


@pytest.fixture(scope="module")
def pipeline_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipe")
    sd = load_sd(str(build_tiny_sd(root / "sd")), local_files_only=True)
    pipe = DreamDiffusionPipeline(sd.unet, sd.vae, sd.scheduler, tiny_condition())
    return pipe, pipe.save_pretrained(root / "pipeline")


def test_pipeline_export_load_gives_the_same_unet_output(pipeline_dir):
    pipe, folder = pipeline_dir
    loaded = DreamDiffusionPipeline.from_pretrained(folder)
    eeg = torch.randn(2, 128, 512)
    latents = torch.randn(2, 4, 8, 8)
    pipe.eval()
    a = pipe.predict_noise(latents, torch.tensor([500, 500]), pipe.encode_eeg(eeg))
    b = loaded.predict_noise(latents, torch.tensor([500, 500]), loaded.encode_eeg(eeg))
    assert a.shape == (2, 4, 8, 8) and torch.equal(a, b)
    assert loaded.image_size == 64


@pytest.mark.parametrize("part", ["unet", "vae", "scheduler", "condition"])
def test_incomplete_pipeline_folder_names_the_part(pipeline_dir, tmp_path, part):
    import shutil

    broken = tmp_path / "pipeline"
    shutil.copytree(pipeline_dir[1], broken)
    shutil.rmtree(broken / part)
    with pytest.raises(FileNotFoundError, match=f"incomplete: missing {part} "):
        DreamDiffusionPipeline.from_pretrained(broken)
