"""`weights import-authors`: a tiny checkpoint in the authors' exact format becomes a pipeline that generates.

The optional comparison with the authors' own encoder code runs when ``DREAMDIFFUSION_AUTHORS_CODE`` names a
folder holding their ``sc_mbm/mae_for_eeg.py`` and ``DREAMDIFFUSION_TIMM054`` a folder with timm 0.5.4 (e.g.
``pip install --no-deps --target DIR timm==0.5.4``); it is skipped otherwise.
"""

import importlib
import os
import sys

import pytest
import torch
from authors_format import (
    TINY,
    TINY_LDM_CONFIG,
    authors_condition_state,
    build_authors_checkpoint,
    reference_condition,
    tiny_unet_config,
    tiny_vae_config,
    unet_to_ldm,
    vae_to_ldm,
)

from dreamdiffusion.models.authors_checkpoint import import_authors_checkpoint
from dreamdiffusion.pipeline import DreamDiffusionPipeline
from dreamdiffusion.safe_checkpoint import read_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("authors")
    state = build_authors_checkpoint(folder / "checkpoint.pth", folder)
    return folder, state


@pytest.fixture(scope="module")
def imported(checkpoint):
    folder, _ = checkpoint
    return import_authors_checkpoint(folder / "checkpoint.pth", TINY_LDM_CONFIG)  # heads: their config's num_heads


@pytest.mark.parametrize("part", ["unet", "vae"])
def test_ldm_key_mapping_round_trips_exactly(part):
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import (
        convert_ldm_unet_checkpoint,
        convert_ldm_vae_checkpoint,
    )

    torch.manual_seed(0)
    if part == "unet":
        config = tiny_unet_config(time_condition=False)
        state = UNet2DConditionModel(**config).state_dict()
        back = convert_ldm_unet_checkpoint(unet_to_ldm(state, config), config)
    else:
        config = tiny_vae_config()
        state = AutoencoderKL(**config).state_dict()
        back = convert_ldm_vae_checkpoint(vae_to_ldm(state, config), config)
    assert set(back) == set(state)
    assert all(torch.equal(back[k], state[k]) for k in state)


def test_import_reads_nothing_executable_and_accounts_for_every_tensor(checkpoint, imported):
    folder, state = checkpoint
    _, report = imported
    assert not (folder / "setstate").exists() and not (folder / "reduce").exists()
    assert "config.Config_Generative_Model" in report.skipped_globals
    assert report.config_fields["use_time_cond"] == "True" and report.config_fields["subject"] == "4"
    assert report.encoder_heads == f"{TINY['heads']} (their config)"
    assert sum(report.used.values()) + report.ignored_tensors == len(state)
    assert set(report.ignored) >= {"cond_stage_model.mae.mask_token", "cond_stage_model.mae.pos_embed", "betas", "config", "state",
                                   "image_embedder.*"}
    assert list(report.filled_without_file) == ["condition_model.null_condition"]


def test_imported_weights_are_the_files(checkpoint, imported):
    _, state = checkpoint
    pipe, _ = imported
    unet = pipe.unet.state_dict()
    assert torch.equal(unet["conv_in.weight"], state["model.diffusion_model.input_blocks.0.0.weight"])
    assert torch.equal(unet["down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight"],
                       state["model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"])
    assert pipe.unet.config.class_embed_type == "identity"
    assert torch.equal(pipe.vae.state_dict()["decoder.up_blocks.0.resnets.0.conv1.weight"],
                       state["first_stage_model.decoder.up.1.block.0.conv1.weight"])
    assert pipe.vae.config.scaling_factor == pytest.approx(0.18215)
    assert type(pipe.scheduler).__name__ == "PNDMScheduler" and pipe.scheduler.config.skip_prk_steps


