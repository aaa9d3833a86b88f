"""One command tree: `dreamdiffusion --help` lists every command with a line each; each command helps itself."""

import pytest

from dreamdiffusion import __version__
from dreamdiffusion.commands import STAGES, build_parser, commands_of, groups_of

# The commands a user looks for first; the list derived from the parser below could shrink with it.
KEY_COMMANDS = [
    "fit", "validate", "test", "predict", "generate",
    "data moabb-list", "data moabb-download", "data moabb-build", "data check-imagenet-eeg", "data synth-imagenet-eeg",
    "data check-things-eeg2", "data synth-things-eeg2",
    "weights tiny", "weights demo", "weights fetch", "weights fetch-eval", "weights import-authors", "weights fetch-suite",
]


def command_lines(text: str) -> dict[str, str]:
    """``{command: its line}`` of an overview: an indented line is a command, its help after two spaces or more."""
    rows = {}
    for line in text.splitlines():
        if line.startswith("  ") and not line.startswith("   "):
            name, _, help_text = line.strip().partition("  ")
            rows[name] = help_text.strip()
    return rows


def test_help_lists_every_command_of_the_tree_with_its_line(cli, capsys):
    assert cli("--help") == 0
    rows = command_lines(capsys.readouterr().out)
    derived = [*STAGES, *(command for command, _, _ in commands_of(build_parser()))]
    assert set(KEY_COMMANDS) <= set(derived)
    for command in derived:
        assert rows.get(command), f"{command!r} has no line in `dreamdiffusion --help`"
    assert rows["data moabb-build"].startswith("preprocess MOABB recordings")
    assert rows["generate"].startswith("EEG file in, images out")
    assert "-h, --help" in rows and "--version" in rows


def test_short_help_and_no_arguments_print_the_same_list(cli, capsys):
    assert cli("--help") == 0
    full = capsys.readouterr().out
    assert cli("-h") == 0
    assert capsys.readouterr().out == full
    assert cli() == 2  # the command is missing: the list, and a status a script notices
    assert capsys.readouterr().out == full


def test_the_tree_knows_lightnings_subcommands_and_the_plain_groups():
    from lightning.pytorch.cli import LightningCLI

    from dreamdiffusion.cli import PLAIN

    assert set(STAGES) == set(LightningCLI.subcommands())
    assert set(groups_of(build_parser())) == PLAIN


def test_version(cli, capsys):
    assert cli("--version") == 0
    assert capsys.readouterr().out == f"dreamdiffusion {__version__}\n"


def test_fit_help_is_lightnings_full_help(cli, capsys):
    with pytest.raises(SystemExit) as done:
        cli("fit", "--help")
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "--trainer.max_epochs" in out and "--ckpt_path" in out and "--run_dir" in out and "--resume" in out


def test_data_help_lists_the_data_commands(cli, capsys):
    with pytest.raises(SystemExit) as done:
        cli("data", "--help")
    assert done.value.code == 0
    out = capsys.readouterr().out
    for command in (c for c in KEY_COMMANDS if c.startswith("data ")):
        assert command.split(" ", 1)[1] in out


def test_usage_mistakes_are_one_line_naming_the_command(cli, capsys):
    assert cli("weights", "tiny") == 2
    assert capsys.readouterr().err == (
        "error: dreamdiffusion weights tiny: the following arguments are required: --out; "
        "`dreamdiffusion weights tiny --help` lists the options\n"
    )
    assert cli("data", "synth-imagenet-eeg", "--out", "x", "--colour", "red") == 2
    assert "unrecognized arguments: --colour red" in capsys.readouterr().err
    assert cli("data") == 2
    assert "`dreamdiffusion data --help`" in capsys.readouterr().err
    assert cli("train") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown command 'train'; use one of fit, validate, test, predict") and "--help" in err
