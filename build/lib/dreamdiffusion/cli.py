"""The ``dreamdiffusion`` command.

* ``dreamdiffusion fit|validate|test|predict -c CONFIG [--key=value ...]`` — a stage, through
  LightningCLI (any LightningModule / LightningDataModule by ``class_path``).
* ``dreamdiffusion data ...``, ``weights ...`` and ``generate ...`` — plain commands that are not training,
  each in its own module (:mod:`dreamdiffusion.commands`).

Stage configs share a top-level ``run_dir``; a stage writes under ``<run_dir>/<stage>/`` through relative
interpolations in its YAML (``${..run_dir}``), so ``--run_dir=DIR`` after ``-c`` moves everything.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities import rank_zero_info

from dreamdiffusion.rng_state import RNGStateCallback

TRAINING = {"fit", "validate", "test", "predict"}
PLAIN = {"data", "weights", "generate"}


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
            help="fit: continue from <trainer.default_root_dir>/checkpoints/last.ckpt when it exists.",
        )
        # One checkpoint callback per stage, in <stage folder>/checkpoints, so a re-run finds last.ckpt.
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults({"checkpoint.save_last": True})
        parser.link_arguments(
            "trainer.default_root_dir", "checkpoint.dirpath", compute_fn=lambda root: os.path.join(root or ".", "checkpoints")
        )

    def before_fit(self) -> None:
        config = self.config[self.subcommand]
        if not config.get("resume") or config.get("ckpt_path"):
            return
        last = Path(config["checkpoint"]["dirpath"]) / "last.ckpt"
        if last.is_file():
            rank_zero_info(f"resuming from {last} (set --resume=false to start over)")
            self.config_init[self.subcommand]["ckpt_path"] = str(last)


def run_stage(args: list[str] | None = None) -> DreamDiffusionCLI:
    """Run a LightningCLI subcommand (``fit``, ``validate``, ``test``, ``predict``) with ``args`` (default: sys.argv)."""
    return DreamDiffusionCLI(
        model_class=None,
        datamodule_class=None,
        subclass_mode_model=True,
        subclass_mode_data=True,
        parser_kwargs={"parser_mode": "omegaconf+"},
        save_config_kwargs={"overwrite": True},
        trainer_defaults={"callbacks": [RNGStateCallback()]},
        args=args,
    )


def main(argv: list[str] | None = None) -> int:
    from_command_line = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in PLAIN:
        from dreamdiffusion import commands

        return commands.main(argv)
    if not argv or argv[0] in {"-h", "--help"} or argv[0] in TRAINING:
        run_stage(None if from_command_line else argv)
        return 0
    print(
        f"dreamdiffusion: unknown command {argv[0]!r}; use one of fit, validate, test, predict "
        "(training stages, e.g. `dreamdiffusion fit -c configs/pretrain.yaml`), data, weights or generate",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main())
