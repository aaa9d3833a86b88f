"""What stage 2 leaves on disk: slim Lightning checkpoints, and at the end of fit the pipeline and ``export.json``.

* Checkpoints (for resuming and for picking the best weights) leave out the frozen towers — the VAE, CLIP and
  every UNet weight outside the trainable set — since those come back from ``sd_model``/``clip_model``
  (:func:`drop_frozen_weights`); loading puts them back first, so it stays strict
  (:func:`restore_frozen_weights`).
* At the end of fit the stage folder (``trainer.default_root_dir``) receives ``pipeline/`` — the
  :class:`~dreamdiffusion.pipeline.DreamDiffusionPipeline` built from the weights of the best checkpoint by the
  ``ModelCheckpoint`` monitor when there is one, else from the last weights — and ``export.json`` saying which
  (:func:`export_at_fit_end`).

The functions take the :class:`~dreamdiffusion.stages.finetune.EEGSDFinetuneModule` and call its hooks
(``load_trainable_from_checkpoint``, ``export_pipeline``, ``export_dir``), so a subclass can still override them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor

from dreamdiffusion.atomic import write_text

if TYPE_CHECKING:
    from dreamdiffusion.stages.finetune import EEGSDFinetuneModule

FROZEN_TOWERS = ("vae.", "clip.")


def is_frozen_tower_key(key: str, trainable: set[str]) -> bool:
    """Whether state-dict ``key`` is restored from ``sd_model``/``clip_model`` rather than stored in checkpoints:
    a VAE or CLIP weight, or a UNet weight outside ``trainable`` (the module's trainable parameter names)."""
    if key.startswith(FROZEN_TOWERS):
        return True
    return key.startswith("unet.") and key not in trainable


def drop_frozen_weights(state: dict[str, Tensor], trainable: set[str]) -> None:
    """Delete the frozen towers' keys from a checkpoint's ``state_dict`` (in place)."""
    for key in [k for k in state if is_frozen_tower_key(k, trainable)]:
        del state[key]


def restore_frozen_weights(state: dict[str, Tensor], current: dict[str, Tensor], trainable: set[str]) -> None:
    """Fill a checkpoint's ``state_dict`` (in place) with the frozen towers' weights from ``current``, the module's
    own state dict (already loaded from their sources)."""
    for key, value in current.items():
        if key not in state and is_frozen_tower_key(key, trainable):
            state[key] = value


def export_at_fit_end(module: EEGSDFinetuneModule) -> None:
    """Write ``pipeline/`` and ``export.json`` into ``module.export_dir`` from the best checkpoint's weights (loaded
    into ``module``) when the checkpoint callback monitors a metric, else from the last weights."""
    trainer = module.trainer
    callback = trainer.checkpoint_callback
    best = getattr(callback, "best_model_path", "") if callback is not None and callback.monitor else ""
    info = {"weights": "last", "checkpoint": None, "monitor": None, "score": None}
    if best:
        module.load_trainable_from_checkpoint(best)
        score = callback.best_model_score
        info = {
            "weights": "best", "checkpoint": str(best), "monitor": callback.monitor,
            "score": float(score) if score is not None else None,
        }
    info["fit_end_global_step"] = int(module.global_step)
    metrics = {info["monitor"]: info["score"]} if info["score"] is not None else None
    # The old description goes first: a run killed between the two writes leaves a pipeline without an
    # export.json, never one that describes other weights.
    (module.export_dir / "export.json").unlink(missing_ok=True)
    pipeline = Path(module.export_pipeline(module.export_dir / "pipeline", metrics=metrics))
    info["checksums"] = json.loads((pipeline / "checksums.json").read_text())["sha256"]
    write_text(module.export_dir / "export.json", json.dumps(info, indent=2) + "\n")
    rank_zero_info(f"stage 2: wrote {module.export_dir / 'pipeline'} from the {info['weights']} weights")


def export_pipeline(module: EEGSDFinetuneModule, folder: str | Path, metrics: dict[str, float] | None = None) -> Path:
    """Write ``module``'s :class:`~dreamdiffusion.pipeline.DreamDiffusionPipeline` folder (atomically) with
    DPM-Solver++ on the training noise schedule as its sampler (the default sampler,
    :func:`~dreamdiffusion.generation.default_scheduler`) and a model card (base model, data, ``metrics`` of the
    run)."""
    from dreamdiffusion.generation import default_scheduler
    from dreamdiffusion.pipeline import DreamDiffusionPipeline

    datamodule = module.trainer.datamodule if module._trainer is not None else None
    data = None
    if datamodule is not None:
        eeg_path = getattr(datamodule.hparams, "eeg_path", None)
        data = type(datamodule).__name__ + (f" ({eeg_path})" if eeg_path else "")
    sampler = default_scheduler(module.noise_scheduler.config)
    return DreamDiffusionPipeline(module.unet, module.vae, sampler, module.condition_model).save_pretrained(
        folder, base_model=module.hparams.sd_model, data=data, metrics=metrics,
    )
