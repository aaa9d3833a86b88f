"""Stage-3 results: what an :class:`~dreamdiffusion.stages.evaluate.EvalModule` measured → the ``metrics.json`` dict.

:func:`compute_results` runs on every process once the test split is done (torchmetrics and the trial tables
sync inside ``compute``): it gathers the per-trial table, the per-trial figures with their intervals, controls
and per-subject breakdown (:func:`dreamdiffusion.stages.eval_report.summarise`), FID and IS over all images, the
labels of figures that come from random networks, the notes and the run's settings. :func:`set_level_intervals`
gives FID and IS their bootstrap intervals by recomputing them on resampled trial sets.

``metrics.json`` holds every metric with its 95% bootstrap interval over trials (``ci``), the controls
(``controls.shuffled_eeg``, ``controls.null_condition``: figures, intervals, chance, ``at_chance``), the
per-subject breakdown (``per_subject``), which figures come from random networks (``meaningful``), the
``failures`` of the run (a control off chance), the settings, the number of images and the pipeline.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import TYPE_CHECKING

from torch import Tensor

from dreamdiffusion.bootstrap import BootstrapSettings, statistic_interval
from dreamdiffusion.generation import unet_calls
from dreamdiffusion.metrics import TrialTable, frechet_distance, inception_score_from_logits
from dreamdiffusion.stages.eval_report import DEFINITIONS, meaningful_labels, summarise

if TYPE_CHECKING:
    from dreamdiffusion.stages.evaluate import EvalModule


def set_level_intervals(
    feature_table: TrialTable | None, num_samples: int, is_splits: int, bootstrap: BootstrapSettings
) -> dict[str, list[float] | None]:
    """FID and IS recomputed on resampled trial sets (``None`` when off or too few).

    ``feature_table`` holds per trial the Inception pool features of its picture (``real [N, D]``) and of its
    ``num_samples`` samples (``generated [N, S·D]``) and their logits (``logits [N, S·K]``); ``None`` when
    ``bootstrap_set_resamples`` is 0. FID needs 2 trials, IS ``is_splits`` images.
    """
    if feature_table is None:
        return {"fid": None, "inception_score": None}
    features = feature_table.compute()
    n, s = features["index"].numel(), num_samples
    real, generated = features["real"], features["generated"].view(n, s, -1)
    logits = features["logits"].view(n, s, -1)
    fid = statistic_interval(lambda d: frechet_distance(real[d], generated[d].flatten(0, 1)), n, bootstrap) if n >= 2 else None
    inception = None
    if n * s >= is_splits:
        inception = statistic_interval(
            lambda d: float(inception_score_from_logits(logits[d].flatten(0, 1), is_splits)[0]), n, bootstrap
        )
    return {"fid": list(fid) if fid else None, "inception_score": list(inception) if inception else None}


def compute_results(module: EvalModule) -> tuple[dict, dict[str, Tensor]]:
    """Every metric with its interval, the controls, the per-subject breakdown (synced across processes), as
    written to ``metrics.json``; and the per-trial table (rows sorted by trial index).

    ``module`` is the evaluating module after its test epoch: its trial and feature tables, image metrics,
    split, evaluation networks' provenance and settings.
    """
    if not module.trial_table.index and module.trainer.world_size == 1:
        raise RuntimeError("the evaluation split produced no trials: check the data module's test split")
    table = module.trial_table.compute()
    trials = int(table["index"].numel())
    if trials == 0:
        raise RuntimeError("the evaluation split produced no trials: check the data module's test split")
    images = trials * module.num_samples
    indices = table["index"].tolist()
    names = [module.split[i]["image_name"] for i in indices]
    subjects = [module.split[i]["subject"] for i in indices]
    labels = meaningful_labels(module.provenance, module.clip_model_source)
    random_figures = frozenset(k for k, v in labels.items() if not v["meaningful"])
    summary = summarise(table, names, subjects, module.bootstrap, module.n_way, module.top_k, module.controls, random_figures)
    notes: list[str] = []
    metrics: dict[str, float | int | None] = {}
    fid = module.image_metrics.fid
    with fid.sync_context():  # counts over all processes
        fid_images = {"generated": int(fid.fake_features_num_samples), "ground_truth": int(fid.real_features_num_samples)}
    metrics["fid"] = float(fid.compute()) if trials >= 2 else None
    if metrics["fid"] is None:
        notes.append("FID not computed: it needs at least 2 ground-truth images")
    if images >= module.is_splits:
        is_mean, is_std = module.image_metrics.inception_score.compute()
        metrics["inception_score"], metrics["inception_score_std"] = float(is_mean), float(is_std)
    else:
        metrics["inception_score"] = metrics["inception_score_std"] = None
        notes.append(f"IS not computed: {images} generated images for {module.is_splits} splits; lower is_splits")
    figures = summary["metrics"]
    metrics["psnr"] = figures["psnr"] if figures["psnr"] is not None and math.isfinite(figures["psnr"]) else None
    if metrics["psnr"] is None:
        notes.append("PSNR is infinite: a generated image equals its ground truth")
    for key in ("ssim", "lpips", "top1_mean", "top1_best"):
        metrics[key] = figures[key]
    metrics["retrieval_top1"] = figures.get("retrieval_top1")
    if metrics["retrieval_top1"] is not None:
        metrics["retrieval_candidates"] = summary["retrieval_candidates"]
    else:
        notes.append("EEG→CLIP retrieval not computed: no clip_model configured and no cached clip_embeds")
    if module.n_way < module.n_way_requested:
        notes.append(
            f"n-way accuracy is {module.n_way}-way, not {module.n_way_requested}-way: the classifier has only "
            f"{module.classifier.num_classes} classes"
        )
    if module.controls:
        notes.append("null-condition control: no EEG, so no CLIP-head prediction and no retrieval figure")
    ci = {key: summary["ci"].get(key) for key in ("psnr", "ssim", "lpips", "top1_mean", "top1_best", "retrieval_top1")}
    ci.update(module.set_level_intervals())
    for key, label in labels.items():
        if not label["meaningful"] and metrics.get(key) is not None:
            notes.append(f"{key}: {label['reason']}")
    results = {
        "pipeline": str(Path(module.pipeline_dir).resolve()),
        "split": "test",
        "trials": trials,
        "generated_images": images,
        "fid_images": fid_images,
        "metrics": metrics,
        "ci": ci,
        "meaningful": labels,
        "controls": summary["controls"],
        "per_subject": summary["per_subject"],
        "failures": summary["failures"],
        "below_chance": summary["below_chance"],
        "settings": {
            "num_samples": module.num_samples,
            "sampler": module.sampler,
            "num_inference_steps": module.num_inference_steps,
            "unet_calls_per_image": unet_calls(module.sampler, module.num_inference_steps),
            "guidance_scale": module.guidance_scale,
            "seed": module.seed,
            "image_size": module.out_size,
            "n_way": module.n_way,
            "n_way_requested": module.n_way_requested,
            "top_k": module.top_k,
            "n_trials": module.n_trials,
            "classifier_classes": module.classifier.num_classes,
            **module.settings.to_dict(),
            "classifier": module.classifier_config.to_dict(),
            "inception": module.inception_config.to_dict(),
            "lpips": module.lpips_config.to_dict(),
            "clip_model": module.clip_model_source,
            "world_size": module.trainer.world_size,
            "controls": module.controls,
            "bootstrap": dataclasses.asdict(module.bootstrap),
        },
        "definitions": DEFINITIONS,
        "notes": notes,
    }
    return results, table
