import json

import pytest
import torch

from dreamdiffusion.models.encoder_file import load_encoder, save_encoder
from dreamdiffusion.models.mae import MaskedEEGAutoencoder, preset


@pytest.fixture
def exported(tmp_path):
    torch.manual_seed(0)
    model = MaskedEEGAutoencoder(preset("tiny")).eval()
    save_encoder(model.encoder, tmp_path, preset="tiny", mask_ratio=0.75)
    return model, tmp_path


def test_export_then_load_gives_identical_encode(exported):
    model, folder = exported
    assert sorted(p.name for p in folder.iterdir()) == ["encoder.json", "encoder.safetensors"]
    loaded = load_encoder(folder, expected=preset("tiny")).eval()
    x = torch.randn(2, 128, 512)
    with torch.no_grad():
        assert torch.equal(loaded(x), model.encode(x))
    meta = json.loads((folder / "encoder.json").read_text())
    assert meta["preset"] == "tiny" and meta["config"]["embed_dim"] == 64


def test_encoder_of_another_preset_is_refused(exported):
    _, folder = exported
    with pytest.raises(ValueError, match=r"preset 'tiny'.*embed_dim=64 in the file but 384 expected"):
        load_encoder(folder, expected=preset("18.3M"))


def test_weights_from_another_export_are_refused(exported, tmp_path_factory):
    _, folder = exported
    other = tmp_path_factory.mktemp("other")
    save_encoder(MaskedEEGAutoencoder(preset("tiny")).encoder, other, preset="tiny")
    (folder / "encoder.safetensors").write_bytes((other / "encoder.safetensors").read_bytes())
    with pytest.raises(ValueError, match="does not match the checksum"):
        load_encoder(folder)


def test_missing_encoder_names_the_folder_and_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no stage-1 encoder in .*Run stage 1 first"):
        load_encoder(tmp_path / "nowhere")


def test_export_over_an_existing_one_leaves_no_temporary_files(exported):
    model, folder = exported
    save_encoder(model.encoder, folder, preset="tiny")
    assert sorted(p.name for p in folder.iterdir()) == ["encoder.json", "encoder.safetensors"]


def test_a_json_never_describes_other_weights_even_if_the_export_is_killed_half_way(tmp_path, monkeypatch):
    from dreamdiffusion.models import encoder_file

    save_encoder(MaskedEEGAutoencoder(preset("tiny")).encoder, tmp_path, preset="tiny", mask_ratio=0.75)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # the process dies after the new weights, before their JSON

    monkeypatch.setattr(encoder_file, "write_text", killed)
    with pytest.raises(KeyboardInterrupt):
        save_encoder(MaskedEEGAutoencoder(preset("tiny")).encoder, tmp_path, preset="tiny", mask_ratio=0.5)
    assert not (tmp_path / "encoder.json").exists()
    with pytest.raises(FileNotFoundError, match="encoder.json is missing"):
        load_encoder(tmp_path)


def test_an_encoder_written_before_the_position_layout_existed_keeps_its_positions(tmp_path):
    """Files without ``position_layout`` were trained with the cls token at position 0 and patches at 1..L."""
    from dataclasses import replace

    torch.manual_seed(0)
    old = MaskedEEGAutoencoder(replace(preset("tiny"), position_layout="shifted")).eval()
    save_encoder(old.encoder, tmp_path, preset="tiny")
    meta = json.loads((tmp_path / "encoder.json").read_text())
    del meta["config"]["position_layout"]  # as an earlier version wrote it
    (tmp_path / "encoder.json").write_text(json.dumps(meta))
    loaded = load_encoder(tmp_path).eval()
    assert loaded.config.position_layout == "shifted"
    x = torch.randn(2, 128, 512)
    with torch.no_grad():
        assert torch.equal(loaded(x), old.encode(x))
