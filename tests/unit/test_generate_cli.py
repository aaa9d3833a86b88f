"""`dreamdiffusion generate` on recordings written by MNE in the test, and on an ImageNet-EEG .pth."""

import re
import shutil

import numpy as np
import pytest

from dreamdiffusion.pipeline import build_tiny_pipeline


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    return str(build_tiny_pipeline(tmp_path_factory.mktemp("gen-cli") / "pipeline"))


def make_raw(n_chans=128, sfreq=500.0, seconds=4.0, annotations=()):
    import mne

    rng = np.random.default_rng(0)
    info = mne.create_info([f"EEG{i:03d}" for i in range(n_chans)], sfreq, "eeg")
    raw = mne.io.RawArray(rng.standard_normal((n_chans, int(seconds * sfreq))) * 20e-6, info, verbose="error")
    if annotations:
        raw.set_annotations(mne.Annotations([a for a in annotations], [0.1] * len(annotations), ["image"] * len(annotations)))
    return raw


def pngs(folder):
    return sorted(p.name for p in folder.glob("*.png"))


def test_fif_at_given_onsets(cli, pipeline, tmp_path):
    path = tmp_path / "rec_raw.fif"
    make_raw().save(path, verbose="error")
    out = tmp_path / "out"
    assert cli("generate", "--pipeline", pipeline, "--eeg", str(path), "--out", str(out), "--onset", "1.0", "2.5",
               "--num-samples", "2", "--steps", "2") == 0
    assert pngs(out) == [f"rec_raw_onset{o}s_sample{k}.png" for o in ("1.000", "2.500") for k in (0, 1)]
    from PIL import Image

    assert Image.open(out / "rec_raw_onset1.000s_sample0.png").size == (64, 64)


def test_edf_at_its_events_with_fewer_channels_warns(cli, pipeline, tmp_path):
    import mne

    path = tmp_path / "rec.edf"
    mne.export.export_raw(path, make_raw(n_chans=32, annotations=(0.5, 2.0)), fmt="edf", verbose="error")
    out = tmp_path / "out"
    with pytest.warns(UserWarning, match="32 EEG channels, the model takes 128: replicated"):
        assert cli("generate", "--pipeline", pipeline, "--eeg", str(path), "--out", str(out), "--events", "--steps", "2") == 0
    assert pngs(out) == ["rec_onset0.500s_sample0.png", "rec_onset2.000s_sample0.png"]


def test_images_do_not_depend_on_the_batch_size(cli, pipeline, tmp_path):
    path = tmp_path / "rec_raw.fif"
    make_raw().save(path, verbose="error")
    args = ["generate", "--pipeline", pipeline, "--eeg", str(path), "--onset", "0.5", "1.0", "2.0", "--steps", "2"]
    assert cli(*args, "--out", str(tmp_path / "a"), "--batch-size", "3") == 0
    assert cli(*args, "--out", str(tmp_path / "b"), "--batch-size", "1") == 0
    from PIL import Image

    for name in pngs(tmp_path / "a"):
        a = np.asarray(Image.open(tmp_path / "a" / name), dtype=int)
        b = np.asarray(Image.open(tmp_path / "b" / name), dtype=int)
        assert np.abs(a - b).max() <= 1


def test_scheduler_chosen_by_diffusers_class_name(cli, capsys, pipeline, tmp_path, monkeypatch):
    from diffusers import DDIMScheduler

    path = tmp_path / "rec_raw.fif"
    make_raw().save(path, verbose="error")
    steps = []
    step = DDIMScheduler.step
    monkeypatch.setattr(DDIMScheduler, "step", lambda self, *a, **k: steps.append(1) or step(self, *a, **k))
    args = ["generate", "--pipeline", pipeline, "--eeg", str(path), "--onset", "1.0", "--steps", "3"]
    assert cli(*args, "--out", str(tmp_path / "ddim"), "--scheduler", "DDIMScheduler") == 0
    assert len(steps) == 3
    assert cli(*args, "--out", str(tmp_path / "dpm")) == 0 and len(steps) == 3  # default: the pipeline's DPM-Solver++
    from PIL import Image

    name = "rec_raw_onset1.000s_sample0.png"
    dpm, ddim = (np.asarray(Image.open(tmp_path / d / name), dtype=int) for d in ("dpm", "ddim"))
    assert np.abs(dpm - ddim).max() > 0
    assert cli(*args, "--out", str(tmp_path / "x"), "--scheduler", "Euler") == 2
    assert "unknown sampler 'Euler'; choose ddim, plms or a diffusers scheduler class name" in capsys.readouterr().err


