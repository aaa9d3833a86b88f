"""`dreamdiffusion data moabb-build` and `moabb-download` as a user runs them."""

import yaml

import dreamdiffusion.data.moabb as moabb_module


def test_moabb_build_from_a_stage_config_then_reuses_everything(cli, capsys, tmp_path):
    config = tmp_path / "pretrain.yaml"
    config.write_text(yaml.safe_dump({"data": {"init_args": {
        "datasets": ["FakeDataset"],
        "dataset_kwargs": {"FakeDataset": {"n_subjects": 3, "n_sessions": 1, "n_runs": 2, "sfreq": 250,
                                           "duration": 5, "seed": 0, "channels": ["C3", "Cz", "C4"]}},
    }}}))
    cache = tmp_path / "cache"
    assert cli("data", "moabb-build", "-c", str(config), "--cache-dir", str(cache)) == 0
    assert "66 windows from 6 recordings" in capsys.readouterr().out  # 3 subjects x 2 runs x 11 windows of 0.44 s
    assert cli("data", "moabb-build", "-c", str(config), "--cache-dir", str(cache)) == 0
    assert "3 subjects reused, 0 built" in capsys.readouterr().out
    assert len(list(cache.glob("FakeDataset-*/sub-*/*.npy"))) == 6


def test_moabb_build_refuses_an_unresolved_interpolation(cli, capsys, repo):
    assert cli("data", "moabb-build", "-c", str(repo / "configs/demo/pretrain.yaml")) == 2
    assert "pass it explicitly" in capsys.readouterr().err


def test_moabb_download_reports_failures_and_exits_1(cli, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("MNE_DATA", str(tmp_path / "mne"))

    class Broken:
        subject_list = [1]

        def download(self, subject_list, **kwargs):
            raise RuntimeError("You must accept licence term to download this dataset")

    monkeypatch.setattr(moabb_module, "make_dataset", lambda name, kwargs=None: Broken())
    assert cli("data", "moabb-download", "--datasets", "Stieger2021") == 1
    err = capsys.readouterr().err
    assert f"FAILED Stieger2021 subject 1 (cache {tmp_path / 'mne'})" in err and "--accept-licences" in err
