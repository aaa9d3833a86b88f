"""Every model the embedded default needs, trained small so the demo is a miniature of the paper's world.

:func:`write_demo_weights` writes (``dreamdiffusion weights demo --out DIR``)::

    DIR/sd/      the base model trained by stage 0 (:mod:`dreamdiffusion.stages.base_model`): draws the classes
    DIR/clip/    the tiny CLIP image tower, warmed up (:mod:`dreamdiffusion.models.tiny_clip_warmup`)
    DIR/eval/    classifier.safetensors + classifier.json (:mod:`dreamdiffusion.models.picture_classifier`;
                 the classifier of n-way top-1 and the Inception stand-in of FID/IS), alexnet.safetensors
                 (LPIPS, random)
    DIR/demo_weights.json   settings, checks, timings
    DIR/caption_samples.png the base model's caption samples (rows: classes)

Each model learns from synthetic pictures of a random stream of its own; none ever sees a picture of a
synthetic dataset. Two checks, returned and written to ``demo_weights.json``: the classifier's accuracy on
held-out generator pictures, and the share of the base model's caption samples it recognises.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from dreamdiffusion.atomic import atomic_dir, write_text
from dreamdiffusion.models.picture_classifier import PictureClassifierConfig
from dreamdiffusion.stages.base_model import BaseModelConfig

MANIFEST = "demo_weights.json"
SAMPLES_PNG = "caption_samples.png"
# What a weights folder of ours may hold (``weights tiny`` writes the first three): anything else is not ours.
OURS = {"sd", "clip", "eval", MANIFEST, SAMPLES_PNG}


@dataclass(frozen=True)
class DemoChecks:
    """How the two checks are run: ``samples_per_class`` caption samples per class with DDIM
    ``num_inference_steps`` and classifier-free guidance ``guidance_scale`` (as SD is sampled from a prompt);
    ``held_out_per_class`` held-out generator pictures per class."""

    samples_per_class: int = 10
    num_inference_steps: int = 20
    guidance_scale: float = 3.0
    held_out_per_class: int = 30


@dataclass
class DemoReport:
    """Results of :func:`write_demo_weights` (accuracies in [0, 1], PSNR in dB, times in seconds)."""

    caption_sample_accuracy: float
    classifier_held_out_accuracy: float
    vae_psnr: float
    wall_seconds: dict[str, float] = field(default_factory=dict)
    cpu_seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def check_out_folder(out: str | os.PathLike) -> Path:
    """``out`` must be new, empty or a weights folder of ours; anything else is refused (nothing is written)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out} is a file; give a folder for sd/, clip/ and eval/")
    if out.is_dir():
        foreign = sorted(p.name for p in out.iterdir() if p.name not in OURS and not p.name.startswith("."))
        if foreign:
            raise FileExistsError(
                f"--out {out} holds {', '.join(foreign[:5])}, which `dreamdiffusion weights` did not write: refusing "
                "to write models there; choose a new or empty folder"
            )
    return out