def test_imagenet_eeg_pth_by_index(cli, pipeline, tmp_path):
    from dreamdiffusion.data.synthetic import write_synthetic_imagenet_eeg

    write_synthetic_imagenet_eeg(tmp_path / "data", classes=2, images_per_class=3, subjects=1, seed=0)
    out = tmp_path / "out"
    eeg = tmp_path / "data" / "eeg_5_95_std.pth"
    assert cli("generate", "--pipeline", pipeline, "--eeg", str(eeg), "--out", str(out), "--index", "0", "3", "--steps", "2") == 0
    assert pngs(out) == ["eeg_5_95_std_index0_sample0.png", "eeg_5_95_std_index3_sample0.png"]
    assert cli("generate", "--pipeline", pipeline, "--eeg", str(eeg), "--out", str(out), "--index", "999") == 2


def error_of(cli, capsys, *args):
    assert cli("generate", *args) == 2
    return capsys.readouterr().err


def test_unreadable_file_names_the_format(cli, capsys, pipeline, tmp_path):
    bad = tmp_path / "broken.edf"
    bad.write_bytes(b"this is not an EDF file at all" * 10)
    err = error_of(cli, capsys, "--pipeline", pipeline, "--eeg", str(bad), "--out", str(tmp_path), "--onset", "0")
    assert "could not read" in err and "as a .edf recording" in err and ".fif" in err and ".vhdr" in err
    other = tmp_path / "notes.xyz"
    other.write_text("hello")
    err = error_of(cli, capsys, "--pipeline", pipeline, "--eeg", str(other), "--out", str(tmp_path), "--onset", "0")
    assert "as a .xyz recording" in err and "ImageNet-EEG .pth" in err


def test_sampling_rate_too_low_for_the_band(cli, capsys, pipeline, tmp_path):
    path = tmp_path / "slow_raw.fif"
    make_raw(sfreq=128.0).save(path, verbose="error")
    err = error_of(cli, capsys, "--pipeline", pipeline, "--eeg", str(path), "--out", str(tmp_path), "--onset", "1")
    assert "sampling rate 128 Hz is too low for the 5-95 Hz band" in err and "more than 190 Hz" in err


def test_onset_beyond_the_recording(cli, capsys, pipeline, tmp_path):
    path = tmp_path / "rec_raw.fif"
    make_raw(seconds=4.0).save(path, verbose="error")
    err = error_of(cli, capsys, "--pipeline", pipeline, "--eeg", str(path), "--out", str(tmp_path), "--onset", "3.9")
    assert "onset 3.900 s is beyond the recording" in err and "between 0 and 3.560 s" in err
    err = error_of(cli, capsys, "--pipeline", pipeline, "--eeg", str(path), "--out", str(tmp_path))
    assert "--onset" in err and "--events" in err


def test_incomplete_pipeline_folder(cli, capsys, pipeline, tmp_path):
    broken = tmp_path / "pipeline"
    shutil.copytree(pipeline, broken)
    shutil.rmtree(broken / "vae")
    path = tmp_path / "rec_raw.fif"
    make_raw().save(path, verbose="error")
    err = error_of(cli, capsys, "--pipeline", str(broken), "--eeg", str(path), "--out", str(tmp_path / "o"), "--onset", "1")
    assert "incomplete: missing vae" in err


