"""Every model the embedded default needs, trained small so the demo is a miniature of the paper's world.

:func:`write_demo_weights` writes (``dreamdiffusion weights demo --out DIR``)::

    DIR/sd/      the base model trained by stage 0 (:mod:`dreamdiffusion.stages.base_model`): draws the classes
    DIR/clip/    the tiny CLIP image tower, warmed up (:mod:`dreamdiffusion.models.tiny_clip_warmup`)
    DIR/eval/    classifier.safetensors + classifier.json (:mod:`dreamdiffusion.models.picture_classifier`;
                 the classifier of n-way top-1 and the Inception stand-in of FID/IS), alexnet.safetensors
                 (LPIPS, random)
    DIR/demo_weights.json   settings, checks, timings
    DIR/caption_samples.png the base model's caption samples (rows: classes)
    DIR/parts/<part>.json   what each part was made with, its timings (and the VAE's PSNR)

Each model learns from synthetic pictures of a random stream of its own; none ever sees a picture of a
synthetic dataset. Two checks, returned and written to ``demo_weights.json``: the classifier's accuracy on
held-out generator pictures, and the share of the base model's caption samples it recognises.

The work comes in three parts (:data:`PARTS`) that can run as separate processes, so that ``make demo`` trains
the CLIP and the classifier on the core that stage 1 frees while the base model is still training:
``base-model`` (sd/), ``clip-eval`` (clip/ and eval/) and ``checks`` (needs the other two; writes
``demo_weights.json``). A part's record in ``parts/`` is written last, so its presence means its models are
complete; ``checks`` refuses records made with other settings.
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
PARTS_DIR = "parts"
PARTS = ("base-model", "clip-eval", "checks")
# What a weights folder of ours may hold (``weights tiny`` writes the first three): anything else is not ours.
OURS = {"sd", "clip", "eval", MANIFEST, SAMPLES_PNG, PARTS_DIR}


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


def _plain(value) -> object:
    """``value`` as it reads back from JSON (tuples become lists), so settings compare with a record."""
    return json.loads(json.dumps(value))


def _clip_warmup(base: BaseModelConfig, clip_warmup_steps: int | None):
    from dreamdiffusion.models.tiny_clip_warmup import ClipWarmup

    if clip_warmup_steps is None:
        return ClipWarmup(classes=base.classes, seed=base.seed)
    return ClipWarmup(classes=base.classes, seed=base.seed, steps=clip_warmup_steps)


def _part_settings(part: str, base: BaseModelConfig, classifier: PictureClassifierConfig, clip_warmup_steps: int | None) -> dict:
    if part == "base-model":
        return _plain({"base_model": base.to_dict()})
    return _plain({"classifier": classifier.to_dict(), "clip_warmup": asdict(_clip_warmup(base, clip_warmup_steps))})


def _write_record(out: Path, part: str, settings: dict, clock: _Clock, **figures) -> dict:
    """Write ``parts/<part>.json`` (after the part's models) and return the record."""
    record = {"settings": settings, **figures, "wall_seconds": clock.wall, "cpu_seconds": clock.cpu}
    (out / PARTS_DIR).mkdir(parents=True, exist_ok=True)
    write_text(out / PARTS_DIR / f"{part}.json", json.dumps(record, indent=2) + "\n")
    return record


def read_part_record(out: str | os.PathLike, part: str, settings: dict) -> dict:
    """The record of ``part`` in ``out``; an error naming the file, the differing key and the fix when it is
    missing or was made with other ``settings``."""
    path = Path(out) / PARTS_DIR / f"{part}.json"
    again = f"dreamdiffusion weights demo --out {out} --part {part}"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: part {part!r} has not finished in {out}; run `{again}` first")
    needed = ("settings", "wall_seconds", "cpu_seconds", *(("vae_psnr",) if part == "base-model" else ()))
    try:
        record = json.loads(path.read_text())
        recorded, *_ = (record[key] for key in needed)
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"{path} is not a part record of `weights demo` ({e}); run `{again}` to write it again") from e
    for group, values in settings.items():
        for key, value in values.items():
            was = (recorded.get(group) or {}).get(key, "<absent>")
            if was != value:
                raise ValueError(
                    f"{path}: part {part!r} was made with {group}.{key}={was!r}, this run asks for {value!r}; run "
                    f"`{again}` with this run's --seed/--classes, or give the ones it was made with"
                )
    return record


