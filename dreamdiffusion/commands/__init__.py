"""Plain subcommands of ``dreamdiffusion`` that are not training: ``data ...``, ``weights ...``, ``generate``.

Each group of subcommands lives in its own module with a ``register(subparsers)`` function that adds
its parsers and sets ``func`` (called with the parsed namespace, returns the exit status). Every command
also takes ``--quiet``: no progress bars (:mod:`dreamdiffusion.progress`).
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Iterator

from dreamdiffusion import progress

# ``dreamdiffusion data <name>`` subcommands, by module (each registers its own names).
DATA_MODULES: list[str] = ["moabb", "imagenet_eeg", "things_eeg2"]
# Top-level commands besides ``data``, by module: ``weights`` (and ``generate``: EEG files in, pictures out).
TOP_MODULES: list[str] = ["weights", "generate"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dreamdiffusion", description="dreamdiffusion plain commands")
    commands = parser.add_subparsers(dest="command", required=True)
    data = commands.add_parser("data", help="build, fetch and check datasets")
    data_commands = data.add_subparsers(dest="data_command", required=True)
    for name in DATA_MODULES:
        importlib.import_module(f"dreamdiffusion.commands.{name}").register(data_commands)
    for name in TOP_MODULES:
        importlib.import_module(f"dreamdiffusion.commands.{name}").register(commands)
    for command in _commands(parser):
        command.add_argument("--quiet", action="store_true", help="no progress bars (they are off anyway when stderr is not a terminal)")
    return parser


def _commands(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """The parsers that run something (those without subcommands of their own), each once."""
    groups = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not groups:
        yield parser
    for group in groups:
        for sub in {id(p): p for p in group.choices.values()}.values():  # aliases share a parser
            yield from _commands(sub)


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    with progress.quiet(args.quiet):
        return int(args.func(args) or 0)
