"""The ``dreamdiffusion`` command.

``dreamdiffusion --help`` lists every command with one line each (:func:`dreamdiffusion.commands.overview`):

* ``dreamdiffusion fit|validate|test|predict -c CONFIG [--key=value ...]`` — a stage, through
  LightningCLI (any LightningModule / LightningDataModule by ``class_path``); ``dreamdiffusion fit --help``
  lists every key.
* ``dreamdiffusion data ...``, ``weights ...`` and ``generate ...`` — plain commands that are not training,
  each in its own module (:mod:`dreamdiffusion.commands`). ``data moabb-build`` reads its stage config with
  the parser of ``fit`` (:func:`parse_stage`).

Stage configs share a top-level ``run_dir``; a stage writes under ``<run_dir>/<stage>/`` through relative
interpolations in its YAML (``${..run_dir}``), so ``--run_dir=DIR`` after ``-c`` moves everything.

Before a stage writes, it locks its folder (:mod:`dreamdiffusion.run_lock`) and removes temporaries that
killed runs left there. ``fit`` records its settings in every checkpoint and continues only a checkpoint
of the same settings (:mod:`dreamdiffusion.resume_check`): Lightning's ``--ckpt_path=FILE`` resumes from
a given checkpoint, ``--ckpt_path=last`` from the stage's newest ``checkpoints/last*.ckpt``, and
``resume: true`` (every stage config) is ``--ckpt_path=last`` when no ``ckpt_path`` is given.

A mistake of the user (a bad file, value or config, a locked folder, a full disk) ends in one line,
``error: <message>``, and exit status 2; other exceptions keep their traceback
(:mod:`dreamdiffusion.errors`; ``DREAMDIFFUSION_DEBUG=1`` shows every traceback).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

from jsonargparse import Namespace
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from dreamdiffusion import __version__, commands, errors, run_lock
from dreamdiffusion.atomic import remove_stale_temporaries
from dreamdiffusion.resume_check import RecordSettings, check_resume, resolve_ckpt_path, stage_settings
from dreamdiffusion.rng_state import RNGStateCallback

TRAINING = set(commands.STAGES)
PLAIN = {"data", "weights", "generate"}
# Locks held by this process, released when the stage returns or fails (and by the OS if it is killed).
_HELD: list[run_lock.RunLock] = []


class DreamDiffusionCLI(LightningCLI):
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument(
            "--run_dir",
            type=str,
            default="runs/default",
            help="Folder shared by all stages: each writes <run_dir>/<stage>/ and reads the previous stage's folder.",
        )
        parser.add_argument(
            "--resume",
            type=bool,
            default=False,
            help="fit without --ckpt_path: true is --ckpt_path=last, the newest <trainer.default_root_dir>/checkpoints/"
            "last*.ckpt when there is one. Whichever checkpoint fit resumes from must have been trained with the same "
            "settings (only a larger max_epochs/max_steps may differ).",
        )
        # One checkpoint callback per stage, in <stage folder>/checkpoints, so a re-run finds last.ckpt.
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults({"checkpoint.save_last": True})
        parser.link_arguments(
            "trainer.default_root_dir", "checkpoint.dirpath", compute_fn=lambda root: os.path.join(root or ".", "checkpoints")
        )

    def _claim_stage_folder(self) -> None:
        """Lock the stage folder (rank 0 of the run only) and clear what killed runs left in it."""
        if rank_zero_only.rank != 0 or self.trainer.global_rank != 0:
            return
        folder = Path(self.trainer.default_root_dir)
        lock = run_lock.acquire(folder, log=rank_zero_info)
        _HELD.append(lock)
        for path in remove_stale_temporaries(folder, older_than=lock.created, depth=3):
            rank_zero_info(f"removed {path}, left by an interrupted write")

    def _parse_ckpt_path(self) -> None:
        # LightningCLI replaces the model's config by the hyper-parameters saved in a --ckpt_path checkpoint: a
        # --model.init_args.mask_ratio=0.5 given beside it would be dropped without a word, and the paths of a
        # moved run folder would point to the old one. fit checks the checkpoint's recorded settings against
        # this run's instead (before_fit) and refuses a difference; the other subcommands keep Lightning's way.
        if self.config.get("subcommand") != "fit":
            super()._parse_ckpt_path()

    def before_fit(self) -> None:
        self._claim_stage_folder()
        config = self.config[self.subcommand]
        settings = stage_settings(config.as_dict() if hasattr(config, "as_dict") else dict(config))
        self.trainer.callbacks.append(RecordSettings(settings))
        given = config.get("ckpt_path")
        requested = given if given is not None else ("last" if config.get("resume") else None)
        if requested is None:
            return
        checkpoint = resolve_ckpt_path(requested, Path(config["checkpoint"]["dirpath"]))
        if checkpoint is None:
            rank_zero_info(f"no last*.ckpt in {config['checkpoint']['dirpath']} yet: training from the start")
        else:
            rank_zero_info(check_resume(checkpoint, settings, given_by="ckpt_path" if given is not None else "resume"))
        # Lightning loads exactly the file that was checked
        self.config_init[self.subcommand]["ckpt_path"] = None if checkpoint is None else str(checkpoint)

    def before_validate(self) -> None:
        self._claim_stage_folder()

    def before_test(self) -> None:
        self._claim_stage_folder()

    def before_predict(self) -> None:
        self._claim_stage_folder()


def _cli_kwargs() -> dict:
    """How the ``dreamdiffusion`` stages build their LightningCLI (shared by :func:`run_stage` and :func:`parse_stage`)."""
    return dict(
        model_class=None,
        datamodule_class=None,
        subclass_mode_model=True,
        subclass_mode_data=True,
        # Parse errors are raised (not printed with the usage) so that main() can say them in one line.
        parser_kwargs={"parser_mode": "omegaconf+", "exit_on_error": False},
        save_config_kwargs={"overwrite": True},
        trainer_defaults={"callbacks": [RNGStateCallback()]},
    )


def run_stage(args: list[str] | None = None) -> DreamDiffusionCLI:
    """Run a LightningCLI subcommand (``fit``, ``validate``, ``test``, ``predict``) with ``args`` (default: sys.argv)."""
    try:
        return DreamDiffusionCLI(**_cli_kwargs(), args=args)
    finally:
        while _HELD:
            _HELD.pop().release()


class _Parsed(Exception):
    """Carries the parsed config out of :class:`_ParseOnly` (nothing after parsing may run)."""

    def __init__(self, config: Namespace) -> None:
        super().__init__("parsed")
        self.config = config


class _ParseOnly(DreamDiffusionCLI):
    """The stages' own parser, stopped once the command line is parsed: no seed, no model, no trainer."""

    def parse_arguments(self, parser: LightningArgumentParser, args) -> None:
        raise _Parsed(parser.parse_args(args))


