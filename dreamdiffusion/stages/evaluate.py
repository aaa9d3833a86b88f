"""Stage 3: generate images from the EEG of a split and measure them (DreamDiffusion Sec. 4; SPEC.md).

``dreamdiffusion test -c configs/eval.yaml`` loads a stage-2 ``pipeline/`` folder, generates
``num_samples`` images per EEG trial of the data module's test split and writes into the stage folder
(``trainer.default_root_dir``, i.e. ``<run_dir>/eval``):

* ``metrics.json`` — every metric with its settings, the number of images and the pipeline it scored;
* ``metrics.md`` — a table shaped like the paper's Table 1 plus 50-way top-1, the paper's figures beside ours;
* ``samples/`` — ``trial<index>_<image>_gt.png`` and ``trial<index>_<image>_sample<k>.png``, and one
  ``grid_class<label>.png`` per class (rows: trials; columns: ground truth | samples).

``dreamdiffusion predict -c configs/eval.yaml`` only generates, into ``<stage folder>/predictions/``.

Seeds: sample ``k`` of trial ``index`` starts from noise seeded with ``derive_seed(seed, index, k)``; its
n-way trials are seeded from the same key. Multi-process runs split the trials by ``index % world_size``
(``trainer.use_distributed_sampler: false``, so no process sees padded duplicates) — every trial is
generated and counted exactly once and the figures do not depend on batch size or number of processes.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import lightning as L
import torch
from torch import Tensor, nn
from torchmetrics import CatMetric, SumMetric

from dreamdiffusion.atomic import atomic_path, write_text
from dreamdiffusion.generation import derive_seed, generate_images, unet_calls
from dreamdiffusion.metrics import ImageMetrics, MeanMetric, MetricSettings, NWayTopKAccuracy, RetrievalTop1, image_ids
from dreamdiffusion.models.eval_models import (
    ClassifierConfig,
    InceptionConfig,
    LPIPSConfig,
    load_classifier,
    load_inception,
    load_lpips_net,
)

# The paper's figures (Table 1: DreamDiffusion and Brain2Image; Table 2: full model, 50-way top-1 in %).
PAPER = {
    "DreamDiffusion (paper)": {"fid": 3.61, "inception_score": 28.54, "psnr": 14.6, "ssim": 0.267, "lpips": 0.644, "top1": 45.8},
    "Brain2Image (paper)": {"fid": 18.76, "inception_score": 5.06, "psnr": 12.8, "ssim": 0.213, "lpips": 0.701, "top1": None},
}


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text)


class EvalModule(L.LightningModule):
    """Generate from the EEG of a split with a stage-2 pipeline and compute every stage-3 metric.

    Parameters
    ----------
    pipeline
        Folder written by stage 2 (``<run_dir>/finetune/pipeline``).
    num_samples
        Images generated per EEG trial (the authors: 5).
    sampler, num_inference_steps, guidance_scale
        The sampler: ``ddim`` (default, 50 steps), ``plms`` (the authors, 250 steps) or any diffusers scheduler
        class name (``DPMSolverMultistepScheduler``, ``EulerDiscreteScheduler``, ``UniPCMultistepScheduler``,
        ...), built on the pipeline's noise schedule; classifier-free guidance scale (1: none).
    seed
        Seeds generation and the n-way trials.
    image_size
        Generated side in pixels (default: the pipeline's native size, 512 for SD-1.5). Ground-truth images
        are resized to it (bilinear, antialiased) for PSNR/SSIM/LPIPS/FID when their size differs.
    classifier, inception, lpips
        Evaluation networks (:mod:`dreamdiffusion.models.eval_models`): local weights files or downloads.
    n_way, top_k, n_trials
        n-way top-k accuracy (paper: 50-way top-1); ``n_way`` is capped at the classifier's class count.
    is_splits
        Inception Score splits (10).
    clip_model, local_files_only
        CLIP image tower (folder or hub id) for EEG→CLIP retrieval top-1; ``None`` skips retrieval unless the
        batches carry cached ``clip_embeds``. It must be the model the data module's ``clip_pixels`` were
        made for and the pipeline's CLIP head was trained against.
    max_grid_rows
        Trials per class in each grid image.
    autocast
        bf16 autocast in sampling (``None``: on for CUDA with bf16).
    """

    def __init__(
        self,
        pipeline: str,
        num_samples: int = 5,
        sampler: str = "ddim",
        num_inference_steps: int = 50,
        guidance_scale: float = 1.0,
        seed: int = 0,
        image_size: int | None = None,
        classifier: ClassifierConfig | None = None,
        inception: InceptionConfig | None = None,
        lpips: LPIPSConfig | None = None,
        n_way: int = 50,
        top_k: int = 1,
        n_trials: int = 50,
        is_splits: int = 10,
        clip_model: str | None = None,
        local_files_only: bool = False,
        max_grid_rows: int = 8,
        autocast: bool | None = None,
    ) -> None:
        super().__init__()
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        unet_calls(sampler, num_inference_steps)  # validates the sampler name and the step count
        self.pipeline_dir = str(pipeline)
        self.num_samples, self.sampler, self.num_inference_steps = num_samples, sampler, num_inference_steps
        self.guidance_scale, self.seed, self.image_size, self.autocast = guidance_scale, seed, image_size, autocast
        self.classifier_config = classifier or ClassifierConfig()
        self.inception_config = inception or InceptionConfig()
        self.lpips_config = lpips or LPIPSConfig()
        self.n_way_requested, self.top_k, self.n_trials, self.is_splits = n_way, top_k, n_trials, is_splits
        self.clip_model_source, self.local_files_only = clip_model, local_files_only
        self.max_grid_rows = max_grid_rows
        self.save_hyperparameters()
        self.loaded = False

    # ------------------------------------------------------------------------------------------ set-up
    def setup(self, stage: str) -> None:
        """Load the pipeline (every stage) and, except for predict, the evaluation networks and metrics."""
        if not self.loaded:
            from dreamdiffusion.pipeline import DreamDiffusionPipeline

            pipe = DreamDiffusionPipeline.from_pretrained(self.pipeline_dir)
            self.unet, self.vae, self.condition_model = pipe.unet, pipe.vae, pipe.condition_model
            for module in (self.unet, self.vae, self.condition_model):
                module.eval().requires_grad_(False)
            self.scheduler_config = dict(pipe.scheduler.config)
            self.native_size = pipe.image_size
            self.out_size = self.image_size or self.native_size
            self.loaded = True
        if stage == "predict" or hasattr(self, "image_metrics"):
            return
        self.classifier = load_classifier(self.classifier_config)
        self.n_way = min(self.n_way_requested, self.classifier.num_classes)
        pool, logits = load_inception(self.inception_config)
        self.settings = MetricSettings(fid_features=int(pool.num_features), is_splits=self.is_splits)
        self.image_metrics = ImageMetrics(pool, logits, load_lpips_net(self.lpips_config), self.settings)
        self.n_way_metric = NWayTopKAccuracy(self.n_way, self.top_k, self.n_trials, self.seed)  # mean over samples
        self.n_way_best = MeanMetric()  # best of the samples of each trial
        self.trials = SumMetric()
        self.trial_index = CatMetric().set_dtype(torch.float64)  # for the per-class grids
        self.trial_label = CatMetric().set_dtype(torch.float64)
        self.retrieval_trials = SumMetric()
        self.retrieval = RetrievalTop1()
        self.clip = None
        if self.clip_model_source is not None:
            from dreamdiffusion.models.backbones import load_clip

            self.clip, _ = load_clip(self.clip_model_source, local_files_only=self.local_files_only)
            self.clip.eval().requires_grad_(False)
            clip_dim = self.clip.config.projection_dim
            if clip_dim != self.condition_model.config.clip_dim:
                raise ValueError(
                    f"CLIP model {self.clip_model_source} embeds in {clip_dim} dimensions but the pipeline's CLIP "
                    f"head predicts {self.condition_model.config.clip_dim}; use the CLIP model stage 2 trained with"
                )

    @property
    def stage_dir(self) -> Path:
        return Path(self.trainer.default_root_dir)

    def check_sharding(self, loaders) -> None:
        """Refuse a distributed sampler: it pads the split with duplicates that would be counted twice."""
        from torch.utils.data import DistributedSampler

        if self.trainer.world_size <= 1:
            return
        for loader in loaders if isinstance(loaders, (list, tuple)) else [loaders]:
            if isinstance(getattr(loader, "sampler", None), DistributedSampler):
                raise RuntimeError(
                    "evaluation on several processes needs trainer.use_distributed_sampler: false (the trials are "
                    "split by index % world_size; a DistributedSampler pads with duplicates that would count twice)"
                )

    def on_test_start(self) -> None:
        self.check_sharding(self.trainer.test_dataloaders)
        (self.stage_dir / "samples").mkdir(parents=True, exist_ok=True)

    def on_predict_start(self) -> None:
        self.check_sharding(self.trainer.predict_dataloaders)
        (self.stage_dir / "predictions").mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------------------------------ generation
    def own_rows(self, batch: dict) -> Tensor:
        """Rows of ``batch`` this process handles: ``index % world_size == global_rank``."""
        return (batch["index"] % self.trainer.world_size) == self.trainer.global_rank

    @torch.no_grad()
    def generate(self, eeg: Tensor, index: Tensor) -> tuple[Tensor, object]:
        """``[B, S, 3, H, W]`` images in [0, 1] (S = num_samples) and the EEG condition."""
        condition = self.condition_model(eeg)
        null = self.condition_model.null(eeg.shape[0]) if self.guidance_scale != 1.0 else None
        samples = []
        for k in range(self.num_samples):
            seeds = [derive_seed(self.seed, int(i), k) for i in index.tolist()]
            samples.append(
                generate_images(
                    self.unet, self.vae, self.scheduler_config, condition, null, sampler=self.sampler,
                    num_inference_steps=self.num_inference_steps, guidance_scale=self.guidance_scale, seeds=seeds,
                    image_size=self.out_size, autocast=self.autocast,
                )
            )
        return torch.stack(samples, dim=1), condition

    def save_pngs(self, folder: Path, images: Tensor, names: list[str]) -> list[str]:
        from dreamdiffusion.pipeline import to_pil

        paths = []
        for image, name in zip(to_pil(images), names):
            path = folder / f"{name}.png"
            with atomic_path(path) as tmp:
                image.save(tmp, format="PNG")
            paths.append(str(path))
        return paths

    @staticmethod
    def trial_name(index: int, image_name: str) -> str:
        return f"trial{index:05d}_{safe_name(image_name)}"

    # ------------------------------------------------------------------------------------------ test
    def test_step(self, batch: dict, batch_idx: int) -> None:
        rows = self.own_rows(batch)
        if not rows.any():
            return
        index = batch["index"][rows]
        names = [n for n, keep in zip(batch["image_name"], rows.tolist()) if keep]
        generated, condition = self.generate(batch["eeg"][rows], index)  # [B, S, 3, H, W]
        gt = ((batch["image"][rows].float() + 1) / 2).clamp(0, 1)
        if gt.shape[-2:] != generated.shape[-2:]:
            gt = nn.functional.interpolate(gt, size=tuple(generated.shape[-2:]), mode="bilinear", antialias=True)
        b, s = generated.shape[:2]
        flat = generated.flatten(0, 1)  # trial-major: trial j's samples are rows j*s .. j*s+s-1

        self.trials.update(torch.tensor(float(b)))
        self.trial_index.update(index.double())
        self.trial_label.update(batch["label"][rows].double())
        self.image_metrics.update_real(gt)
        image_keys = torch.tensor([int(i) * s + k for i in index.tolist() for k in range(s)])
        self.image_metrics.update_generated(flat, gt.repeat_interleave(s, dim=0), image_keys)

        gt_class = self.classifier(gt).argmax(dim=1).repeat_interleave(s)
        probs = self.classifier(flat)
        keys = torch.tensor([derive_seed(int(i), k) for i in index.tolist() for k in range(s)])
        self.n_way_metric.update(probs, gt_class, keys)
        self.n_way_best.update(self.n_way_metric.image_scores(probs, gt_class, keys).view(b, s).max(dim=1).values)

        target = self.clip_targets(batch, rows)
        if target is not None:
            predicted = self.condition_model.clip_embedding(condition.tokens)
            self.retrieval.update(predicted, target, image_ids(names, self.device))
            self.retrieval_trials.update(torch.tensor(float(b)))

        folder = self.stage_dir / "samples"
        trial_names = [self.trial_name(int(i), n) for i, n in zip(index.tolist(), names)]
        self.save_pngs(folder, gt, [f"{t}_gt" for t in trial_names])
        self.save_pngs(folder, flat, [f"{t}_sample{k}" for t in trial_names for k in range(s)])

    def clip_targets(self, batch: dict, rows: Tensor) -> Tensor | None:
        """CLIP image embeddings of the trials' images: from ``clip_pixels`` through the CLIP model, or cached."""
        if self.clip is not None and "clip_pixels" in batch:
            return self.clip(pixel_values=batch["clip_pixels"][rows].to(self.clip.dtype)).image_embeds
        if "clip_embeds" in batch:
            return batch["clip_embeds"][rows]
        return None

    def on_test_epoch_end(self) -> None:
        # every process computes (torchmetrics syncs inside compute); rank 0 writes
        results = self.compute_results()
        index, label = self.trial_index.compute().long().tolist(), self.trial_label.compute().long().tolist()
        if self.trainer.is_global_zero:
            self.write_reports(results)
            self.write_grids(dict(zip(index, label)))
        self.trainer.strategy.barrier()
        for key, value in results["metrics"].items():
            if isinstance(value, float):
                self.log(f"test/{key}", value, rank_zero_only=True)

    def compute_results(self) -> dict:
        """Every metric (synced across processes), its settings and counts, as written to ``metrics.json``."""
        trials = int(self.trials.compute().item())
        if trials == 0:
            raise RuntimeError("the evaluation split produced no trials: check the data module's test split")
        images = trials * self.num_samples
        notes: list[str] = []
        metrics: dict[str, float | int | None] = {}
        fid = self.image_metrics.fid
        with fid.sync_context():  # counts over all processes
            fid_images = {"generated": int(fid.fake_features_num_samples), "ground_truth": int(fid.real_features_num_samples)}
        metrics["fid"] = float(fid.compute()) if trials >= 2 else None
        if metrics["fid"] is None:
            notes.append("FID not computed: it needs at least 2 ground-truth images")
        if images >= self.is_splits:
            is_mean, is_std = self.image_metrics.inception_score.compute()
            metrics["inception_score"], metrics["inception_score_std"] = float(is_mean), float(is_std)
        else:
            metrics["inception_score"] = metrics["inception_score_std"] = None
            notes.append(f"IS not computed: {images} generated images for {self.is_splits} splits; lower is_splits")
        psnr = float(self.image_metrics.psnr.compute())
        metrics["psnr"] = psnr if math.isfinite(psnr) else None
        if not math.isfinite(psnr):
            notes.append("PSNR is infinite: a generated image equals its ground truth")
        metrics["ssim"] = float(self.image_metrics.ssim.compute())
        metrics["lpips"] = float(self.image_metrics.lpips.compute())
        metrics["top1_mean"] = float(self.n_way_metric.compute())
        metrics["top1_best"] = float(self.n_way_best.compute())
        if int(self.retrieval_trials.compute().item()) > 0:
            metrics["retrieval_top1"], metrics["retrieval_candidates"] = self.retrieval.compute()
        else:
            metrics["retrieval_top1"] = None
            notes.append("EEG→CLIP retrieval not computed: no clip_model configured and no cached clip_embeds")
        if self.n_way < self.n_way_requested:
            notes.append(
                f"n-way accuracy is {self.n_way}-way, not {self.n_way_requested}-way: the classifier has only "
                f"{self.classifier.num_classes} classes"
            )
        return {
            "pipeline": str(Path(self.pipeline_dir).resolve()),
            "split": "test",
            "trials": trials,
            "generated_images": images,
            "fid_images": fid_images,
            "metrics": metrics,
            "settings": {
                "num_samples": self.num_samples,
                "sampler": self.sampler,
                "num_inference_steps": self.num_inference_steps,
                "unet_calls_per_image": unet_calls(self.sampler, self.num_inference_steps),
                "guidance_scale": self.guidance_scale,
                "seed": self.seed,
                "image_size": self.out_size,
                "n_way": self.n_way,
                "n_way_requested": self.n_way_requested,
                "top_k": self.top_k,
                "n_trials": self.n_trials,
                "classifier_classes": self.classifier.num_classes,
                **self.settings.to_dict(),
                "classifier": self.classifier_config.to_dict(),
                "inception": self.inception_config.to_dict(),
                "lpips": self.lpips_config.to_dict(),
                "clip_model": self.clip_model_source,
                "world_size": self.trainer.world_size,
            },
            "definitions": DEFINITIONS,
            "notes": notes,
        }

    def write_reports(self, results: dict) -> None:
        folder = self.stage_dir
        write_text(folder / "metrics.json", json.dumps(results, indent=2, ensure_ascii=False, allow_nan=False) + "\n")
        write_text(folder / "metrics.md", metrics_table(results))

    def write_grids(self, labels: dict[int, int]) -> None:
        """``samples/grid_class<label>.png``: a row per trial of the class (up to ``max_grid_rows``), the ground
        truth then the samples. ``labels`` maps trial index → class."""
        from PIL import Image

        folder = self.stage_dir / "samples"
        by_class: dict[int, list[int]] = {}
        for index in sorted(labels):
            by_class.setdefault(labels[index], []).append(index)
        for label, indices in sorted(by_class.items()):
            rows = []
            for index in indices[: self.max_grid_rows]:
                (gt,) = folder.glob(f"trial{index:05d}_*_gt.png")
                stem = gt.name[: -len("_gt.png")]
                paths = [gt] + [folder / f"{stem}_sample{k}.png" for k in range(self.num_samples)]
                rows.append([Image.open(p).convert("RGB") for p in paths])
            w, h = rows[0][0].size
            grid = Image.new("RGB", (w * len(rows[0]), h * len(rows)), "white")
            for r, row in enumerate(rows):
                for c, image in enumerate(row):
                    grid.paste(image, (c * w, r * h))
            with atomic_path(folder / f"grid_class{label:03d}.png") as tmp:
                grid.save(tmp, format="PNG")

    # ------------------------------------------------------------------------------------------ predict
    def predict_step(self, batch: dict, batch_idx: int) -> list[str]:
        """Generate ``num_samples`` images per EEG into ``<stage folder>/predictions/``; returns their paths."""
        rows = self.own_rows(batch)
        if not rows.any():
            return []
        index = batch["index"][rows]
        names = batch.get("image_name") or [f"eeg{int(i)}" for i in batch["index"].tolist()]
        names = [n for n, keep in zip(names, rows.tolist()) if keep]
        generated, _ = self.generate(batch["eeg"][rows], index)
        trial_names = [self.trial_name(int(i), n) for i, n in zip(index.tolist(), names)]
        s = generated.shape[1]
        return self.save_pngs(
            self.stage_dir / "predictions", generated.flatten(0, 1), [f"{t}_sample{k}" for t in trial_names for k in range(s)]
        )


DEFINITIONS = {
    "fid": "Fréchet distance between Inception-v3 pool-feature Gaussians of generated and ground-truth images (lower is better)",
    "inception_score": "exp(E KL(p(y|x) || p(y))) of Inception-v3 logits of generated images, mean over is_splits splits",
    "psnr": "mean over generated images of 10 log10(data_range^2 / MSE) against the trial's ground truth, data range 1.0",
    "ssim": "mean SSIM (Gaussian window 11, sigma 1.5, data range 1.0) of generated vs ground-truth images",
    "lpips": "mean LPIPS distance (AlexNet features, linear heads of LPIPS v0.1) of generated vs ground-truth images",
    "top1_mean": (
        "n-way top-k: GT class = classifier top-1 on the ground-truth image; per generated image n_trials seeded "
        "trials of GT + (n_way-1) distinct distractor classes != GT; hit if GT is among the top_k probabilities; "
        "mean over trials, then over all generated images (= mean over samples)"
    ),
    "top1_best": "the same per-image score, best of the num_samples samples of each EEG trial, mean over trials",
    "retrieval_top1": (
        "EEG->CLIP retrieval: cosine similarity of the pipeline CLIP head's prediction for each trial against the CLIP "
        "image embeddings of all evaluated trials; hit if the nearest is the trial's own image"
    ),
}


def fmt(value, digits: int = 3, percent: bool = False) -> str:
    if value is None:
        return "–"
    return f"{100 * value:.1f}%" if percent else f"{value:.{digits}f}"


def metrics_table(results: dict) -> str:
    """Markdown: our figures beside the paper's Table 1 (and Table 2's 50-way top-1), with the settings."""
    m, st = results["metrics"], results["settings"]
    n_way = st["n_way"]
    head = (
        f"| model | FID ↓ | IS ↑ | PSNR ↑ | SSIM ↑ | LPIPS ↓ | {n_way}-way top-{st['top_k']} (mean of samples) ↑ "
        f"| {n_way}-way top-{st['top_k']} (best of {st['num_samples']}) ↑ |\n"
        "|---|---|---|---|---|---|---|---|\n"
    )
    ours = (
        f"| **ours** | {fmt(m['fid'], 2)} | {fmt(m['inception_score'], 2)} | {fmt(m['psnr'], 1)} | {fmt(m['ssim'])} "
        f"| {fmt(m['lpips'])} | {fmt(m['top1_mean'], percent=True)} | {fmt(m['top1_best'], percent=True)} |\n"
    )
    rows = "".join(
        f"| {name} | {p['fid']} | {p['inception_score']} | {p['psnr']} | {p['ssim']} | {p['lpips']} "
        f"| {'–' if p['top1'] is None else str(p['top1']) + '%'} | – |\n"
        for name, p in PAPER.items()
    )
    lines = [
        "# Stage 3 evaluation\n",
        f"Pipeline: `{results['pipeline']}` · split: {results['split']} · {results['trials']} EEG trials × "
        f"{st['num_samples']} samples = {results['generated_images']} images · {st['sampler'].upper() if st['sampler'] in ('ddim', 'plms') else st['sampler']} "
        f"{st['num_inference_steps']} steps · guidance {st['guidance_scale']} · {st['image_size']} px · seed {st['seed']}\n",
        head + ours + rows,
        f"EEG→CLIP retrieval top-1: {fmt(m.get('retrieval_top1'), percent=True)}"
        + (f" among {m['retrieval_candidates']} images (chance {fmt(1 / m['retrieval_candidates'], percent=True)})" if m.get("retrieval_candidates") else "")
        + "\n",
        f"FID on {st['fid_features']}-dimensional Inception features (the paper's 3.61 came from the authors' "
        f"64-feature FID: not comparable with a 2048-feature FID); PSNR/SSIM data range {st['data_range']}; IS with {st['is_splits']} splits; "
        f"{n_way}-way accuracy from a {st['classifier']['architecture']} classifier with {st['classifier_classes']} classes, "
        f"{st['n_trials']} seeded trials per image. The paper's accuracy is Table 2's full model (mean over samples).\n",
    ]
    if results["notes"]:
        lines.append("Notes:\n" + "".join(f"* {n}\n" for n in results["notes"]))
    return "\n".join(lines)