def test_condition_model_matches_the_authors_forward(imported):
    pipe, _ = imported
    cond, time = authors_condition_state(0)
    eeg = torch.randn(3, 128, 512, generator=torch.Generator().manual_seed(1))
    tokens, hidden, time_vector, clip = reference_condition(cond, time, eeg)
    with torch.no_grad():
        out = pipe.condition_model(eeg)
        ours_clip = pipe.condition_model.clip_embedding(out.tokens)
    for ours, theirs in ((out.tokens, tokens), (out.hidden_states, hidden), (out.time_vector, time_vector), (ours_clip, clip)):
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def _authors_encoder_module():
    code, timm_dir = os.environ.get("DREAMDIFFUSION_AUTHORS_CODE"), os.environ.get("DREAMDIFFUSION_TIMM054")
    if not code or not timm_dir:
        pytest.skip("set DREAMDIFFUSION_AUTHORS_CODE (folder with sc_mbm/) and DREAMDIFFUSION_TIMM054 (timm 0.5.4) "
                    "to compare with their code")
    saved_path, saved_modules = list(sys.path), dict(sys.modules)
    sys.path[:0] = [timm_dir, code]
    try:
        return importlib.import_module("sc_mbm.mae_for_eeg")
    except Exception as e:  # noqa: BLE001 - any import failure of foreign code means: cannot compare here
        pytest.skip(f"the authors' code is not importable here ({type(e).__name__}: {e})")
    finally:
        sys.path[:] = saved_path
        for name in set(sys.modules) - set(saved_modules):
            if name.split(".")[0] in ("timm", "sc_mbm"):
                sys.modules.pop(name)


def test_encoder_matches_the_authors_code_on_the_same_weights(imported):
    module = _authors_encoder_module()
    theirs = module.eeg_encoder(time_len=TINY["n_times"], patch_size=TINY["patch"], embed_dim=TINY["d"], in_chans=TINY["n_chans"],
                                depth=TINY["depth"], num_heads=TINY["heads"], mlp_ratio=TINY["mlp_ratio"], global_pool=False)
    cond, _ = authors_condition_state(0)
    theirs.load_state_dict({k[len("mae."):]: v for k, v in cond.items() if k.startswith("mae.")}, strict=True)
    pipe, _ = imported
    eeg = torch.randn(2, 128, 512, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(pipe.condition_model(eeg).tokens, theirs.eval()(eeg), atol=1e-5, rtol=1e-5)


def test_imported_pipeline_saves_loads_and_generates(imported, tmp_path):
    pipe, _ = imported
    pipe.save_pretrained(tmp_path / "pipeline")
    loaded = DreamDiffusionPipeline.from_pretrained(tmp_path / "pipeline")
    assert loaded.condition_model.condition_config == pipe.condition_model.condition_config
    eeg = torch.randn(2, 128, 512, generator=torch.Generator().manual_seed(3))
    images = loaded(eeg, num_inference_steps=3, generator=[torch.Generator().manual_seed(i) for i in range(2)], output_type="np").images
    again = pipe(eeg, num_inference_steps=3, generator=[torch.Generator().manual_seed(i) for i in range(2)], output_type="np").images
    assert images.shape == (2, 16, 16, 3) and images.std() > 0
    assert images == pytest.approx(again, abs=1e-5)


def test_cli_import_then_generate(cli, capsys, checkpoint, tmp_path):
    import yaml

    folder, _ = checkpoint
    config = tmp_path / "config15.yaml"
    config.write_text(yaml.safe_dump(TINY_LDM_CONFIG))
    out = tmp_path / "pipeline"
    assert cli("weights", "import-authors", "--checkpoint", str(folder / "checkpoint.pth"), "--out", str(out),
               "--sd-config", str(config)) == 0
    printed = capsys.readouterr().out
    assert "inert records): config.Config_Generative_Model" in printed and "null_condition" in printed
    eeg_file = tmp_path / "eeg.pth"
    data = [{"eeg": torch.randn(128, 500), "label": 0, "image": 0, "subject": 4}]
    torch.save({"dataset": data, "labels": ["n02106662"], "images": ["n02106662_1451"]}, eeg_file)
    pics = tmp_path / "pics"
    assert cli("generate", "--pipeline", str(out), "--eeg", str(eeg_file), "--out", str(pics), "--index", "0", "--steps", "2") == 0
    assert len(list(pics.glob("*.png"))) >= 1
    assert cli("weights", "import-authors", "--checkpoint", str(folder / "checkpoint.pth"), "--out", str(out)) == 1
    assert "not empty" in capsys.readouterr().err
    assert "subject 4, splits 'datasets/block_splits_by_image_single.pth'" in (out / "README.md").read_text()
    assert cli("weights", "import-authors", "--checkpoint", str(tmp_path / "missing.pth"), "--out", str(tmp_path / "x")) == 1
    assert "missing.pth does not exist" in capsys.readouterr().err


def _save_variant(tmp_path, edit):
    import sys as _sys

    from authors_format import install_config_module

    state = build_authors_checkpoint(tmp_path / "base.pth", tmp_path)
    content = {"model_state_dict": edit(dict(state)), "config": install_config_module(tmp_path)(), "state": torch.zeros(2)}
    try:
        torch.save(content, tmp_path / "variant.pth")
    finally:
        _sys.modules.pop("config", None)
    return tmp_path / "variant.pth"


def test_unknown_tensors_are_an_error_unless_ignored(tmp_path):
    path = _save_variant(tmp_path, lambda s: s | {"model_ema.decay": torch.tensor(0.999)})
    with pytest.raises(ValueError, match=r"no known part: \['model_ema.decay'\].*--ignore PREFIX"):
        import_authors_checkpoint(path, TINY_LDM_CONFIG, num_heads=TINY["heads"])
    _, report = import_authors_checkpoint(path, TINY_LDM_CONFIG, num_heads=TINY["heads"], ignore=["model_ema."])
    assert report.ignored["model_ema.decay"] == "--ignore"
    assert report.ignored["image_embedder.*"].startswith("their frozen CLIP ViT-L/14 image tower")
    assert report.ignored_counts["image_embedder.*"] == 2
    assert sum(report.used.values()) + report.ignored_tensors == len(read_checkpoint(path).content["model_state_dict"])


def test_a_tensor_the_converter_drops_is_an_error(tmp_path):
    path = _save_variant(tmp_path, lambda s: s | {"model.diffusion_model.label_emb.0.weight": torch.ones(2, 2)})
    with pytest.raises(ValueError, match=r"UNet .*not converted: \['model.diffusion_model.label_emb.0.weight'\]"):
        import_authors_checkpoint(path, TINY_LDM_CONFIG, num_heads=TINY["heads"])


def test_other_schedule_and_pooled_models_are_refused(tmp_path):
    path = _save_variant(tmp_path, lambda s: s | {"betas": torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)})
    with pytest.raises(ValueError, match="betas are not the ldm config's schedule"):
        import_authors_checkpoint(path, TINY_LDM_CONFIG, num_heads=TINY["heads"])
    pooled = _save_variant(tmp_path, lambda s: {k: v for k, v in s.items() if "channel_mapper" not in k})
    with pytest.raises(ValueError, match="global_pool=True"):
        import_authors_checkpoint(pooled, TINY_LDM_CONFIG, num_heads=TINY["heads"])


