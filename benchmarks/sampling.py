"""Stage-3 cost: sampling throughput of DDIM-50 vs PLMS-250 (the authors') on the same model, UNet calls per
image (counted with a forward hook, not assumed), and the metric pass's own time per 100 images. The default
sampler, DPM-Solver++-20, is compared with both, speed and quality, by ``benchmarks/samplers.py``.

The pipeline is the tiny random one (:func:`dreamdiffusion.pipeline.build_tiny_pipeline`, 64 px, 4×8×8
latents); a UNet call there is cheap, so the ratio DDIM/PLMS and the calls per image are what transfer to
SD-1.5, not the absolute images/s. The metric pass uses the real FID Inception-v3 architecture (random
weights, 299 px inside), LPIPS with the real AlexNet, and the tiny classifier (ViT-H/14 is not timed here).

Run from the repository root::

    python benchmarks/sampling.py                 # ~2-4 min on 2 shared CPU cores
    python benchmarks/sampling.py --batch 4 --metric-images 20
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from dreamdiffusion.generation import generate_images, unet_calls
from dreamdiffusion.metrics import ImageMetrics, MetricSettings, NWayTopKAccuracy
from dreamdiffusion.models.eval_models import (
    ClassifierConfig,
    InceptionConfig,
    LPIPSConfig,
    load_classifier,
    load_inception,
    load_lpips_net,
)
from dreamdiffusion.models.tiny_eval_networks import build_tiny_eval_networks, write_random_inception_v3
from dreamdiffusion.pipeline import DreamDiffusionPipeline, build_tiny_pipeline


def time_sampler(pipe: DreamDiffusionPipeline, sampler: str, steps: int, batch: int) -> tuple[float, float]:
    """(images per second, UNet calls per image) for one batch of ``batch`` EEG windows."""
    calls = []
    handle = pipe.unet.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    eeg = torch.randn(batch, 128, 512, generator=torch.Generator().manual_seed(0))
    start = time.perf_counter()
    with torch.no_grad():
        condition = pipe.encode_eeg(eeg)
        generate_images(
            pipe.unet, pipe.vae, pipe.scheduler.config, condition, None, sampler=sampler,
            num_inference_steps=steps, seeds=list(range(batch)),
        )
    seconds = time.perf_counter() - start
    handle.remove()
    assert len(calls) == unet_calls(sampler, steps)
    return batch / seconds, sum(calls) / batch


def time_metrics(folder: Path, n_images: int, batch: int) -> tuple[float, float]:
    """(seconds per 100 generated images of the metric updates — FID, IS, PSNR, SSIM, LPIPS, n-way — and the
    seconds of the final compute, paid once: FID's 2048×2048 matrix square root, IS, n-way)."""
    nets = build_tiny_eval_networks(folder / "eval", seed=0)
    inception_file = write_random_inception_v3(folder / "inception_v3.safetensors")
    pool, logits = load_inception(InceptionConfig("inception_v3_fidelity", str(inception_file)))
    metrics = ImageMetrics(pool, logits, load_lpips_net(LPIPSConfig(nets["lpips"])), MetricSettings())
    classifier = load_classifier(ClassifierConfig("squeezenet1_1", None, nets["classifier"], num_classes=100, image_size=64))
    n_way = NWayTopKAccuracy(50, 1, 50, seed=0)
    g = torch.Generator().manual_seed(0)
    generated, truth = torch.rand(n_images, 3, 64, 64, generator=g), torch.rand(n_images, 3, 64, 64, generator=g)
    start = time.perf_counter()
    with torch.no_grad():
        for i in range(0, n_images, batch):
            gen, gt = generated[i : i + batch], truth[i : i + batch]
            metrics.update(gen, gt)
            n_way.update(classifier(gen), classifier(gt).argmax(dim=1), torch.arange(i, i + len(gen)))
        updated = time.perf_counter()
        metrics.compute()
        n_way.compute()
    return (updated - start) * 100 / n_images, time.perf_counter() - updated


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8, help="EEG windows per sampling batch")
    parser.add_argument("--metric-images", type=int, default=50, help="images in the timed metric pass")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    with tempfile.TemporaryDirectory() as tmp:
        pipe = DreamDiffusionPipeline.from_pretrained(build_tiny_pipeline(Path(tmp) / "pipeline")).eval()
        time_sampler(pipe, "ddim", 2, 2)  # warm-up
        samplers = {"DDIM-50": ("ddim", 50), "PLMS-250": ("plms", 250)}
        results = {name: time_sampler(pipe, *spec, args.batch) for name, spec in samplers.items()}
        print(f"tiny pipeline (64 px), batch {args.batch}, {torch.get_num_threads()} threads, {torch.__version__}")
        for name, (rate, calls) in results.items():
            print(f"  {name:9s} {rate:7.2f} images/s   {calls:5.0f} UNet calls per image")
        ratio = results["DDIM-50"][0] / results["PLMS-250"][0]
        print(f"  DDIM-50 is {ratio:.2f}x faster than PLMS-250 per image (UNet calls ratio {251 / 50:.2f})")
        per100, final = time_metrics(Path(tmp), args.metric_images, args.batch)
        print(f"metric pass (Inception-v3 at 299 px: 3 passes per generated image, real + fake + IS; AlexNet LPIPS; "
              f"tiny classifier; {args.metric_images} images of 64 px): {per100:.1f} s per 100 images "
              f"+ {final:.1f} s once for compute()")


if __name__ == "__main__":
    main()
