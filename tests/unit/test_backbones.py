import pytest
import torch

from dreamdiffusion.models.backbones import build_tiny_clip, build_tiny_sd, load_clip, load_sd


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("weights")
    return build_tiny_sd(root / "sd"), build_tiny_clip(root / "clip")


def test_tiny_sd_loads_back_through_the_real_loader(tiny_dirs):
    sd = load_sd(str(tiny_dirs[0]), local_files_only=True)
    assert sd.vae_scale_factor == 8 and sd.image_size == 64
    latents = sd.vae.encode(torch.zeros(1, 3, 64, 64)).latent_dist.mean
    assert latents.shape == (1, 4, 8, 8)
    out = sd.unet(latents, torch.tensor([5]), encoder_hidden_states=torch.zeros(1, 77, 32)).sample
    assert out.shape == latents.shape
    assert sd.scheduler.config.num_train_timesteps == 1000


def test_tiny_clip_loads_back_with_its_processor(tiny_dirs):
    model, processor = load_clip(str(tiny_dirs[1]), local_files_only=True)
    assert model.config.projection_dim == 32
    assert processor.crop_size == {"height": 32, "width": 32}


def test_incomplete_sd_folder_names_the_missing_part(tiny_dirs, tmp_path):
    import shutil

    broken = tmp_path / "sd"
    shutil.copytree(tiny_dirs[0], broken)
    shutil.rmtree(broken / "vae")
    with pytest.raises(FileNotFoundError, match=r"incomplete: missing vae/config.json"):
        load_sd(str(broken))


def test_missing_local_folder_is_not_taken_for_a_hub_id(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist; run `make weights`"):
        load_clip(str(tmp_path / "nowhere" / "clip"))


def test_weights_tiny_command_writes_both_models(cli, tmp_path):
    assert cli("weights", "tiny", "--out", str(tmp_path)) == 0
    assert (tmp_path / "sd/unet/config.json").is_file() and (tmp_path / "clip/preprocessor_config.json").is_file()
    assert not list(tmp_path.glob(".*tmp*"))


def test_weights_fetch_reports_every_failed_model_and_exits_non_zero(cli, tmp_path, capsys, monkeypatch):
    """Offline here: the hub client refuses at once; the command names each model and how to fix it."""
    assert cli("weights", "fetch", "--out", str(tmp_path)) == 1
    err = capsys.readouterr().err
    from dreamdiffusion.models.backbones import CLIP_VIT_L14, SD15

    assert f"{SD15}:" in err and f"{CLIP_VIT_L14}:" in err
    assert "HF_HUB_OFFLINE" in err
