"""Progress bars of the long work outside training: drawn on a terminal, silent in logs and under --quiet."""

import sys

import lightning as L
import pytest
from _pytest.capture import CaptureIO

from dreamdiffusion import progress
from dreamdiffusion.data.moabb import MOABBDataModule
from dreamdiffusion.data.moabb_sources import download
from dreamdiffusion.data.synthetic import write_synthetic_imagenet_eeg
from dreamdiffusion.data.things_eeg2_synthetic import ThingsSyntheticConfig, write_synthetic_things_eeg2


@pytest.fixture
def terminal(capsys, monkeypatch):
    """stderr (capsys's capture) claims to be a terminal, as a user's shell is."""
    monkeypatch.setattr(CaptureIO, "isatty", lambda self: True)  # the capture stream is swapped in after setup


def fake_moabb(n_subjects: int) -> dict:
    return {"FakeDataset": dict(n_subjects=n_subjects, n_sessions=1, n_runs=1, sfreq=128, duration=2, seed=0,
                                channels=["Fz", "Cz", "Pz", "Oz"])}


def test_a_bar_is_silent_when_stderr_is_not_a_terminal(capsys):
    assert not sys.stderr.isatty()
    assert list(progress.bar(range(5), desc="work")) == [0, 1, 2, 3, 4]  # still iterates
    assert capsys.readouterr().err == ""


def test_a_bar_on_a_terminal_counts_its_total(terminal, capsys):
    assert list(progress.bar(range(7), desc="work", unit="item")) == list(range(7))
    err = capsys.readouterr().err
    assert "work" in err and "7/7" in err


def test_quiet_silences_a_terminal_and_an_inner_block_cannot_undo_it(terminal, capsys):
    with progress.quiet():
        with progress.quiet(False):
            list(progress.bar(range(3), desc="work"))
        list(progress.bar(range(3), desc="work", quiet=False))
    list(progress.bar(range(3), desc="work", quiet=True))
    assert capsys.readouterr().err == ""
    assert progress.enabled()  # the block is over


def test_a_trainer_without_its_progress_bar_asks_for_quiet():
    assert progress.quiet_for(L.Trainer(enable_progress_bar=False, logger=False, enable_checkpointing=False))
    assert not progress.quiet_for(L.Trainer(enable_progress_bar=True, logger=False, enable_checkpointing=False))
    assert not progress.quiet_for(None)  # no Trainer: a plain command or a Python call


def test_synthetic_writer_counts_trials_and_pictures(terminal, capsys, tmp_path):
    write_synthetic_imagenet_eeg(tmp_path / "data", classes=2, images_per_class=3, subjects=2, seed=1)
    err = capsys.readouterr().err
    assert "synthetic EEG" in err and "12/12" in err  # 2 classes x 3 images x 2 subjects
    assert "synthetic pictures" in err and "6/6" in err


def test_things_writer_counts_pictures_and_subjects(terminal, capsys, tmp_path):
    config = ThingsSyntheticConfig(subjects=(1, 2, 3), train_concepts=2, images_per_concept=2, test_concepts=1)
    write_synthetic_things_eeg2(tmp_path / "things", config)
    err = capsys.readouterr().err
    assert "synthetic pictures" in err and "5/5" in err  # 2 x 2 training + 1 test
    assert "synthetic EEG" in err and "3/3" in err


def test_synth_command_under_quiet_prints_no_bar(cli, terminal, capsys, tmp_path):
    args = ["data", "synth-imagenet-eeg", "--classes", "2", "--images-per-class", "3", "--subjects", "1"]
    assert cli(*args, "--out", str(tmp_path / "loud")) == 0
    assert "synthetic pictures" in capsys.readouterr().err
    assert cli(*args, "--out", str(tmp_path / "quiet"), "--quiet") == 0
    assert "synthetic" not in capsys.readouterr().err


def test_moabb_download_counts_subjects(terminal, capsys):
    assert download(["FakeDataset"], dataset_kwargs=fake_moabb(3)) == []
    err = capsys.readouterr().err
    assert "MOABB download" in err and "3/3" in err


def test_moabb_cache_build_counts_subjects_and_follows_the_trainer(terminal, capsys, tmp_path):
    dm = MOABBDataModule(dataset_kwargs=fake_moabb(3), cache_dir=str(tmp_path / "cache"))
    dm.prepare_data()
    err = capsys.readouterr().err
    assert "MOABB cache" in err and "3/3" in err
    dm.trainer = L.Trainer(enable_progress_bar=False, logger=False, enable_checkpointing=False)
    dm.prepare_data()  # reuses the cache; the Trainer shows no bar, neither does the build
    assert "MOABB cache" not in capsys.readouterr().err


def test_clip_embedding_cache_counts_images(terminal, capsys, tmp_path):
    from dreamdiffusion.data.embedding_cache import compute_clip_embeds
    from dreamdiffusion.models.backbones import build_tiny_clip

    data = write_synthetic_imagenet_eeg(tmp_path / "data", classes=2, images_per_class=3, subjects=1, seed=2)
    clip = build_tiny_clip(tmp_path / "clip", seed=0)
    images = {p.stem: p for p in sorted((data / "images").rglob("*.JPEG"))}
    capsys.readouterr()
    embeds = compute_clip_embeds(str(clip), images, local_files_only=True, device="cpu", batch_size=4)
    assert embeds["clip_embeds"].shape[0] == 6
    err = capsys.readouterr().err
    assert "CLIP embeddings cache" in err and "6/6" in err
