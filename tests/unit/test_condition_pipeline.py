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


def test_condition_model_is_a_diffusers_model_with_its_config():
    from diffusers import ConfigMixin, ModelMixin

    model = tiny_condition(time_embed_dim=128)
    assert isinstance(model, ModelMixin) and isinstance(model, ConfigMixin)
    assert model.config.cross_attention_dim == 32 and model.config.encoder_config["embed_dim"] == 64
    assert model.condition_config == ConditionConfig(preset("tiny"), cross_attention_dim=32, clip_dim=16, time_embed_dim=128)
    with pytest.raises(TypeError, match="an existing encoder goes in encoder_module="):
        EEGConditionModel(model.condition_config, model.encoder)  # the first API's positional encoder
    rebuilt = EEGConditionModel.from_config(model.config)
    assert rebuilt.condition_config == model.condition_config
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}


def test_condition_round_trip_and_damaged_weights(tmp_path):
    model = tiny_condition().eval()
    (tmp_path / "condition").mkdir()
    (tmp_path / "condition" / "notes.txt").write_text("kept")
    model.save_pretrained(tmp_path / "condition")
    assert sorted(p.name for p in tmp_path.rglob("*")) == [
        "checksums.json", "condition", "config.json", "diffusion_pytorch_model.safetensors", "notes.txt"
    ]  # the user's file is kept; no temporary entry is left behind
    loaded = EEGConditionModel.from_pretrained(tmp_path / "condition")
    x = torch.randn(2, 128, 512)
    with torch.no_grad():
        assert torch.equal(loaded(x).hidden_states, model(x).hidden_states)
    assert EEGConditionModel.from_pretrained(tmp_path / "condition", torch_dtype=torch.bfloat16).dtype == torch.bfloat16
    weights = tmp_path / "condition" / "diffusion_pytorch_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="does not match its SHA-256 in .*checksums.json: it changed after export"):
        EEGConditionModel.from_pretrained(tmp_path / "condition")


def test_condition_weights_of_another_architecture_are_refused(tmp_path):
    from dreamdiffusion.checksums import write_checksums

    tiny_condition().save_pretrained(tmp_path / "a")
    tiny_condition(time_embed_dim=8).save_pretrained(tmp_path / "b")
    # weights of b under a's config, with a manifest that matches them: only the strict load can tell
    (tmp_path / "b" / "diffusion_pytorch_model.safetensors").replace(tmp_path / "a" / "diffusion_pytorch_model.safetensors")
    write_checksums(tmp_path / "a")
    with pytest.raises(ValueError, match=r"does not fit EEGConditionModel: missing \[\], unexpected \['time_mapper"):
        EEGConditionModel.from_pretrained(tmp_path / "a")


def test_condition_folder_of_the_first_format_still_loads(tmp_path):
    from safetensors.torch import save_file

    from dreamdiffusion.atomic import sha256

    model = tiny_condition().eval()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "condition.safetensors"))
    meta = {"format": "dreamdiffusion.eeg_condition/1", "config": model.condition_config.to_dict(),
            "sha256": sha256(tmp_path / "condition.safetensors")}
    (tmp_path / "condition.json").write_text(json.dumps(meta))
    x = torch.randn(1, 128, 512)
    with torch.no_grad():
        assert torch.equal(EEGConditionModel.from_pretrained(tmp_path)(x).hidden_states, model(x).hidden_states)
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


@pytest.mark.parametrize("part", ["unet", "vae", "scheduler", "condition_model"])
def test_incomplete_pipeline_folder_names_the_part(pipeline_dir, tmp_path, part):
    import shutil

    broken = tmp_path / "pipeline"
    shutil.copytree(pipeline_dir[1], broken)
    shutil.rmtree(broken / part)
    with pytest.raises(FileNotFoundError, match=f"incomplete: missing {part} "):
        DreamDiffusionPipeline.from_pretrained(broken)


def test_authors_variants_are_config_keys_that_survive_save_and_load(tmp_path):
    model = tiny_condition(time_embed_dim=128, token_mapper_hidden=64, time_mapper_input="condition", encoder_cls_token=False)
    assert [m.out_channels for m in model.token_mapper] == [64, 77]
    assert [type(m).__name__ for m in model.time_mapper] == ["Conv1d", "Conv1d", "Linear"]
    model.save_pretrained(tmp_path / "c")
    loaded = EEGConditionModel.from_pretrained(tmp_path / "c")
    assert loaded.condition_config == model.condition_config
    eeg = torch.randn(2, 128, 512)
    with torch.no_grad():
        out, again = model(eeg), loaded(eeg)
    torch.testing.assert_close(out.time_vector, again.time_vector)
    assert out.time_vector.shape == (2, 128)


def test_encoder_cls_token_option_changes_attention_not_shapes():
    with_cls, without = tiny_condition(), tiny_condition(encoder_cls_token=False)
    eeg = torch.randn(2, 128, 512)
    with torch.no_grad():
        a, b = with_cls(eeg).tokens, without(eeg).tokens
    assert a.shape == b.shape == (2, 128, 64)
    assert not torch.allclose(a, b, atol=1e-4)  # same weights (seed 0): the cls token takes part in attention


def test_unknown_time_mapper_input_is_named():
    with pytest.raises(ValueError, match="time_mapper_input='pooled'; choose one of tokens, condition"):
        tiny_condition(time_embed_dim=8, time_mapper_input="pooled")


def test_a_condition_folder_saved_before_the_variant_keys_loads_with_the_paper_defaults(tmp_path):
    model = tiny_condition()
    model.save_pretrained(tmp_path / "c")
    config_path = tmp_path / "c" / "config.json"
    config = json.loads(config_path.read_text())
    for key in ("token_mapper_hidden", "time_mapper_input", "encoder_cls_token"):
        del config[key]
    config_path.write_text(json.dumps(config))
    loaded = EEGConditionModel.from_pretrained(tmp_path / "c")
    assert loaded.condition_config == model.condition_config
    eeg = torch.randn(1, 128, 512)
    with torch.no_grad():
        torch.testing.assert_close(loaded(eeg).hidden_states, model(eeg).hidden_states)