def parse_stage(args: list[str], subcommand: str = "fit") -> Namespace:
    """The config ``dreamdiffusion <subcommand> ARGS`` would run with, parsed by the very same parser.

    ``args``: ``-c CONFIG`` (several merge, in order), ``--run_dir=DIR``, any ``--key=value``; interpolations
    such as ``${..run_dir}`` are resolved after every argument is applied. Returns the subcommand's config
    (``config.data.class_path``, ``config.data.init_args``, ...) with every default filled in; nothing is built.
    A bad key or value raises the parser's ``ArgumentError`` (:func:`main` says it in one line).
    """
    try:
        _ParseOnly(**_cli_kwargs(), args=[subcommand, *args])
    except _Parsed as parsed:
        return parsed.config[subcommand]
    raise AssertionError("LightningCLI returned without parsing its arguments")


def config_files(argv: list[str]) -> list[str]:
    """The ``-c``/``--config`` files of a stage command line, in order."""
    files = []
    for i, arg in enumerate(argv):
        if arg in ("-c", "--config") and i + 1 < len(argv):
            files.append(argv[i + 1])
        elif arg.startswith("--config="):
            files.append(arg.split("=", 1)[1])
    return files


# Lines of a jsonargparse message that repeat the input or list the alternatives nobody asked for.
_NOISE = re.compile(r"^(Given value|Subtypes:|Errors:|- Expected a <class 'NoneType'>|Does not validate against any of the Union)")


def config_error_message(error: Exception, argv: list[str]) -> str:
    """One line for a config or argument the parser refused, naming the config file(s) it came from."""
    import yaml

    files = config_files(argv)
    for name in files:
        try:
            yaml.safe_load(Path(name).read_text())
        except OSError as e:
            return f"config file {name} cannot be read ({e.strerror or e})"
        except yaml.YAMLError as e:
            where = getattr(e, "problem_mark", None)
            at = f" at line {where.line + 1}, column {where.column + 1}" if where is not None else ""
            problem = getattr(e, "problem", None) or errors.message(e)
            return f"{name}: not valid YAML{at}: {problem}; fix the file"
    lines = [line.strip() for line in str(error).splitlines()]
    text = " ".join(line.lstrip("- ") for line in lines if line and not _NOISE.match(line))
    quoted = set(re.findall(r"'([A-Za-z_][\w.]*)'", text)) | set(re.findall(r'"([A-Za-z_][\w.]*)"', text))
    holders = [n for n in files if any(re.search(rf"\b{re.escape(q.rsplit('.', 1)[-1])}\b", Path(n).read_text()) for q in quoted)]
    if "unrecognized arguments" in text:
        where = " (on the command line)"
    else:
        where = f" (in {', '.join(holders)})" if holders else (f" (configs: {', '.join(files)})" if files else "")
    command = argv[0] if argv and argv[0] in TRAINING else "fit"
    return f"{text}{where}; `dreamdiffusion {command} --help` lists the options"


def _main(argv: list[str], from_command_line: bool) -> int:
    if not argv or argv[0] in {"-h", "--help"}:
        print(commands.overview(), end="")
        return 0 if argv else 2  # a bare `dreamdiffusion` is a command line without its command
    if argv[0] == "--version":
        print(f"dreamdiffusion {__version__}")
        return 0
    if argv[0] in TRAINING:
        run_stage(None if from_command_line else argv)
        return 0
    if argv[0] in PLAIN:
        return commands.main(argv)
    raise errors.UserError(
        f"unknown command {argv[0]!r}; use one of {', '.join(commands.STAGES)} (training stages, e.g. "
        f"`dreamdiffusion fit -c configs/pretrain.yaml`), {', '.join(sorted(PLAIN))}; `dreamdiffusion --help` lists them all"
    )


def main(argv: list[str] | None = None) -> int:
    from_command_line = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return _main(argv, from_command_line)
    except argparse.ArgumentError as error:
        if errors.debug():
            raise
        print(f"error: {config_error_message(error, argv)}", file=sys.stderr)
        return 2
    except Exception as error:  # a user's mistake is one line; anything else is re-raised whole
        cause = errors.user_error(error)
        if cause is None or errors.debug():
            raise
        print(f"error: {errors.message(cause)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
