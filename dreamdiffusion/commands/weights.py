"""``dreamdiffusion weights tiny --out DIR``: tiny random models for the demo and for trying the pipeline.

Writes ``DIR/sd`` (a Stable Diffusion folder in diffusers layout), ``DIR/clip`` (a CLIP image tower
with its processor) and ``DIR/eval`` (stage-3 evaluation networks: classifier, Inception stand-in, LPIPS
AlexNet; see :mod:`dreamdiffusion.models.eval_models`), built from the same classes as the real models, seeded.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dreamdiffusion.atomic import atomic_dir
from dreamdiffusion.models.backbones import build_tiny_clip, build_tiny_sd
from dreamdiffusion.models.eval_models import build_tiny_eval_networks


def tiny(args: argparse.Namespace) -> int:
    out = Path(args.out)
    with atomic_dir(out / "sd") as tmp:
        build_tiny_sd(tmp, seed=args.seed, image_size=args.image_size, cross_attention_dim=args.cross_attention_dim)
    with atomic_dir(out / "clip") as tmp:
        build_tiny_clip(tmp, seed=args.seed, image_size=args.clip_image_size, projection_dim=args.clip_dim)
    with atomic_dir(out / "eval") as tmp:
        build_tiny_eval_networks(tmp, seed=args.seed)
    print(f"tiny Stable Diffusion in {out / 'sd'}, tiny CLIP in {out / 'clip'}, tiny evaluation networks in {out / 'eval'}")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    weights = commands.add_parser("weights", help="model weights: tiny random ones for the demo")
    sub = weights.add_subparsers(dest="weights_command", required=True)
    p = sub.add_parser("tiny", help="write tiny random SD, CLIP and evaluation networks (seeded) to --out")
    p.add_argument("--out", required=True, help="folder that receives sd/, clip/ and eval/")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--image-size", type=int, default=64, help="SD image side in pixels (latents are 1/8)")
    p.add_argument("--cross-attention-dim", type=int, default=32)
    p.add_argument("--clip-image-size", type=int, default=32)
    p.add_argument("--clip-dim", type=int, default=32, help="CLIP projection (image embedding) size")
    p.set_defaults(func=tiny)
