"""`dreamdiffusion data moabb-build` and `moabb-download` as a user runs them."""

import json

import yaml

import dreamdiffusion.data.moabb_sources as moabb_sources

FAKE = {"n_subjects": 2, "n_sessions": 1, "n_runs": 1, "sfreq": 250, "duration": 5, "seed": 0, "channels": ["C3", "Cz", "C4"]}


def stage1_config(path, run_dir="runs/nowhere", **init_args):
    """A stage-1 config as a user writes one: every path follows `run_dir` through relative interpolations."""
    path.write_text(yaml.safe_dump({
        "run_dir": str(run_dir),
        "trainer": {"default_root_dir": "${..run_dir}/pretrain", "max_epochs": 1},
        "model": {"class_path": "dreamdiffusion.stages.pretrain.MSMPretrainModule", "init_args": {"preset": "tiny"}},
        "data": {"class_path": "dreamdiffusion.data.moabb.MOABBDataModule", "init_args": {
            "datasets": ["FakeDataset"], "dataset_kwargs": {"FakeDataset": FAKE},
            "cache_dir": "${...run_dir}/moabb_cache", **init_args,
        }},
    }))
    return path


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err[-3000:]
    return lines[0]


def test_moabb_build_from_a_stage_config_then_reuses_everything(cli, capsys, tmp_path):
    config = stage1_config(tmp_path / "pretrain.yaml")
    cache = tmp_path / "cache"
    assert cli("data", "moabb-build", "-c", str(config), "--cache-dir", str(cache)) == 0
    assert "22 windows from 2 recordings" in capsys.readouterr().out  # 2 subjects x 1 run x 11 windows of 0.44 s
    assert cli("data", "moabb-build", "-c", str(config), "--cache-dir", str(cache)) == 0
    assert "2 subjects reused, 0 built" in capsys.readouterr().out
    assert len(list(cache.glob("FakeDataset-*/sub-*/*.npy"))) == 2


def test_interpolations_merged_configs_and_run_dir_reach_the_cache_as_in_fit(cli, capsys, tmp_path):
    from dreamdiffusion.cli import parse_stage

    config = stage1_config(tmp_path / "pretrain.yaml")
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(yaml.safe_dump({"run_dir": str(tmp_path / "from_overlay")}))
    # a second -c merges into the first (its run_dir moves every interpolated path), as for fit
    assert cli("data", "moabb-build", "-c", str(config), "-c", str(overlay)) == 0
    assert f"in {tmp_path / 'from_overlay' / 'moabb_cache'} " in capsys.readouterr().out
    # --run_dir after the configs wins, and the cache is where `fit` with the same arguments will look
    args = ["-c", str(config), "-c", str(overlay), f"--run_dir={tmp_path / 'from_cli'}"]
    assert cli("data", "moabb-build", *args, "--data.init_args.window_seconds=1.0") == 0
    assert f"10 windows from 2 recordings in {tmp_path / 'from_cli' / 'moabb_cache'} " in capsys.readouterr().out
    fit = parse_stage([*args, "--data.init_args.window_seconds=1.0"])
    assert fit.data.init_args.cache_dir == str(tmp_path / "from_cli" / "moabb_cache")
    assert fit.trainer.default_root_dir == str(tmp_path / "from_cli" / "pretrain")
    assert list((tmp_path / "from_cli" / "moabb_cache").glob("manifest-*.json"))


def test_the_demo_config_builds_under_the_run_dir_it_is_given(cli, capsys, repo, tmp_path):
    corpus = {"dreamdiffusion.data.synthetic_corpus.SyntheticEEGCorpus": {"subjects": 2, "seconds": 10}}
    assert cli("data", "moabb-build", "-c", str(repo / "configs/demo/pretrain.yaml"), f"--run_dir={tmp_path}",
               f"--data.init_args.dataset_kwargs={json.dumps(corpus)}") == 0
    assert f"in {tmp_path / 'moabb_cache'} (0 subjects reused, 2 built" in capsys.readouterr().out


def test_a_bad_key_is_one_line_naming_the_config_file(cli, capsys, tmp_path):
    typo = stage1_config(tmp_path / "typo.yaml", cache_dri="x")
    assert cli("data", "moabb-build", "-c", str(typo)) == 2
    line = one_error_line(capsys)
    assert "'cache_dri' is not accepted" in line and str(typo) in line


def test_a_config_is_required_and_must_name_a_moabb_data_module(cli, capsys, repo, tmp_path):
    assert cli("data", "moabb-build", "--cache-dir", str(tmp_path)) == 2
    assert "reads a stage-1 config: pass -c configs/pretrain.yaml" in one_error_line(capsys)
    finetune = str(repo / "configs/finetune.yaml")
    assert cli("data", "moabb-build", "-c", finetune) == 2
    line = one_error_line(capsys)
    assert f"{finetune}: data.class_path is dreamdiffusion.data.imagenet_eeg.ImageNetEEGDataModule" in line
    assert not any(tmp_path.iterdir())


def test_moabb_download_reports_failures_and_exits_1(cli, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("MNE_DATA", str(tmp_path / "mne"))

    class Broken:
        subject_list = [1]

        def download(self, subject_list, **kwargs):
            raise RuntimeError("You must accept licence term to download this dataset")

    monkeypatch.setattr(moabb_sources, "make_dataset", lambda name, kwargs=None: Broken())
    assert cli("data", "moabb-download", "--datasets", "Stieger2021") == 1
    err = capsys.readouterr().err
    assert f"FAILED Stieger2021 subject 1 (cache {tmp_path / 'mne'})" in err and "--accept-licences" in err
