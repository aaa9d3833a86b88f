"""Sampling speed and quality per sampler on the demo base model: DPM-Solver++ 20 steps against DDIM-50 and
PLMS-250 (and Euler, UniPC at 20), as images/s and generated-image top-1 with 95% bootstrap intervals.

The base model that ``dreamdiffusion weights demo --out DIR`` writes (``DIR/sd``: tiny SD with one learned
caption per class, ``[10, 77, 32]``) draws ``--samples-per-class`` images of every class from its class
caption with classifier-free guidance against its empty caption (``--guidance-scale`` 3, as the demo's own
check), through the package's sampling loop (:func:`dreamdiffusion.generation.generate_images`). Every sampler
is a diffusers scheduler built with ``from_config`` of the base model's scheduler config and draws from the
same seeds (image ``i`` from ``derive_seed(seed, i)``), so its images pair one to one with the reference's.
The demo classifier (``DIR/eval/classifier.safetensors``, a ResNet-18 trained on generator pictures of its
own) says whether each image shows its captioned class.

Reported per sampler: UNet calls per image (counted with a forward hook; a guidance-doubled batch counts
once), images/s (wall clock of sampling and VAE decoding; every sampler is warmed up first, and the samplers
take turns batch by batch, so a change in the machine's load falls on all of them alike), top-1 with its 95%
percentile-bootstrap interval over images, and the paired difference to the reference (DDIM-50) with its
interval (the same resampled images for both).

Run from the repository root::

    python benchmarks/samplers.py --weights runs/demo/weights             # 200 images per sampler
    python benchmarks/samplers.py --weights DIR --threads 1 --out samplers.md
    python benchmarks/samplers.py --weights DIR --samplers dpm++:20 ddim:50 ddim:20 --reference ddim:50
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from torch import Tensor

from dreamdiffusion.bootstrap import BootstrapSettings, mean_interval
from dreamdiffusion.generation import build_sampler, unet_calls
from dreamdiffusion.models.provenance import RANDOM

# Short names for the samplers compared here: (label, what build_sampler accepts, from_config overrides).
KNOWN = {
    "dpm++": ("DPM-Solver++", "DPMSolverMultistepScheduler", (("algorithm_type", "dpmsolver++"),)),
    "ddim": ("DDIM", "ddim", ()),
    "plms": ("PLMS", "plms", ()),
    "euler": ("Euler", "EulerDiscreteScheduler", ()),
    "unipc": ("UniPC", "UniPCMultistepScheduler", ()),
}
DEFAULT_SAMPLERS = ("dpm++:20", "ddim:50", "plms:250", "euler:20", "unipc:20")
DEFAULT_REFERENCE = "ddim:50"


@dataclass(frozen=True)
class SamplerSpec:
    """A sampler and its step count: ``name`` is what :func:`~dreamdiffusion.generation.build_sampler` accepts
    (``ddim``, ``plms`` or a diffusers scheduler class name), ``overrides`` go to ``from_config``."""

    label: str
    name: str
    steps: int
    overrides: tuple[tuple[str, object], ...] = ()

    @property
    def title(self) -> str:
        return f"{self.label}-{self.steps}"

    def build(self, scheduler_config):
        """A fresh scheduler of this kind on the base model's noise schedule (``from_config``)."""
        sampler = build_sampler(scheduler_config, self.name)
        return type(sampler).from_config(sampler.config, **dict(self.overrides)) if self.overrides else sampler


def parse_spec(text: str) -> SamplerSpec:
    """``NAME:STEPS`` → :class:`SamplerSpec`; ``NAME`` is one of :data:`KNOWN` (``dpm++``, ``ddim``, ``plms``,
    ``euler``, ``unipc``) or a diffusers scheduler class name (``HeunDiscreteScheduler:10``)."""
    name, sep, steps = text.partition(":")
    if not sep or not name:
        raise ValueError(f"sampler {text!r} must be NAME:STEPS, e.g. dpm++:20 or DDIMScheduler:50")
    try:
        count = int(steps)
    except ValueError:
        raise ValueError(f"sampler {text!r}: steps {steps!r} is not an integer; write e.g. {name}:20") from None
    if count < 1:
        raise ValueError(f"sampler {text!r}: steps must be >= 1")
    label, sampler, overrides = KNOWN.get(name.lower(), (name.removesuffix("Scheduler"), name, ()))
    unet_calls(sampler, count)  # an unknown scheduler name fails here, with the list of known ones
    return SamplerSpec(label, sampler, count, overrides)


@dataclass
class SamplerResult:
    """One sampler's run: ``hits [N]`` (1 where the classifier's top-1 is the captioned class), the wall
    ``seconds`` of sampling + decoding all ``N`` images and the UNet ``calls_per_image``."""

    spec: SamplerSpec
    hits: Tensor
    seconds: float
    calls_per_image: float

    @property
    def images_per_second(self) -> float:
        return len(self.hits) / self.seconds

    @property
    def top1(self) -> float:
        return float(self.hits.float().mean())


