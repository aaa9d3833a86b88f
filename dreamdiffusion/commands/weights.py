"""Model weights on disk.

* ``dreamdiffusion weights tiny --out DIR``: tiny random models for the demo and tests — ``DIR/sd`` (a
  Stable Diffusion folder in diffusers layout), ``DIR/clip`` (a CLIP image tower with its processor; with
  ``--clip-warmup-classes K`` warmed up on synthetic pictures, see :mod:`dreamdiffusion.models.tiny_clip_warmup`) and
  ``DIR/eval`` (stage-3 evaluation networks: classifier, Inception stand-in, LPIPS AlexNet; see
  :mod:`dreamdiffusion.models.tiny_eval_networks`), built from the same classes as the real models, seeded.
* ``dreamdiffusion weights demo --out DIR [--seed 0] [--classes 10]``: the embedded default's models, trained on
  synthetic pictures of their own (never a picture of the synthetic dataset): ``DIR/sd`` a base model that draws
  the classes (stage 0, :mod:`dreamdiffusion.stages.base_model`), ``DIR/clip`` the warmed-up tiny CLIP and
  ``DIR/eval`` a classifier that knows the pictures (n-way top-1, and FID/IS as ``inception.architecture:
  classifier``) with LPIPS's random AlexNet; prints two checks (:mod:`dreamdiffusion.models.demo_weights`).
* ``dreamdiffusion weights fetch --out DIR``: on a machine with internet (a cluster login node), download
  the real models into ``DIR`` so configs can point at local folders and compute nodes run offline:
  ``DIR/stable-diffusion-v1-5`` (unet, vae, scheduler only — no text encoder is needed) and
  ``DIR/clip-vit-large-patch14``.
* ``dreamdiffusion weights fetch-eval --out DIR``: the stage-3 networks' published files (ViT-H/14 SWAG,
  torch-fidelity's FID Inception-v3, AlexNet for LPIPS), hash-checked, for ``weights_path`` in the eval config.
* ``dreamdiffusion weights import-authors --checkpoint checkpoint.pth --out DIR``: the authors' released
  checkpoint as a pipeline folder (:mod:`dreamdiffusion.commands.import_authors`).
* ``dreamdiffusion weights fetch-suite --out DIR``: the reconstruction suite's files (AlexNet, Inception-v3,
  EfficientNet-B1 from torchvision, SwAV's ResNet-50) for ``configs/things/eval.yaml``.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from dreamdiffusion import progress
from dreamdiffusion.atomic import atomic_dir
from dreamdiffusion.commands import import_authors
from dreamdiffusion.models.backbones import CLIP_VIT_L14, SD15, build_tiny_clip, build_tiny_sd
from dreamdiffusion.models.demo_weights import PARTS
from dreamdiffusion.models.tiny_clip_warmup import ClipWarmup
from dreamdiffusion.models.tiny_eval_networks import build_tiny_eval_networks

# What stage 2 and 3 read from each hub repository; weights in safetensors only.
FETCH = {
    "stable-diffusion-v1-5": (
        SD15,
        ["model_index.json", "unet/config.json", "unet/diffusion_pytorch_model.safetensors",
         "vae/config.json", "vae/diffusion_pytorch_model.safetensors", "scheduler/scheduler_config.json"],
    ),
    "clip-vit-large-patch14": (CLIP_VIT_L14, ["config.json", "preprocessor_config.json", "model.safetensors"]),
}


def tiny(args: argparse.Namespace) -> int:
    out = Path(args.out)
    with atomic_dir(out / "sd") as tmp:
        build_tiny_sd(tmp, seed=args.seed, image_size=args.image_size, cross_attention_dim=args.cross_attention_dim)
    with atomic_dir(out / "clip") as tmp:
        warmup = ClipWarmup(classes=args.clip_warmup_classes, seed=args.seed) if args.clip_warmup_classes else None
        build_tiny_clip(tmp, seed=args.seed, image_size=args.clip_image_size, projection_dim=args.clip_dim, warmup=warmup)
    with atomic_dir(out / "eval") as tmp:
        build_tiny_eval_networks(tmp, seed=args.seed)
    print(f"tiny Stable Diffusion in {out / 'sd'}, tiny CLIP in {out / 'clip'}, tiny evaluation networks in {out / 'eval'}")
    return 0


def demo(args: argparse.Namespace) -> int:
    from dreamdiffusion.models.demo_weights import MANIFEST, PARTS_DIR, SAMPLES_PNG, check_out_folder, write_demo_weights
    from dreamdiffusion.stages.base_model import BaseModelConfig

    out = Path(args.out)
    parts = PARTS if args.part is None else (args.part,)
    try:
        check_out_folder(out)
    except (FileExistsError, NotADirectoryError) as e:
        print(f"dreamdiffusion weights demo: {e}", file=sys.stderr)
        return 2
    # a missing or mismatched part record is one `error:` line from the command line's shared handling
    report = write_demo_weights(out, BaseModelConfig(classes=args.classes, seed=args.seed), parts=parts)
    if report is None:
        written = {"base-model": "base model in sd/", "clip-eval": "warmed-up tiny CLIP in clip/, evaluation networks in eval/"}
        print(f"part {args.part}: {written[args.part]} of {out}; record in {out / PARTS_DIR / (args.part + '.json')}")
        return 0
    print(f"base model in {out / 'sd'}, warmed-up tiny CLIP in {out / 'clip'}, evaluation networks in {out / 'eval'}")
    print(f"check (a): the demo classifier recognises {report.caption_sample_accuracy:.1%} of the base model's caption samples")
    print(f"check (b): the demo classifier is right on {report.classifier_held_out_accuracy:.1%} of held-out generator pictures")
    print(f"VAE reconstruction PSNR {report.vae_psnr:.1f} dB; caption samples: {out / SAMPLES_PNG}")
    times = ", ".join(f"{k} {report.wall_seconds[k]:.0f} s ({report.cpu_seconds[k]:.0f} CPU-s)" for k in report.wall_seconds)
    print(f"time: {times}; all figures in {out / MANIFEST}")
    return 0


@contextlib.contextmanager
def _hub_bars():
    """huggingface_hub's download bars follow ours: off under ``--quiet`` or when stderr is not a terminal."""
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    switch_off = not progress.enabled() and not are_progress_bars_disabled()
    if switch_off:
        disable_progress_bars()
    try:
        yield
    finally:
        if switch_off:
            enable_progress_bars()


