"""The selection rule on MOABB's own metadata, offline, and the commands that print and pin it."""

import json

import pytest
import yaml

from dreamdiffusion.data.moabb_catalog import dataset_info, load_pinned, select_datasets


@pytest.fixture(scope="module")
def rule_30():
    return select_datasets(30)


def test_the_rule_keeps_datasets_with_more_than_30_eeg_channels(rule_30):
    selected, undetermined = rule_30
    by_name = {d.name: d for d in selected}
    # channel counts as MOABB's metadata states them (EEG only: EOG/EMG are not counted)
    assert by_name["Schirrmeister2017"].eeg_channels == 128 and by_name["Schirrmeister2017"].sfreq == 500
    assert by_name["PhysionetMI"].eeg_channels == 64 and by_name["PhysionetMI"].subjects == 109
    assert "BNCI2014_001" not in by_name  # 22 EEG + 3 EOG
    assert "BNCI2015_004" not in by_name  # exactly 30: "more than 30" excludes it
    assert "FakeDataset" not in by_name
    assert all(d.eeg_channels > 30 for d in selected)
    assert [d.name for d in selected] == sorted(by_name)
    assert "ErpCore2021_P3" in undetermined  # no metadata offline: reported, never guessed


def test_threshold_include_and_exclude(rule_30):
    selected_29, _ = select_datasets(29, exclude=["PhysionetMI"])
    names_29 = {d.name for d in selected_29}
    assert "BNCI2015_004" in names_29 and "PhysionetMI" not in names_29
    included, _ = select_datasets(30, include=["BNCI2014_001"])
    assert "BNCI2014_001" in {d.name for d in included}
    with pytest.raises(ValueError, match="MOABB does not have.*NoSuchDataset"):
        select_datasets(30, exclude=["NoSuchDataset"])


def test_dataset_info_reads_metadata_without_downloading(tmp_path, monkeypatch):
    monkeypatch.setenv("MNE_DATA", str(tmp_path))
    info = dataset_info("BNCI2014_001")
    assert (info.eeg_channels, info.sfreq, info.subjects, info.paradigm) == (22, 250.0, 9, "imagery")
    assert not any(tmp_path.iterdir())


def test_the_pinned_paper_list_is_what_the_rule_selects(repo, rule_30):
    import moabb

    pinned = yaml.safe_load((repo / "configs/data/moabb_paper.yaml").read_text())
    assert pinned["min_channels"] == 30
    if str(pinned["moabb_version"]) != moabb.__version__:
        pytest.skip(f"list pinned on MOABB {pinned['moabb_version']}, installed {moabb.__version__}: "
                    "`dreamdiffusion data moabb-list --check configs/data/moabb_paper.yaml` shows the drift")
    assert load_pinned(repo / "configs/data/moabb_paper.yaml") == [d.name for d in rule_30[0]]


def test_moabb_list_json_has_the_documented_keys(cli, capsys):
    assert cli("data", "moabb-list", "--min-channels", "100", "--json") == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows and all(set(r) == {"name", "paradigm", "eeg_channels", "sfreq", "subjects"} for r in rows)
    assert all(r["eeg_channels"] > 100 for r in rows)
    assert {"Schirrmeister2017", "MAMEM1"} <= {r["name"] for r in rows}


def test_moabb_list_writes_and_checks_a_pinned_list(cli, capsys, tmp_path):
    path = tmp_path / "pinned.yaml"
    assert cli("data", "moabb-list", "--min-channels", "100", "--write", str(path)) == 0
    assert "Schirrmeister2017" in capsys.readouterr().out  # the table is printed too
    assert "MAMEM1" in load_pinned(path)
    assert cli("data", "moabb-list", "--min-channels", "100", "--check", str(path)) == 0
    assert cli("data", "moabb-list", "--min-channels", "120", "--check", str(path)) == 1
    assert "drops" in capsys.readouterr().out


def test_a_malformed_pinned_list_is_refused(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("datasets: PhysionetMI\n")
    with pytest.raises(ValueError, match="bad.yaml: expected a mapping with a `datasets:` list"):
        load_pinned(path)