def test_fetch_eval_downloads_each_file_once_and_prints_the_overrides(cli, capsys, tmp_path, monkeypatch):
    import torch

    calls = []

    def fake_download(url, dst, hash_prefix=None, progress=True):  # no network in tests
        calls.append((url, hash_prefix))
        with open(dst, "wb") as f:
            f.write(b"weights")

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    assert cli("weights", "fetch-eval", "--out", str(tmp_path)) == 0
    out = capsys.readouterr().out
    assert f"--model.init_args.lpips.weights_path={tmp_path / 'alexnet-owt-7be5be79.pth'}" in out
    from dreamdiffusion.models.eval_weights import EVAL_WEIGHTS

    assert (EVAL_WEIGHTS["classifier"], "80465313") in calls and len(calls) == 3
    assert cli("weights", "fetch-eval", "--out", str(tmp_path)) == 0 and len(calls) == 3  # present: not fetched again


def error_line(cli, capsys, *args) -> str:
    assert cli("generate", *args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err, err
    return err


def test_zero_batch_size_and_an_absent_gpu_are_one_line_errors(cli, capsys, pipeline, tmp_path):
    import torch

    args = ["--pipeline", pipeline, "--eeg", str(tmp_path / "x.pth"), "--out", str(tmp_path), "--index", "0"]
    assert error_line(cli, capsys, *args, "--batch-size", "0") == "error: --batch-size must be >= 1, got 0\n"
    assert "--steps must be >= 1" in error_line(cli, capsys, *args, "--steps", "0")
    assert "not a device PyTorch knows" in error_line(cli, capsys, *args, "--device", "gpu0")
    if not torch.cuda.is_available():
        assert "PyTorch sees no CUDA GPU on this machine; use --device cpu" in error_line(cli, capsys, *args, "--device", "cuda")


def test_a_nan_trial_by_index_is_named_with_its_subject(cli, capsys, pipeline, tmp_path):
    import torch

    from dreamdiffusion.data.synthetic import write_synthetic_imagenet_eeg

    write_synthetic_imagenet_eeg(tmp_path / "data", classes=2, images_per_class=3, subjects=1, seed=0)
    eeg = tmp_path / "data" / "eeg_5_95_std.pth"
    content = torch.load(eeg, weights_only=True)
    content["dataset"][2]["eeg"].fill_(float("nan"))
    torch.save(content, eeg)
    err = error_line(cli, capsys, "--pipeline", pipeline, "--eeg", str(eeg), "--out", str(tmp_path / "o"), "--index", "2")
    assert f"{eeg}: trial 2 (subject 1) holds NaN or Inf in samples 20..460; choose another --index" in err


def test_nan_elsewhere_in_a_recording_leaves_other_windows_usable(cli, capsys, pipeline, tmp_path):
    raw = make_raw()
    raw._data[:, int(3.0 * raw.info["sfreq"])] = np.nan  # one missing sample at 3.0 s
    path = tmp_path / "gap_raw.fif"
    raw.save(path, verbose="error")
    out = tmp_path / "out"
    assert cli("generate", "--pipeline", pipeline, "--eeg", str(path), "--out", str(out), "--onset", "0.5", "--steps", "2") == 0
    err = error_line(cli, capsys, "--pipeline", pipeline, "--eeg", str(path), "--out", str(out), "--onset", "2.8")
    assert f"{path}: the 0.44 s window at 2.800 s holds NaN or Inf samples" in err and "choose another --onset" in err


def test_progress_on_a_terminal_counts_images_and_quiet_silences_it(cli, pipeline, tmp_path, capsys, monkeypatch):
    import sys

    path = tmp_path / "rec_raw.fif"
    make_raw().save(path, verbose="error")
    capsys.readouterr()
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)  # capsys's stderr, as a user's terminal
    args = ["generate", "--pipeline", pipeline, "--eeg", str(path), "--steps", "3", "--batch-size", "1"]
    assert cli(*args, "--onset", "0.5", "1.0", "--out", str(tmp_path / "a")) == 0
    err = capsys.readouterr().err
    assert "generate" in err and "2/2" in err  # 2 windows x 1 sample
    # the sampler's steps of a batch (the pipeline's own bar, total 3); it clears itself when done, so which count
    # was drawn last depends on tqdm's refresh interval
    assert re.search(r"\b[0-3]/3 \[", err), err
    assert cli(*args, "--onset", "0.5", "--out", str(tmp_path / "b"), "--quiet") == 0
    assert "%|" not in capsys.readouterr().err  # neither ours, nor the pipeline's steps, nor diffusers' loading bar