def fetch(args: argparse.Namespace) -> int:
    from huggingface_hub import snapshot_download

    out = Path(args.out)
    failed = []
    for folder, (repo_id, patterns) in FETCH.items():
        target = out / folder
        print(f"fetching {repo_id} -> {target}")
        try:
            with _hub_bars():
                snapshot_download(repo_id, local_dir=target, allow_patterns=patterns)
        except Exception as e:  # noqa: BLE001 - report every model, then fail: the others may still be usable
            failed.append(f"{repo_id}: {type(e).__name__}: {e}")
            continue
        missing = [p for p in patterns if not (target / p).is_file()]
        if missing:
            failed.append(f"{repo_id}: downloaded, but {', '.join(missing)} missing in {target}")
    if failed:
        print("could not fetch:\n  " + "\n  ".join(failed), file=sys.stderr)
        print("check the network, `huggingface-cli login` for gated models, and HF_HUB_OFFLINE (must be unset)", file=sys.stderr)
        return 1
    print(f"done; point configs at {out}/stable-diffusion-v1-5 and {out}/clip-vit-large-patch14 (e.g. `make reproduce WEIGHTS={out}`)")
    return 0


def _download(fetcher, folder: str, what: str) -> dict | None:
    """``fetcher(folder)``'s paths, or ``None`` after printing why the download failed."""
    try:
        return fetcher(folder)
    except Exception as e:  # noqa: BLE001 - network errors of many kinds; say what to do
        print(f"could not fetch the {what} ({type(e).__name__}: {e}); this needs internet", file=sys.stderr)
        return None