def top1_interval(hits: Tensor, settings: BootstrapSettings) -> tuple[float, float]:
    """95% (``settings.level``) percentile-bootstrap interval of the top-1 of ``hits [N]`` (0/1 per image)."""
    return mean_interval(hits.float(), settings)


def paired_difference(hits: Tensor, reference: Tensor, settings: BootstrapSettings) -> tuple[float, tuple[float, float]]:
    """``(top-1(hits) − top-1(reference), its interval)``; image ``i`` of both came from the same seed, so the
    images are resampled together (the bootstrap of the per-image difference)."""
    if hits.shape != reference.shape:
        raise ValueError(f"paired results need the same images: {tuple(hits.shape)} vs {tuple(reference.shape)}")
    difference = hits.float() - reference.float()
    return float(difference.mean()), mean_interval(difference, settings)


def within(value: float, interval: tuple[float, float]) -> bool:
    """Whether ``value`` lies in the closed ``interval``."""
    return interval[0] <= value <= interval[1]


def markdown_table(results: list[SamplerResult], reference: SamplerResult, settings: BootstrapSettings) -> str:
    """One row per sampler: steps, UNet calls per image, images/s, speed relative to ``reference``, top-1 with
    its interval and the paired difference to ``reference`` with its interval (percent points)."""
    pct = f"{settings.level:.0%}"
    lines = [
        (f"| sampler | steps | UNet calls / image | images/s | speed vs {reference.spec.title} | top-1 ({pct} CI) "
         f"| top-1 − {reference.spec.title} ({pct} CI, paired) |"),
        "|---|---|---|---|---|---|---|",
    ]
    for result in results:
        low, high = top1_interval(result.hits, settings)
        if result is reference:
            delta = "reference"
        else:
            diff, (d_low, d_high) = paired_difference(result.hits, reference.hits, settings)
            delta = f"{diff * 100:+.1f} [{d_low * 100:+.1f}, {d_high * 100:+.1f}]"
        lines.append(
            f"| {result.spec.title} | {result.spec.steps} | {result.calls_per_image:.0f} | {result.images_per_second:.1f} "
            f"| {result.images_per_second / reference.images_per_second:.2f}× | {result.top1 * 100:.1f}% "
            f"[{low * 100:.1f}, {high * 100:.1f}] | {delta} |"
        )
    return "\n".join(lines)


def verdict(candidate: SamplerResult, reference: SamplerResult, settings: BootstrapSettings) -> str:
    """One sentence: does ``candidate``'s top-1 lie within ``reference``'s interval, and at what speed."""
    interval = top1_interval(reference.hits, settings)
    inside = within(candidate.top1, interval)
    return (
        f"{candidate.spec.title} top-1 {candidate.top1:.1%} is {'within' if inside else 'outside'} {reference.spec.title}'s "
        f"{settings.level:.0%} CI [{interval[0]:.1%}, {interval[1]:.1%}] "
        f"at {candidate.images_per_second / reference.images_per_second:.2f}× its images/s."
    )


