"""Items per second of ``ImageNetEEGDataModule``'s train loader, 2 workers, with and without caches.

Two settings, both on synthetic data written in the real formats:

* ``demo``  — the demo's data (pictures 64–96 px), ``image_size`` 64, tiny CLIP processor (32 px);
* ``512``   — pictures of ImageNet's typical size (375–500 px a side), ``image_size`` 512, a CLIP
  processor with ViT-L/14's settings (224 px), as in the paper's stage 2.

"caches" turns on ``cache_clip_embeds`` and ``cache_latents`` (tiny random CLIP tower and VAE of the real
classes; their one-off build time in ``prepare_data`` is printed apart). Caching needs ``augment_p=0``;
the no-cache rows are shown with the paper's ``augment_p=0.5`` and with 0. Loaders run one warm-up epoch
(workers start, files are opened), then the timed epochs. Prints a table; run from the repository root:

    OMP_NUM_THREADS=1 python benchmarks/paired_loader.py [--epochs 2] [--workers 2]
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # measure this checkout's code, not an installed copy

def items_per_second(dm, epochs: int) -> float:
    loader = dm.train_dataloader()
    for _ in loader:  # warm-up: workers start
        pass
    start, n = time.perf_counter(), 0
    for _ in range(epochs):
        for batch in loader:
            n += len(batch["image_name"])
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs per row")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=25)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    torch.set_num_threads(1)

    from dreamdiffusion.data.imagenet_eeg import ImageNetEEGDataModule
    from dreamdiffusion.data.synthetic import write_synthetic_imagenet_eeg
    from dreamdiffusion.models.backbones import build_tiny_clip, build_tiny_sd

    root = Path(tempfile.mkdtemp(prefix="paired-loader-"))
    settings = {
        "demo": dict(image_size=64, clip_size=32, sides=(64, 96)),
        "512": dict(image_size=512, clip_size=224, sides=(375, 500)),
    }
    rows = []
    for name, s in settings.items():
        data = write_synthetic_imagenet_eeg(root / name / "data", min_image_side=s["sides"][0], max_image_side=s["sides"][1])
        clip = build_tiny_clip(root / name / "clip", image_size=s["clip_size"])
        sd = build_tiny_sd(root / name / "sd", image_size=s["image_size"])
        for caches, augment_p in ((False, 0.5), (False, 0.0), (True, 0.0)):
            dm = ImageNetEEGDataModule(
                str(data / "eeg_5_95_std.pth"), str(data / "block_splits_by_image_all.pth"), str(data / "images"),
                image_size=s["image_size"], clip_model=str(clip), sd_model=str(sd), local_files_only=True,
                cache_clip_embeds=caches, cache_latents=caches, cache_dir=str(root / name / "cache"), cache_device="cpu",
                augment_p=augment_p, batch_size=args.batch_size, num_workers=args.workers,
            )
            start = time.perf_counter()
            dm.prepare_data()
            build = time.perf_counter() - start
            dm.setup("fit")
            rate = items_per_second(dm, args.epochs)
            rows.append((name, s["image_size"], s["clip_size"], "on" if caches else "off", augment_p, len(dm.datasets["train"]),
                         rate, build if caches else None))

    print(f"\nImageNetEEGDataModule train loader, {args.workers} workers, batch {args.batch_size}, "
          f"{torch.get_num_threads()} torch thread(s)\n")
    print("| setting | image px | CLIP px | caches | augment_p | train items | items/s | cache build (s, once) |")
    print("|---|---|---|---|---|---|---|---|")
    for name, size, clip_size, caches, p, n, rate, build in rows:
        print(f"| {name} | {size} | {clip_size} | {caches} | {p} | {n} | {rate:.0f} | {'' if build is None else f'{build:.1f}'} |")


if __name__ == "__main__":
    main()
