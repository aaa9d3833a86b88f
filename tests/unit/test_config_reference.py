"""The config reference tables in docs/ are generated from the code and cannot drift (make docs-check)."""

import shutil

import pytest


@pytest.fixture
def config_reference(script):
    return script("config_reference")


def test_the_repository_tables_are_current(config_reference):
    assert config_reference.main(["--check"]) == 0


def test_a_stale_table_fails_the_check_and_is_rewritten(config_reference, repo, tmp_path, capsys):
    page = tmp_path / "stage1.md"
    shutil.copy(repo / "docs" / "stage1-pretrain.md", page)
    text = page.read_text()
    assert "`model.init_args.mask_ratio` | `0.75`" in text
    page.write_text(text.replace("`model.init_args.mask_ratio` | `0.75`", "`model.init_args.mask_ratio` | `0.1`"))
    assert config_reference.main(["--check", str(page)]) == 1
    assert "stale config reference" in capsys.readouterr().err
    assert config_reference.main([str(page)]) == 0
    assert page.read_text() == text


def test_the_command_list_in_the_docs_is_the_help_and_cannot_go_stale(config_reference, repo, tmp_path, capsys):
    from dreamdiffusion.commands import overview

    page = tmp_path / "quickstart.md"
    shutil.copy(repo / "docs" / "quickstart.md", page)
    text = page.read_text()
    assert overview() in text
    page.write_text(text.replace("  data moabb-build ", "  data moabb-make  "))
    assert config_reference.main(["--check", str(page)]) == 1
    assert config_reference.main([str(page)]) == 0
    assert page.read_text() == text


def test_every_argument_must_be_documented(config_reference):
    class Undocumented:
        """A module.

        Parameters
        ----------
        alpha
            Documented.
        """

        def __init__(self, alpha: int = 1, beta: int = 2) -> None: ...

    assert config_reference.parameter_docs(Undocumented) == [(["alpha"], "Documented.")]
    with pytest.raises(ValueError, match=r"\['beta'\] are not described"):
        config_reference.class_table(Undocumented, "model", "configs/x.yaml", {})


def test_grouped_names_share_one_description(config_reference):
    from dreamdiffusion.stages.pretrain import MSMPretrainModule

    entries = dict((tuple(names), text) for names, text in config_reference.parameter_docs(MSMPretrainModule))
    assert ("lr", "weight_decay", "betas") in entries