def cpu_summary() -> str:
    """The CPU's model name and the flags that decide fp32/bf16 speed (AVX-512, avx512_bf16, AMX)."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    except OSError:
        pass
    marks = [f"{flag}: {'yes' if flag in flags else 'no'}" for flag in ("avx512f", "avx512_bf16", "amx_bf16")] if flags else []
    return f"{model}, {os.cpu_count()} logical CPUs" + (f" ({', '.join(marks)})" if marks else "")


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def load_demo_weights(weights: Path):
    """``(sd components, captions [K, 77, D], empty caption [1, 77, D], classifier)`` from a ``weights demo`` folder."""
    from dreamdiffusion.models.backbones import load_sd
    from dreamdiffusion.models.captions import load_captions, load_empty_caption
    from dreamdiffusion.models.eval_models import ClassifierConfig, classifier_sidecar, load_classifier

    weights_file = weights / "eval" / "classifier.safetensors"
    sidecar = classifier_sidecar(weights_file)
    for path in (weights / "sd", weights_file, sidecar):
        if not path.exists():
            raise FileNotFoundError(
                f"--weights {weights}: {path} is missing; write the demo's models with "
                f"`dreamdiffusion weights demo --out {weights}` (the tiny random weights have no class captions)"
            )
    captions, _ = load_captions(weights / "sd")
    empty = load_empty_caption(weights / "sd")
    sd = load_sd(str(weights / "sd"), local_files_only=True)
    sd.unet.eval()
    sd.vae.eval()
    settings = {**json.loads(sidecar.read_text()), "weights": None, "weights_path": str(weights_file)}
    classifier = load_classifier(ClassifierConfig(**settings))
    return sd, captions, empty, classifier


def run(
    weights: Path, specs: list[SamplerSpec], reference: SamplerSpec, samples_per_class: int, guidance_scale: float,
    batch: int, seed: int,
) -> tuple[list[SamplerResult], int, str]:
    """Sample and classify with every spec (see the module docstring); returns the results, the class count and
    the classifier's provenance."""
    from dreamdiffusion.generation import derive_seed, generate_images
    from dreamdiffusion.models.condition import Condition

    if samples_per_class < 1 or batch < 1:
        raise ValueError(f"--samples-per-class ({samples_per_class}) and --batch ({batch}) must be >= 1")
    sd, captions, empty, classifier = load_demo_weights(weights)
    if reference not in specs:
        specs = [*specs, reference]
    labels = torch.arange(captions.shape[0]).repeat_interleave(samples_per_class)
    seeds = [derive_seed(seed, i) for i in range(len(labels))]
    calls = []
    hook = sd.unet.register_forward_hook(lambda module, args, out: calls.append(1))

    def sample(spec: SamplerSpec, rows: slice, steps: int) -> Tensor:
        chosen = labels[rows]
        condition = Condition(tokens=None, hidden_states=captions[chosen], time_vector=None)
        null = empty.expand(len(chosen), -1, -1)
        return generate_images(
            sd.unet, sd.vae, sd.scheduler.config, condition, null, sampler=spec.build(sd.scheduler.config),
            num_inference_steps=steps, guidance_scale=guidance_scale, seeds=seeds[rows],
        )

    for spec in specs:  # warm-up: one small batch of every sampler, not timed
        sample(spec, slice(0, min(batch, 2)), min(spec.steps, 3))
    images = {spec: [] for spec in specs}
    seconds = dict.fromkeys(specs, 0.0)
    n_calls = dict.fromkeys(specs, 0)
    starts = list(range(0, len(labels), batch))
    for b, start in enumerate(starts):
        # Samplers take turns batch by batch (order rotated) so that load from other processes falls on all.
        turn = specs[b % len(specs):] + specs[: b % len(specs)]
        for spec in turn:
            calls.clear()
            began = time.perf_counter()
            images[spec].append(sample(spec, slice(start, start + batch), spec.steps))
            seconds[spec] += time.perf_counter() - began
            n_calls[spec] += len(calls)
    hook.remove()
    results = []
    for spec in specs:
        predicted = torch.cat([classifier(chunk).argmax(dim=1) for chunk in images[spec]])
        per_image = n_calls[spec] / len(starts)  # one call per timestep covers the whole (doubled) batch
        expected = unet_calls(spec.build(sd.scheduler.config), spec.steps, sd.scheduler.config)
        if per_image != expected:
            raise RuntimeError(f"{spec.title}: counted {per_image} UNet calls per batch, expected {expected}")
        results.append(SamplerResult(spec, (predicted == labels).to(torch.int64), seconds[spec], per_image))
    return results, captions.shape[0], classifier.provenance


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, default=Path("runs/demo/weights"),
                        help="folder written by `dreamdiffusion weights demo` (sd/ with captions, eval/classifier)")
    parser.add_argument("--samplers", nargs="+", default=list(DEFAULT_SAMPLERS), metavar="NAME:STEPS",
                        help=f"samplers to compare, the first is the candidate (default: {' '.join(DEFAULT_SAMPLERS)})")
    parser.add_argument("--reference", default=DEFAULT_REFERENCE, metavar="NAME:STEPS", help="the sampler others are compared with")
    parser.add_argument("--samples-per-class", type=int, default=20, help="images drawn per class caption")
    parser.add_argument("--guidance-scale", type=float, default=3.0, help="classifier-free guidance (the demo's check: 3)")
    parser.add_argument("--batch", type=int, default=50, help="images per sampling batch (results do not depend on it)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the images and the bootstrap")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples")
    parser.add_argument("--out", type=Path, default=None, help="also write the markdown report to this file")
    args = parser.parse_args(argv)
    try:
        specs = [parse_spec(s) for s in args.samplers]
        reference = parse_spec(args.reference)
    except ValueError as error:
        parser.error(str(error))
    if args.threads is not None:
        if args.threads < 1:
            parser.error(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    settings = BootstrapSettings(n_resamples=args.resamples, seed=args.seed)
    load_before = load_average()
    results, classes, provenance = run(args.weights, specs, reference, args.samples_per_class, args.guidance_scale, args.batch, args.seed)
    ref = next(r for r in results if r.spec == reference)
    import diffusers

    report = "\n".join([
        (f"Demo base model `{args.weights}`: {args.samples_per_class} images × {classes} classes per sampler "
         f"(same seeds for every sampler), guidance {args.guidance_scale:g}, batch {args.batch}; "
         f"{cpu_summary()}; {torch.get_num_threads()} torch threads; torch {torch.__version__}, diffusers "
         f"{diffusers.__version__}; load average {load_before} before, {load_average()} after."),
        f"Classifier: {'random network — top-1 not meaningful' if provenance == RANDOM else provenance}",
        "",
        markdown_table(results, ref, settings),
        "",
        verdict(results[0], ref, settings) if results[0] is not ref else "",
    ]).rstrip() + "\n"
    print(report, end="")
    if args.out is not None:
        from dreamdiffusion.atomic import write_text

        write_text(args.out, report)
    return report


if __name__ == "__main__":
    main()