def test_a_file_without_model_state_dict_is_named(tmp_path):
    torch.save({"state_dict": {"w": torch.ones(1)}}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match=r"holds \['state_dict'\], not a dict with 'model_state_dict'"):
        import_authors_checkpoint(tmp_path / "other.pth")


def test_full_size_layout_is_sd15_and_the_152M_encoder():
    """At the real sizes (on the meta device: shapes only): SD-1.5's ldm config gives SD-1.5's diffusers UNet and
    VAE, whose ldm names convert back exactly, and the authors' condition weights read as the 152M preset."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import (
        convert_ldm_unet_checkpoint,
        convert_ldm_vae_checkpoint,
        create_unet_diffusers_config_from_ldm,
        create_vae_diffusers_config_from_ldm,
    )

    from dreamdiffusion.models.authors_checkpoint import (
        SD15_LDM_CONFIG,
        condition_config_from_weights,
    )
    from dreamdiffusion.models.mae import PRESETS

    unet_config = create_unet_diffusers_config_from_ldm(SD15_LDM_CONFIG, {})
    vae_config = create_vae_diffusers_config_from_ldm(SD15_LDM_CONFIG, {}, scaling_factor=0.18215)
    assert unet_config["block_out_channels"] == [320, 640, 1280, 1280] and unet_config["attention_head_dim"] == 8
    assert unet_config["cross_attention_dim"] == 768 and unet_config["sample_size"] == 64
    assert vae_config["block_out_channels"] == [128, 256, 512, 512] and vae_config["sample_size"] == 512
    with torch.device("meta"):
        unet, vae = UNet2DConditionModel(**unet_config), AutoencoderKL(**vae_config)
        real = dict(TINY, d=1024, depth=24, heads=16, cross=768, clip=768, time_dim=1280)
        cond, time = authors_condition_state(0, real)
    for model, config, to_ldm, convert in ((unet, unet_config, unet_to_ldm, convert_ldm_unet_checkpoint),
                                           (vae, vae_config, vae_to_ldm, convert_ldm_vae_checkpoint)):
        state = model.state_dict()
        back = convert(to_ldm(state, config), config)
        assert {k: v.shape for k, v in back.items()} == {k: v.shape for k, v in state.items()}
    assert unet.time_embedding.linear_2.out_features == 1280
    config = condition_config_from_weights(cond, time, num_heads=16)
    assert config.encoder == PRESETS["152M"]
    assert (config.token_mapper_hidden, config.time_embed_dim, config.cross_attention_dim) == (64, 1280, 768)
