"""Stage-2 training-step time, split by part, with and without the paired-data caches.

One training step of :class:`~dreamdiffusion.stages.finetune.EEGSDFinetuneModule` (E+A, both losses) is
timed in four parts, each closed by its own clock:

* ``eeg encoder``  τθ(y) forward (encoder + token/dim mappers),
* ``vae encode``   the VAE posterior of the batch images (frozen, no_grad) — 0 with cached latents,
* ``clip``         CLIP ``image_embeds`` of the batch's ``clip_pixels`` (frozen, no_grad) — 0 with cached embeds,
* ``unet f+b``     noising, UNet forward, L_SD + L_clip, the whole backward and the AdamW step.

Two configurations: ``tiny`` (the test/demo models: 64 px, UNet (32, 64), tiny encoder) and ``mid``
(256 px, UNet block_out_channels (128, 256, 512), a VAE of SD's depth with narrow channels, a small CLIP,
the 18.3M encoder). Uncached and cached steps alternate (order flipped every round) on the same batch
so machine noise hits both alike; medians are printed with the cached/uncached ratio.

Run from the repository root (the script puts its own checkout first on ``sys.path``)::

    python benchmarks/finetune_step.py                      # tiny and mid, ~2 min on 2 CPU cores
    python benchmarks/finetune_step.py --configs tiny --rounds 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from dreamdiffusion.models.backbones import build_tiny_clip, build_tiny_sd
from dreamdiffusion.models.encoder_file import save_encoder
from dreamdiffusion.models.mae import EEGEncoder, preset
from dreamdiffusion.stages.finetune import EEGSDFinetuneModule, clip_loss

PARTS = ("eeg encoder", "vae encode", "clip", "unet f+b")


def build_mid(root: Path) -> dict:
    """256 px SD-like models: UNet (128, 256, 512) with cross-attention 768, 8x VAE, small CLIP 112 px."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(0)
    UNet2DConditionModel(
        sample_size=32, block_out_channels=(128, 256, 512), layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=768, attention_head_dim=8, norm_num_groups=32,
    ).save_pretrained(root / "sd" / "unet")
    AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(32, 64, 128, 128), layers_per_block=2, latent_channels=4, norm_num_groups=32,
        sample_size=256,
    ).save_pretrained(root / "sd" / "vae")
    DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear").save_pretrained(root / "sd" / "scheduler")
    config = CLIPVisionConfig(
        hidden_size=256, intermediate_size=1024, num_hidden_layers=4, num_attention_heads=4,
        image_size=112, patch_size=14, projection_dim=768,
    )
    CLIPVisionModelWithProjection(config).save_pretrained(root / "clip")
    CLIPImageProcessor(size={"shortest_edge": 112}, crop_size={"height": 112, "width": 112}).save_pretrained(root / "clip")
    save_encoder(EEGEncoder(preset("18.3M")), root / "pretrain", preset="18.3M")
    return {"sd_model": str(root / "sd"), "clip_model": str(root / "clip"), "encoder_dir": str(root / "pretrain"),
            "encoder_preset": "18.3M", "image_size": 256, "clip_size": 112}


def build_tiny(root: Path) -> dict:
    torch.manual_seed(0)
    build_tiny_sd(root / "sd")
    build_tiny_clip(root / "clip")
    save_encoder(EEGEncoder(preset("tiny")), root / "pretrain", preset="tiny")
    return {"sd_model": str(root / "sd"), "clip_model": str(root / "clip"), "encoder_dir": str(root / "pretrain"),
            "encoder_preset": "tiny", "image_size": 64, "clip_size": 32}


def make_batch(b: int, image_size: int, clip_size: int) -> dict:
    g = torch.Generator().manual_seed(0)
    return {
        "eeg": torch.randn(b, 128, 512, generator=g),
        "image": torch.rand(b, 3, image_size, image_size, generator=g) * 2 - 1,
        "clip_pixels": torch.randn(b, 3, clip_size, clip_size, generator=g),
    }