def write_base_model_part(out: Path, base: BaseModelConfig) -> dict:
    """Train stage 0's base model and write ``out/sd``; returns its record (settings, VAE PSNR in dB, times)."""
    from dreamdiffusion.data.synthetic import wnid
    from dreamdiffusion.models.picture_classifier import HELD_OUT_STREAM, own_picture_images
    from dreamdiffusion.stages.base_model import fit_base_model, reconstruction_psnr, save_base_model

    (out / PARTS_DIR / "base-model.json").unlink(missing_ok=True)
    clock = _Clock()
    with clock.part("base_model"):
        module = fit_base_model(base)
    with atomic_dir(out / "sd") as tmp:
        save_base_model(module, tmp, [wnid(k) for k in range(base.classes)])
    held_out, _ = own_picture_images(HELD_OUT_STREAM, base.classes, 10, base.seed, base.image_size)
    vae_psnr = reconstruction_psnr(module.vae, held_out * 2 - 1)
    return _write_record(out, "base-model", _part_settings("base-model", base, None, None), clock, vae_psnr=vae_psnr)


def write_clip_eval_part(out: Path, base: BaseModelConfig, classifier: PictureClassifierConfig, clip_warmup_steps: int | None) -> dict:
    """Warm the tiny CLIP up (``out/clip``) and train the demo classifier (``out/eval``, with the random AlexNet
    of LPIPS); returns the part's record."""
    from safetensors.torch import save_file

    from dreamdiffusion.models.backbones import build_tiny_clip
    from dreamdiffusion.models.picture_classifier import train_picture_classifier, write_picture_classifier
    from dreamdiffusion.models.provenance import RANDOM

    (out / PARTS_DIR / "clip-eval.json").unlink(missing_ok=True)
    clock = _Clock()
    with clock.part("clip"), atomic_dir(out / "clip") as tmp:
        build_tiny_clip(tmp, seed=base.seed, warmup=_clip_warmup(base, clip_warmup_steps))

    with clock.part("classifier"), atomic_dir(out / "eval") as tmp:
        model, _ = train_picture_classifier(classifier)
        write_picture_classifier(tmp, model, classifier)
        import torchvision

        torch.manual_seed(base.seed)
        alexnet = torchvision.models.alexnet(weights=None).features  # LPIPS backbone: random, labelled so
        save_file({f"features.{k}": v.contiguous() for k, v in alexnet.state_dict().items()}, str(tmp / "alexnet.safetensors"),
                  metadata={"provenance": RANDOM})
    return _write_record(out, "clip-eval", _part_settings("clip-eval", base, classifier, clip_warmup_steps), clock)


def write_checks_part(
    out: Path, base: BaseModelConfig, classifier: PictureClassifierConfig, clip_warmup_steps: int | None, checks: DemoChecks
) -> DemoReport:
    """The two checks on the models the other parts wrote (refused when a part is missing or was made with
    other settings); writes ``caption_samples.png`` and ``demo_weights.json``."""
    from dreamdiffusion.models.captions import caption_sample_accuracy
    from dreamdiffusion.models.eval_models import ClassifierConfig, load_classifier
    from dreamdiffusion.models.picture_classifier import held_out_accuracy

    records = {part: read_part_record(out, part, _part_settings(part, base, classifier, clip_warmup_steps))
               for part in PARTS if part != "checks"}
    clock = _Clock()
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

    wall = {k: v for record in records.values() for k, v in record["wall_seconds"].items()} | clock.wall
    cpu = {k: v for record in records.values() for k, v in record["cpu_seconds"].items()} | clock.cpu
    report = DemoReport(accuracy, held_out_top1, records["base-model"]["vae_psnr"], wall, cpu)
    manifest = {"base_model": base.to_dict(), "classifier": classifier.to_dict(), "checks": asdict(checks), "report": report.to_dict()}
    write_text(out / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    return report


def write_demo_weights(
    out: str | os.PathLike,
    base: BaseModelConfig = BaseModelConfig(),
    classifier: PictureClassifierConfig | None = None,
    clip_warmup_steps: int | None = None,
    checks: DemoChecks = DemoChecks(),
    parts: tuple[str, ...] = PARTS,
) -> DemoReport | None:
    """Train and write the demo's models to ``out`` (see the module docstring); returns the checks, or None
    when ``parts`` leaves out ``checks``.

    ``classifier`` defaults to :class:`PictureClassifierConfig` with ``base``'s classes and seed;
    ``clip_warmup_steps`` overrides :class:`~dreamdiffusion.models.tiny_clip_warmup.ClipWarmup`'s steps;
    ``parts`` is a selection of :data:`PARTS`, run in that order.
    """
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        raise ValueError(f"parts {unknown} are not parts of `weights demo`; use some of {', '.join(PARTS)}")
    out = check_out_folder(out)
    classifier = classifier or PictureClassifierConfig(classes=base.classes, seed=base.seed, image_size=base.image_size)
    if classifier.classes != base.classes:
        raise ValueError(f"classifier classes {classifier.classes} != base model classes {base.classes}")
    if "base-model" in parts:
        write_base_model_part(out, base)
    if "clip-eval" in parts:
        write_clip_eval_part(out, base, classifier, clip_warmup_steps)
    if "checks" in parts:
        return write_checks_part(out, base, classifier, clip_warmup_steps, checks)
    return None


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
