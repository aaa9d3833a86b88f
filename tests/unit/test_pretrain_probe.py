"""scripts/pretrain_probe.py: the stage-2 proxy that compares a stage-1 encoder with random initialisation."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from dreamdiffusion.data.synthetic import write_synthetic_imagenet_eeg
from dreamdiffusion.models.encoder_file import save_encoder
from dreamdiffusion.models.mae import MaskedEEGAutoencoder, preset

pytestmark = pytest.mark.slow  # the module fixture writes a synthetic paired set (~10-20 s on a shared machine)


@pytest.fixture(scope="module")
def probe_script():
    script = Path(__file__).resolve().parents[2] / "scripts" / "pretrain_probe.py"
    spec = importlib.util.spec_from_file_location("pretrain_probe", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def paired(tmp_path_factory):
    folder = tmp_path_factory.mktemp("probe")
    write_synthetic_imagenet_eeg(folder / "data", classes=3, images_per_class=5, subjects=2, signal_to_noise=3.0)
    torch.manual_seed(1)
    save_encoder(MaskedEEGAutoencoder(preset("tiny")).encoder, folder / "encoder", preset="tiny")
    return folder


def run(probe_script, paired, out, *extra):
    probe_script.main(["--data", str(paired / "data"), "--encoder", str(paired / "encoder"), "--seeds", "0", "1",
                       "--epochs", "2", "--json", str(out), *extra])
    return json.loads(out.read_text())


def test_scores_both_initialisations_on_val_per_seed_and_repeats_exactly(probe_script, paired, tmp_path, capsys):
    first = run(probe_script, paired, tmp_path / "a.json")
    assert set(first["summary"]) == {"scratch", str(paired / "encoder")}
    for results in first["runs"].values():
        assert [r["seed"] for r in results] == [0, 1]
        assert all(0.0 <= r["val_accuracy"] <= 1.0 and len(r["curve"]) == 2 for r in results)
    assert "train /" in capsys.readouterr().out
    assert run(probe_script, paired, tmp_path / "b.json")["runs"] == first["runs"]


def test_the_val_split_is_scored_never_the_test_split(probe_script, paired):
    val, labels = probe_script.split_windows(paired / "data", "val")
    test, _ = probe_script.split_windows(paired / "data", "test")
    assert val.shape[1:] == (128, 512) and len(labels) == len(val)
    assert not any(torch.equal(v, t) for v in val for t in test)


def test_a_missing_encoder_folder_is_refused_naming_it(probe_script, paired, tmp_path):
    with pytest.raises(FileNotFoundError, match="no stage-1 encoder in .*nowhere"):
        probe_script.main(["--data", str(paired / "data"), "--encoder", str(tmp_path / "nowhere"), "--seeds", "0",
                           "--epochs", "1"])