def timed_step(module: EEGSDFinetuneModule, optimizer, batch: dict) -> dict[str, float]:
    """One training step; seconds per part."""
    times = {}
    optimizer.zero_grad(set_to_none=True)
    t0 = time.perf_counter()
    condition = module.encode_eeg(batch["eeg"])
    t1 = time.perf_counter()
    latents = module.image_latents(batch)
    t2 = time.perf_counter()
    target = module.clip_image_embeds(batch)
    t3 = time.perf_counter()
    loss = module.sd_loss(latents, condition) + clip_loss(module.condition_model.clip_embedding(condition.tokens), target)
    loss.backward()
    optimizer.step()
    t4 = time.perf_counter()
    times.update(zip(PARTS, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True))
    return times


def run(name: str, spec: dict, batch_size: int, rounds: int) -> None:
    common = {k: spec[k] for k in ("sd_model", "clip_model", "encoder_dir", "encoder_preset")}
    uncached = EEGSDFinetuneModule(**common, local_files_only=True, val_sample_every_n_epochs=0)
    cached = EEGSDFinetuneModule(**common, local_files_only=True, val_sample_every_n_epochs=0,
                                 use_cached_latents=True, use_cached_clip_embeds=True)
    batch = make_batch(batch_size, spec["image_size"], spec["clip_size"])
    with torch.no_grad():  # what the data module's caches hold
        posterior = uncached.vae.encode(batch["image"]).latent_dist
        cached_batch = {"eeg": batch["eeg"], "latent_mean": posterior.mean, "latent_std": posterior.std,
                        "clip_embeds": uncached.clip(pixel_values=batch["clip_pixels"]).image_embeds}
    contenders = {"uncached": (uncached, batch), "cached": (cached, cached_batch)}
    optimizers = {k: m.train().configure_optimizers() for k, (m, _) in contenders.items()}
    for key, (module, b) in contenders.items():  # warm-up
        timed_step(module, optimizers[key], b)
    results: dict[str, list[dict[str, float]]] = {k: [] for k in contenders}
    for r in range(rounds):
        order = list(contenders) if r % 2 == 0 else list(reversed(contenders))
        for key in order:
            module, b = contenders[key]
            results[key].append(timed_step(module, optimizers[key], b))
    n_unet = sum(p.numel() for p in uncached.unet.parameters()) / 1e6
    n_train = sum(p.numel() for p in uncached.parameters() if p.requires_grad) / 1e6
    print(f"\n== {name}: {spec['image_size']} px, batch {batch_size}, UNet {n_unet:.1f}M params, "
          f"trainable {n_train:.1f}M, encoder {spec['encoder_preset']}, {rounds} interleaved rounds (ms)")
    print(f"{'':16s}" + "".join(f"{p:>13s}" for p in PARTS) + f"{'step':>11s}")
    totals = {}
    for stat, fn in (("median", statistics.median), ("min", min)):
        for key, rows in results.items():
            part = {p: fn(row[p] for row in rows) * 1e3 for p in PARTS}
            totals[key, stat] = fn(sum(row.values()) for row in rows) * 1e3
            print(f"{key + ' ' + stat:16s}" + "".join(f"{part[p]:13.1f}" for p in PARTS) + f"{totals[key, stat]:11.1f}")
    print("cached / uncached step time: "
          f"{totals['cached', 'median'] / totals['uncached', 'median']:.2f} (medians), "
          f"{totals['cached', 'min'] / totals['uncached', 'min']:.2f} (best of {rounds})")
    # within-step share of the frozen towers: immune to the load drifting between the two variants
    share = statistics.median((row["vae encode"] + row["clip"]) / sum(row.values()) for row in results["uncached"])
    print(f"VAE + CLIP share of an uncached step (median over rounds): {share:.0%} "
          f"-> cached/uncached expected {1 - share:.2f} when the rest runs at the same speed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", nargs="+", default=["tiny", "mid"], choices=["tiny", "mid"])
    parser.add_argument("--rounds", type=int, default=20, help="interleaved rounds for tiny")
    parser.add_argument("--rounds-mid", type=int, default=5, help="interleaved rounds for mid")
    parser.add_argument("--batch-tiny", type=int, default=8)
    parser.add_argument("--batch-mid", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU fp32")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.configs:
            root = Path(tmp) / name
            spec = build_tiny(root) if name == "tiny" else build_mid(root)
            run(name, spec, *((args.batch_tiny, args.rounds) if name == "tiny" else (args.batch_mid, args.rounds_mid)))


if __name__ == "__main__":
    main()