class _Clock:
    """Wall and process CPU seconds of named parts (CPU time sums every thread of the process)."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    def part(self, name: str):
        clock = self

        class _Part:
            def __enter__(self):
                self.wall, self.cpu = time.perf_counter(), time.process_time()

            def __exit__(self, *exc):
                clock.wall[name] = round(time.perf_counter() - self.wall, 2)
                clock.cpu[name] = round(time.process_time() - self.cpu, 2)

        return _Part()


def write_demo_weights(
    out: str | os.PathLike,
    base: BaseModelConfig = BaseModelConfig(),
    classifier: PictureClassifierConfig | None = None,
    clip_warmup_steps: int | None = None,
    checks: DemoChecks = DemoChecks(),
) -> DemoReport:
    """Train and write the demo's models to ``out`` (see the module docstring); returns the checks.

    ``classifier`` defaults to :class:`PictureClassifierConfig` with ``base``'s classes and seed;
    ``clip_warmup_steps`` overrides :class:`~dreamdiffusion.models.tiny_clip_warmup.ClipWarmup`'s steps.
    """
    from safetensors.torch import save_file

    from dreamdiffusion.data.synthetic import wnid
    from dreamdiffusion.models.backbones import build_tiny_clip
    from dreamdiffusion.models.captions import caption_sample_accuracy
    from dreamdiffusion.models.eval_models import ClassifierConfig, load_classifier
    from dreamdiffusion.models.picture_classifier import (
        HELD_OUT_STREAM,
        held_out_accuracy,
        own_picture_images,
        train_picture_classifier,
        write_picture_classifier,
    )
    from dreamdiffusion.models.provenance import RANDOM
    from dreamdiffusion.models.tiny_clip_warmup import ClipWarmup
    from dreamdiffusion.stages.base_model import fit_base_model, reconstruction_psnr, save_base_model

    out = check_out_folder(out)
    classifier = classifier or PictureClassifierConfig(classes=base.classes, seed=base.seed, image_size=base.image_size)
    if classifier.classes != base.classes:
        raise ValueError(f"classifier classes {classifier.classes} != base model classes {base.classes}")
    clock = _Clock()

    with clock.part("base_model"):
        module = fit_base_model(base)
    with atomic_dir(out / "sd") as tmp:
        save_base_model(module, tmp, [wnid(k) for k in range(base.classes)])
    held_out, _ = own_picture_images(HELD_OUT_STREAM, base.classes, 10, base.seed, base.image_size)
    vae_psnr = reconstruction_psnr(module.vae, held_out * 2 - 1)

    with clock.part("clip"), atomic_dir(out / "clip") as tmp:
        warmup = ClipWarmup(classes=base.classes, seed=base.seed)
        if clip_warmup_steps is not None:
            warmup = ClipWarmup(classes=base.classes, seed=base.seed, steps=clip_warmup_steps)
        build_tiny_clip(tmp, seed=base.seed, warmup=warmup)

    with clock.part("classifier"), atomic_dir(out / "eval") as tmp:
        model, _ = train_picture_classifier(classifier)
        write_picture_classifier(tmp, model, classifier)
        import torchvision

        torch.manual_seed(base.seed)
        alexnet = torchvision.models.alexnet(weights=None).features  # LPIPS backbone: random, labelled so
        save_file({f"features.{k}": v.contiguous() for k, v in alexnet.state_dict().items()}, str(tmp / "alexnet.safetensors"),
                  metadata={"provenance": RANDOM})

    with clock.part("checks"):
        loaded = load_classifier(ClassifierConfig(
            architecture=classifier.architecture, weights=None, weights_path=str(out / "eval" / "classifier.safetensors"),
            num_classes=classifier.classes, image_size=classifier.image_size,
        ))
        held_out_top1 = held_out_accuracy(loaded, classifier.classes, checks.held_out_per_class, base.seed, classifier.image_size)
        accuracy, images, _ = caption_sample_accuracy(
            out / "sd", loaded, checks.samples_per_class, checks.num_inference_steps, base.seed, checks.guidance_scale
        )
    save_grid(images, base.classes, out / SAMPLES_PNG)

    report = DemoReport(accuracy, held_out_top1, vae_psnr, clock.wall, clock.cpu)
    manifest = {"base_model": base.to_dict(), "classifier": classifier.to_dict(), "checks": asdict(checks), "report": report.to_dict()}
    write_text(out / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    return report


def save_grid(images: torch.Tensor, rows: int, path: str | os.PathLike) -> Path:
    """Save ``images [N, 3, S, S]`` in [0, 1] as one PNG of ``rows`` rows (class after class)."""
    from PIL import Image

    from dreamdiffusion.atomic import atomic_path

    n, _, size, _ = images.shape
    columns = n // rows
    grid = images[: rows * columns].reshape(rows, columns, 3, size, size).permute(0, 3, 1, 4, 2).reshape(rows * size, columns * size, 3)
    path = Path(path)
    with atomic_path(path) as tmp:
        Image.fromarray((grid * 255).round().byte().numpy()).save(tmp, format="PNG")
    return path
