"""What a checkpoint was trained with, and whether a re-run may continue from it.

A stage's checkpoints record the settings that shape its result (:func:`stage_settings`): the model's
and the data module's class and init args, the seed, and the trainer's precision, gradient settings and
budget. Paths under ``run_dir`` are stored relative to it (``${run_dir}/...``), so a moved run folder
still resumes. Settings that change how, not what, is computed or only what is logged (DataLoader
workers, cache devices, validation sample grids, ``limit_*_batches``) are left out.

A stage-2 run also records the SHA-256 of the stage-1 encoder file it starts from (``encoder_dir``): the path
alone would let a run continue after stage 1 wrote a different encoder under it. Checkpoints written before
this was recorded resume without that check.

``fit`` resumes from Lightning's ``ckpt_path``: a file, or ``last`` (:func:`resolve_ckpt_path`: the newest
``last*.ckpt`` of the stage's checkpoint folder, Lightning's own rule); ``resume: true`` asks for ``last``
when no ``ckpt_path`` is given. Whichever checkpoint it is (:func:`check_resume`), a run with other
settings is refused with the keys that differ and the ways out, unless only the budget grew (more epochs
or steps: the run continues, and says so). A damaged or foreign checkpoint is one error line naming it.
Without this, a re-run with ``--model.init_args.mask_ratio=0.5`` on a finished folder would train nothing
and export a JSON claiming 0.5 over weights trained at 0.75.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import Callback

from dreamdiffusion.atomic import sha256
from dreamdiffusion.errors import UserError
from dreamdiffusion.models.encoder_file import WEIGHTS as ENCODER_FILE

CHECKPOINT_KEY = "dreamdiffusion_settings"
BUDGET = ("trainer.max_epochs", "trainer.max_steps")
# limit_*_batches are left out: they are debugging knobs that tests and smoke runs change between runs
TRAINER_KEYS = (
    "precision", "max_epochs", "max_steps", "accumulate_grad_batches", "gradient_clip_val", "gradient_clip_algorithm",
)
# init args that change how the run is computed or watched, not what it trains
NOT_SHAPING = {
    "num_workers", "cache_device", "cache_batch_size", "local_files_only",
    "val_sample_every_n_epochs", "val_num_samples", "val_num_inference_steps", "val_guidance_scale", "val_sampler",
    "plot_channels",
}
# What the user can do instead, by how the checkpoint was asked for (resume: true, or --ckpt_path).
WAYS_OUT = {
    "resume": "start over with --resume=false, or write to a new folder with --run_dir=DIR",
    "ckpt_path": "give --ckpt_path a checkpoint trained with this run's settings, or leave --ckpt_path out "
    "(with --resume=false) to start over",
}
RESTART = {"resume": "set --resume=false to start over", "ckpt_path": "from --ckpt_path"}
# A setting that names a stage-1 folder; the SHA-256 of its encoder file is recorded beside it (key + SUFFIX).
ENCODER_DIR_KEY, FINGERPRINT_SUFFIX = "encoder_dir", ".sha256"
# Lightning's ModelCheckpoint names its last checkpoint last.ckpt, then last-v1.ckpt, ... when one exists already.
LAST_PREFIX, CKPT_SUFFIX = "last", ".ckpt"


class ResumeRefused(UserError):
    """A re-run whose settings differ from those of the checkpoint it would continue."""


def _flatten(value: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            _flatten(item, f"{prefix}.{key}" if prefix else str(key), out)
    else:
        out[prefix] = value


def _relative(value: Any, run_dir: str) -> Any:
    if isinstance(value, str) and run_dir and (value == run_dir or value.startswith(run_dir.rstrip("/") + "/")):
        return "${run_dir}" + value[len(run_dir.rstrip("/")):]
    if isinstance(value, list):
        return [_relative(v, run_dir) for v in value]
    return value


def stage_settings(config: dict) -> dict[str, Any]:
    """Flat ``{dotted key: value}`` of the settings that shape a stage's result (``config``: the subcommand's
    parsed config as a dict, as LightningCLI holds it)."""
    run_dir = str(config.get("run_dir") or "")
    tree = {
        "model": config.get("model"),
        "data": config.get("data"),
        "seed_everything": config.get("seed_everything"),
        "trainer": {k: (config.get("trainer") or {}).get(k) for k in TRAINER_KEYS},
    }
    flat: dict[str, Any] = {}
    _flatten(json.loads(json.dumps(tree, default=str)), "", flat)
    flat.update(input_fingerprints(flat))
    return {k: _relative(v, run_dir) for k, v in flat.items() if k.rsplit(".", 1)[-1] not in NOT_SHAPING}


def input_fingerprints(flat: dict[str, Any]) -> dict[str, str]:
    """``{"<key>.sha256": hex}`` for every ``*.encoder_dir`` setting that names a folder holding an encoder file;
    a folder without one is left to the stage to report (it fails at load with the file's name)."""
    out = {}
    for key, value in flat.items():
        if key.rsplit(".", 1)[-1] == ENCODER_DIR_KEY and isinstance(value, str) and value:
            path = Path(value) / ENCODER_FILE
            if path.is_file():
                out[key + FINGERPRINT_SUFFIX] = sha256(path)
    return out


def _limit(value: Any) -> float:
    """A budget value as a number: ``None`` and -1 are unlimited."""
    return math.inf if value is None or value == -1 else float(value)


def last_checkpoint(folder: Path) -> Path | None:
    """The newest ``last*.ckpt`` in ``folder`` (by modification time), or ``None``.

    The rule of Lightning's ``ckpt_path="last"`` for a ``ModelCheckpoint(save_last=True)``: a run started
    over in a folder holding ``last.ckpt`` writes ``last-v1.ckpt``, and the newer one is the one to continue.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return None
    candidates = [p for p in folder.iterdir() if p.is_file() and p.suffix == CKPT_SUFFIX and p.stem.startswith(LAST_PREFIX)]
    return max(candidates, key=lambda p: p.stat().st_mtime, default=None)


def resolve_ckpt_path(value: str, checkpoint_dir: Path) -> Path | None:
    """The checkpoint ``fit`` resumes from: ``value`` is a file, or ``"last"`` (:func:`last_checkpoint` of
    ``checkpoint_dir``; ``None`` when there is none yet, as on a first run)."""
    if value == "last":
        return last_checkpoint(checkpoint_dir)
    if value in ("best", "hpc"):
        raise ResumeRefused(
            f"--ckpt_path={value}: fit resumes from a checkpoint file or from 'last' (the newest last*.ckpt in "
            f"{checkpoint_dir}); give the file, e.g. --ckpt_path={Path(checkpoint_dir) / 'last.ckpt'}"
        )
    path = Path(value)
    if not path.is_file():
        raise ResumeRefused(
            f"--ckpt_path={value}: no such checkpoint file; give an existing .ckpt (this stage keeps its checkpoints "
            f"in {checkpoint_dir}), or 'last' for the newest last*.ckpt there"
        )
    return path


def read_settings(last: Path, given_by: str = "resume") -> dict[str, Any]:
    """The settings recorded in checkpoint ``last``; a damaged or foreign file is a :class:`ResumeRefused`."""
    import torch

    ways_out = WAYS_OUT[given_by]
    try:
        # mmap: only the small pickled metadata is read here; the tensors stay on disk.
        checkpoint = torch.load(last, map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:  # noqa: BLE001 - any failure to read means the same thing to the user
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ResumeRefused(
            f"cannot resume from {last}: it is not a readable checkpoint ({type(error).__name__}: {reason[:200]}); "
            f"it is damaged (e.g. a run killed while writing it) or not a checkpoint; {ways_out}"
        ) from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ResumeRefused(f"cannot resume from {last}: it is not a Lightning checkpoint (no 'state_dict'); {ways_out}")
    settings = checkpoint.get(CHECKPOINT_KEY)
    if not isinstance(settings, dict):
        raise ResumeRefused(
            f"cannot resume from {last}: it records no dreamdiffusion settings (written by another program or an "
            f"older version), so a change of settings could not be detected; {ways_out}"
        )
    return settings


def _difference(key: str, saved: dict[str, Any], current: dict[str, Any]) -> str:
    """One refused key, as the error message lists it."""
    if key.endswith(FINGERPRINT_SUFFIX):
        folder = key[: -len(FINGERPRINT_SUFFIX)]
        return (f"{folder}: {ENCODER_FILE} in {current.get(folder)!r} changed since the checkpoint "
                f"(SHA-256 {str(saved.get(key))[:12]}… then, {str(current.get(key))[:12]}… now)")
    return f"{key}: {saved.get(key, '<absent>')!r} in the checkpoint, {current.get(key, '<absent>')!r} now"


def check_resume(last: Path, current: dict[str, Any], given_by: str = "resume") -> str:
    """Refuse (:class:`ResumeRefused`) to continue checkpoint ``last`` with other settings than ``current``.

    ``given_by``: ``"resume"`` (``resume: true`` found it) or ``"ckpt_path"`` (the user named it), for the
    ways out the message offers. Returns the line to log: plain resuming, or resuming with a larger budget.
    """
    # a checkpoint recorded before a key joined NOT_SHAPING still holds it
    saved = {k: v for k, v in read_settings(last, given_by).items() if k.rsplit(".", 1)[-1] not in NOT_SHAPING}
    # a checkpoint recorded before input files were fingerprinted cannot be checked for them
    current = {k: v for k, v in current.items() if not k.endswith(FINGERPRINT_SUFFIX) or k in saved}
    differing = sorted(k for k in set(saved) | set(current) if saved.get(k, "<absent>") != current.get(k, "<absent>"))
    grown = [k for k in differing if k in BUDGET and _limit(current.get(k)) > _limit(saved.get(k))]
    refused = [k for k in differing if k not in grown]
    if refused:
        listed = "; ".join(_difference(k, saved, current) for k in refused)
        raise ResumeRefused(
            f"{last} was trained with other settings than this run's ({listed}). Resuming would mix the two and "
            f"label the result with the new ones; {WAYS_OUT[given_by]}"
        )
    if grown:
        more = ", ".join(f"{k} {saved.get(k)} -> {current.get(k)}" for k in grown)
        return f"resuming from {last} with a larger budget ({more}); {RESTART[given_by]}"
    return f"resuming from {last} ({RESTART[given_by]})"


class RecordSettings(Callback):
    """Writes the stage's settings into every checkpoint (``checkpoint['dreamdiffusion_settings']``)."""

    def __init__(self, settings: dict[str, Any]) -> None:
        self.settings = settings

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        checkpoint[CHECKPOINT_KEY] = dict(self.settings)