def fetch_eval(args: argparse.Namespace) -> int:
    from dreamdiffusion.models.eval_weights import fetch_eval_weights

    paths = _download(fetch_eval_weights, args.out, "evaluation weights")
    if paths is None:
        return 1
    overrides = " ".join(f"--model.init_args.{key}.weights_path={path}" for key, path in paths.items())
    print(f"done; evaluate offline with: dreamdiffusion test -c configs/eval.yaml {overrides}")
    return 0


def fetch_suite(args: argparse.Namespace) -> int:
    from dreamdiffusion.models.feature_nets import fetch_suite_weights

    paths = _download(fetch_suite_weights, args.out, "reconstruction-suite weights")
    if paths is None:
        return 1
    print("done: " + ", ".join(f"{key}: {path}" for key, path in paths.items()) + " (`make reproduce-things WEIGHTS=...` reads them)")
    return 0


def _warmup_classes(text: str) -> int:
    """0 (no warm-up) or a class count of at least 2 (a contrastive loss needs two classes)."""
    value = int(text)
    if value == 1 or value < 0:
        raise argparse.ArgumentTypeError(f"{value}: use 0 (no warm-up) or at least 2 classes")
    return value


def _class_count(text: str) -> int:
    """A class count of at least 2 (the demo's models tell classes apart)."""
    value = int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"{value}: the demo's models need at least 2 classes (the synthetic dataset's class count)")
    return value


def register(commands: argparse._SubParsersAction) -> None:
    weights = commands.add_parser("weights", help="model weights: tiny or demo-trained ones, the real ones fetched, the authors' imported")
    sub = weights.add_subparsers(dest="weights_command", required=True, metavar="COMMAND")
    p = sub.add_parser("tiny", help="write tiny random SD, CLIP and evaluation networks (seeded) to --out")
    p.add_argument("--out", required=True, help="folder that receives sd/, clip/ and eval/")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--image-size", type=int, default=32, help="SD image side in pixels (latents are 1/8); 32 like the demo's base model")
    p.add_argument("--cross-attention-dim", type=int, default=32)
    p.add_argument("--clip-image-size", type=int, default=32)
    p.add_argument("--clip-dim", type=int, default=32, help="CLIP projection (image embedding) size")
    p.add_argument(
        "--clip-warmup-classes", type=_warmup_classes, default=0, metavar="K",
        help="K > 0: warm the tiny CLIP up contrastively on its own synthetic pictures of K classes (the demo's "
        "class count) so its embeddings separate them; 0: leave it random",
    )
    p.set_defaults(func=tiny)
    d = sub.add_parser(
        "demo",
        help="stage 0 of the demo: train its base model, CLIP and evaluation networks on pictures of their own -> --out",
        description="Train the embedded default's models on synthetic pictures of their own (never the dataset's) and "
        "write them to --out: base model (sd/), warmed-up CLIP (clip/), evaluation networks (eval/).",
    )
    d.add_argument("--out", required=True, help="new, empty or earlier `weights` folder that receives sd/, clip/ and eval/")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--classes", type=_class_count, default=10, help="class count of the synthetic dataset the demo uses")
    d.add_argument(
        "--part", choices=PARTS, default=None,
        help="run one part only (default: all, in this order): base-model -> sd/, clip-eval -> clip/ and eval/, "
        "checks (needs the other two, made with the same --seed/--classes) -> demo_weights.json; `make demo` runs "
        "them as separate steps",
    )
    d.set_defaults(func=demo)
    f = sub.add_parser("fetch", help="download SD-1.5 and CLIP ViT-L/14 to --out (needs internet)")
    f.add_argument("--out", default="weights", help="folder that receives one sub-folder per model")
    f.set_defaults(func=fetch)
    e = sub.add_parser("fetch-eval", help="download the stage-3 networks (ViT-H/14 SWAG, FID Inception, AlexNet) to --out")
    e.add_argument("--out", default="weights/eval", help="folder that receives the three weights files")
    e.set_defaults(func=fetch_eval)
    import_authors.register(sub)
    s = sub.add_parser("fetch-suite", help="download the THINGS reconstruction suite's networks "
                                           "(AlexNet, Inception-v3, EfficientNet-B1, SwAV)")
    s.add_argument("--out", default="weights/eval", help="folder that receives the four weights files")
    s.set_defaults(func=fetch_suite)
