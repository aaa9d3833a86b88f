"""The ``dreamdiffusion`` command tree, and the plain subcommands that are not training.

* The training stages (``fit``, ``validate``, ``test``, ``predict``) are LightningCLI's; :data:`STAGES` gives
  each its line in the overview, and :mod:`dreamdiffusion.cli` runs them.
* ``data ...``, ``weights ...`` and ``generate`` are plain commands: each group lives in its own module with a
  ``register(subparsers)`` function that adds its parsers and sets ``func`` (called with the parsed namespace,
  returns the exit status). A command that reads a stage config sets ``takes_stage_args=True``: the arguments
  its own parser does not know (``-c CONFIG``, ``--run_dir=DIR``, ``--key=value``) reach it, in order, as
  ``args.stage_args``. Every command also takes ``--quiet``: no progress bars (:mod:`dreamdiffusion.progress`).

:func:`overview` is ``dreamdiffusion --help``: every command and sub-command, one line each, walked from
the parser that runs them, so no command can be missing from it.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Iterator

from dreamdiffusion import progress
from dreamdiffusion.errors import UserError

PROG = "dreamdiffusion"
# LightningCLI's subcommands, with the line each gets in the overview (their options: `dreamdiffusion fit --help`).
STAGES: dict[str, str] = {
    "fit": "train a stage: 1 (configs/pretrain.yaml) or 2 (configs/finetune.yaml); resumes from its last checkpoint",
    "validate": "one validation epoch of a stage config (a trained checkpoint with --ckpt_path=FILE)",
    "test": "stage 3, evaluation: generate for the test split and score it (configs/eval.yaml) -> metrics.json",
    "predict": "stage 3 without scoring: images for the test split (configs/eval.yaml) -> predictions/",
}
# ``dreamdiffusion data <name>`` subcommands, by module (each registers its own names).
DATA_MODULES: list[str] = ["moabb", "imagenet_eeg", "things_eeg2"]
# Top-level commands besides ``data``, by module: ``weights`` (and ``generate``: EEG files in, pictures out).
TOP_MODULES: list[str] = ["weights", "generate"]


class CommandParser(argparse.ArgumentParser):
    """An argparse parser whose usage errors are one line (:class:`~dreamdiffusion.errors.UserError`)."""

    def error(self, message: str):
        raise UserError(f"{self.prog}: {message}; `{self.prog} --help` lists the options")


def build_parser() -> CommandParser:
    """The parser of the plain commands (the training stages are dispatched before it, to LightningCLI)."""
    parser = CommandParser(prog=PROG, description="dreamdiffusion plain commands")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    data = commands.add_parser("data", help="build, fetch and check datasets")
    data_commands = data.add_subparsers(dest="data_command", required=True, metavar="COMMAND")
    for name in DATA_MODULES:
        importlib.import_module(f"dreamdiffusion.commands.{name}").register(data_commands)
    for name in TOP_MODULES:
        importlib.import_module(f"dreamdiffusion.commands.{name}").register(commands)
    for _, leaf, _ in commands_of(parser):
        leaf.add_argument("--quiet", action="store_true", help="no progress bars (they are off anyway when stderr is not a terminal)")
        leaf.set_defaults(command_parser=leaf)
    return parser


def _subcommands(parser: argparse.ArgumentParser) -> argparse._SubParsersAction | None:
    return next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)


def commands_of(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[tuple[str, argparse.ArgumentParser, str]]:
    """``(command line, parser, one-line help)`` of every runnable command under ``parser``, in order
    (``"data moabb-build"``; a group such as ``data`` is not itself runnable and is left out; an alias is not
    listed again)."""
    action = _subcommands(parser)
    if action is None:
        return
    helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
    seen: set[int] = set()
    for name, sub in action.choices.items():
        if id(sub) in seen:  # an alias shares the parser of its command
            continue
        seen.add(id(sub))
        if _subcommands(sub) is None:
            yield " ".join((*path, name)), sub, helps.get(name, "")
        else:
            yield from commands_of(sub, (*path, name))


def groups_of(parser: argparse.ArgumentParser) -> dict[str, str]:
    """``{top-level command: help}`` of the plain parser (``data``, ``weights``, ``generate``)."""
    action = _subcommands(parser)
    return {choice.dest: choice.help or "" for choice in action._choices_actions}


def overview(parser: argparse.ArgumentParser | None = None) -> str:
    """``dreamdiffusion --help``: every command with one line each, grouped; then the options."""
    parser = parser or build_parser()
    rows: list[tuple[str, str, str]] = [("training stages", name, line) for name, line in STAGES.items()]
    groups = groups_of(parser)
    for command, _, line in commands_of(parser):
        top = command.split(" ", 1)[0]
        rows.append((top if " " in command else "other", command, line))
    width = max(len(command) for _, command, _ in rows) + 2
    out = [
        f"usage: {PROG} COMMAND [options]     ({PROG} COMMAND --help: its options)",
        "",
        "EEG to images the DreamDiffusion way (Bai et al., 2023): stage 1 pre-trains an EEG encoder on unpaired",
        "EEG, stage 2 fine-tunes Stable Diffusion on EEG-image pairs, stage 3 generates and scores.",
    ]
    titles = {
        "training stages": "training stages (Lightning's LightningCLI: COMMAND -c CONFIG [--key=value ...]; "
        "fit --help lists every key)",
        "other": "pictures",
    }
    section = None
    for group, command, line in rows:
        if group != section:
            section = group
            out += ["", titles.get(group, f"{group}: {groups.get(group, '')}")]
        out.append(f"  {command:<{width}}{line}")
    out += [
        "",
        "options",
        f"  {'-h, --help':<{width}}this list",
        f"  {'--version':<{width}}print the version and exit",
    ]
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> int:
    """Run a plain command (``data ...``, ``weights ...``, ``generate``); returns its exit status."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if getattr(args, "takes_stage_args", False):
        args.stage_args = extra
    elif extra:
        args.command_parser.error(f"unrecognized arguments: {' '.join(extra)}")
    with progress.quiet(args.quiet):
        return int(args.func(args) or 0)
