"""Stage 3: generate images from the EEG of a split and measure them (DreamDiffusion Sec. 4).

``dreamdiffusion test -c configs/eval.yaml`` loads a stage-2 ``pipeline/`` folder, generates
``num_samples`` images per EEG trial of the data module's test split and scores them (this module); the modules
named below turn what it measured into files in the stage folder (``trainer.default_root_dir``, i.e.
``<run_dir>/eval``):

* ``metrics.json`` — every metric with its 95% bootstrap interval over trials, the controls, the per-subject
  breakdown, which figures come from random networks, the ``failures`` of the run, the settings
  (:mod:`dreamdiffusion.stages.eval_results`);
* ``metrics.md`` — failures first, then a table shaped like the paper's Table 1 plus 50-way top-1 (the paper's
  figures beside ours), the controls, the per-subject table and the networks' provenance
  (:mod:`dreamdiffusion.stages.eval_report`);
* ``trials.csv`` — one row per trial: index, picture, class, subject and every per-trial value;
* ``samples/`` — ``trial<index>_<image>_gt.png``, ``..._sample<k>.png`` and, with controls,
  ``..._shuffled_sample<k>.png`` and ``..._null_sample<k>.png``; one ``grid_class<label>.png`` per class
  (rows: trials; columns: ground truth | samples) (:mod:`dreamdiffusion.stages.eval_outputs`).

Controls (``controls: true``, the default, for every run): the **shuffled-EEG** control conditions each
trial on the EEG of a trial of another picture (:func:`dreamdiffusion.controls.image_derangement`, seeded,
over the whole split) and the **null-condition** control on the pipeline's learned unconditional input;
both use the trial's own sampling seeds and are scored against the trial's own picture. They must land at
chance within their interval; one whose interval lies above chance is reported as a failure of the run
(below chance is reported too: a model that reads EEG draws the partner's picture, never the trial's own). A partner trial may be
in another batch or process: every process reads the split from the test loader's dataset (EEG only, through
``trial_info`` when the dataset has it) and fetches the partner's EEG by position.

``dreamdiffusion predict -c configs/eval.yaml`` only generates, into ``<stage folder>/predictions/``.

Seeds: sample ``k`` of trial ``index`` starts from noise seeded with ``derive_seed(seed, index, k)``; its
n-way trials are seeded from the same key. Multi-process runs split the trials by ``index % world_size``
(``trainer.use_distributed_sampler: false``, so no process sees padded duplicates) — every trial is
generated and counted exactly once and the figures do not depend on batch size or number of processes.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import lightning as L
import torch
from torch import Tensor, nn

from dreamdiffusion.bootstrap import BootstrapSettings
from dreamdiffusion.generation import DEFAULT_SAMPLER, DEFAULT_STEPS, derive_seed, generate_images, unet_calls
from dreamdiffusion.metrics import ImageMetrics, MetricSettings, NWayTopKAccuracy, TrialTable, to_uint8
from dreamdiffusion.models.condition import Condition
from dreamdiffusion.models.eval_models import (
    ClassifierConfig,
    InceptionConfig,
    LPIPSConfig,
    load_classifier,
    load_inception,
    load_lpips_net,
)
from dreamdiffusion.stages import eval_outputs, eval_results
from dreamdiffusion.stages.eval_report import DEFINITIONS, PAPER, metrics_table
from dreamdiffusion.stages.eval_split import read_test_split

__all__ = ["EvalModule", "metrics_table", "PAPER", "DEFINITIONS"]


class EvalModule(L.LightningModule):
    """Generate from the EEG of a split with a stage-2 pipeline and compute every stage-3 metric.

    Parameters
    ----------
    pipeline
        Folder written by stage 2 (``<run_dir>/finetune/pipeline``).
    num_samples
        Images generated per EEG trial (the authors: 5).
    sampler, num_inference_steps, guidance_scale
        The sampler: any diffusers scheduler class name (default ``DPMSolverMultistepScheduler``, DPM-Solver++,
        with 20 steps; ``EulerDiscreteScheduler``, ``UniPCMultistepScheduler``, ...), ``ddim`` (η = 0) or
        ``plms`` (the authors, 250 steps), built on the pipeline's noise schedule; classifier-free guidance
        scale (1: none).
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
    controls
        Run the shuffled-EEG and null-condition controls (triples the sampling cost). On by default.
    bootstrap_resamples, bootstrap_set_resamples, confidence_level
        Percentile-bootstrap resamples of the per-trial figures (1000) and of the set-level FID/IS (100;
        0: no interval for them), and the interval's level (0.95). Seeded with ``seed``.
    """

    def __init__(
        self,
        pipeline: str,
        num_samples: int = 5,
        sampler: str = DEFAULT_SAMPLER,
        num_inference_steps: int = DEFAULT_STEPS,
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
        controls: bool = True,
        bootstrap_resamples: int = 1000,
        bootstrap_set_resamples: int = 100,
        confidence_level: float = 0.95,
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
        self.controls = controls
        self.bootstrap = BootstrapSettings(bootstrap_resamples, bootstrap_set_resamples, confidence_level, seed)
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
        lpips_net = load_lpips_net(self.lpips_config)
        self.image_metrics = ImageMetrics(pool, logits, lpips_net, self.settings)
        self.feature_nets = (pool, logits)  # a tuple: not registered twice (they live in image_metrics)
        self.provenance = {
            name: getattr(net, "provenance", "unlabelled")
            for name, net in (("classifier", self.classifier), ("inception", pool), ("lpips", lpips_net))
        }
        # scores each generated image's n-way trials; the figures come from the per-trial table
        self.n_way_scorer = NWayTopKAccuracy(self.n_way, self.top_k, self.n_trials, self.seed)
        clip_dim = self.condition_model.config.clip_dim
        widths = {key: 1 for key in ("top1_mean", "top1_best", "psnr", "ssim", "lpips")}
        widths.update(clip_predicted=clip_dim, clip_target=clip_dim)
        if self.controls:
            for prefix in ("shuffled_", "null_"):
                widths.update({prefix + key: 1 for key in ("top1_mean", "psnr", "ssim", "lpips")})
            widths["shuffled_clip_predicted"] = clip_dim
        self.trial_table = TrialTable(widths)
        self.feature_table = None
        if self.bootstrap.set_resamples > 0:  # per-image Inception features, to recompute FID/IS on resamples
            probe = torch.zeros(1, 3, self.out_size, self.out_size, dtype=torch.uint8)
            d_pool, d_logits = (int(net(probe).shape[1]) for net in self.feature_nets)
            s = self.num_samples
            self.feature_table = TrialTable({"real": d_pool, "generated": s * d_pool, "logits": s * d_logits}, dtype=torch.float32)
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
        self.read_split()

    def on_predict_start(self) -> None:
        self.check_sharding(self.trainer.predict_dataloaders)
        (self.stage_dir / "predictions").mkdir(parents=True, exist_ok=True)

    def read_split(self) -> None:
        """Every trial of the evaluated split, on every process, and the shuffled control's pairing
        (:func:`~dreamdiffusion.stages.eval_split.read_test_split`)."""
        self.split_item, self.split, self.position_of, self.partner = read_test_split(
            self.trainer.test_dataloaders, self.seed, self.controls
        )

    def partner_eeg(self, index: Tensor) -> Tensor:
        """``[B, C, T]`` EEG of the shuffled control's partner of each trial in ``index`` (any batch, any process)."""
        positions = [self.partner[self.position_of[int(i)]] for i in index.tolist()]
        return torch.stack([torch.as_tensor(self.split_item(p)["eeg"]) for p in positions]).to(self.device)

    # ------------------------------------------------------------------------------------------ generation
    def own_rows(self, batch: dict) -> Tensor:
        """Rows of ``batch`` this process handles: ``index % world_size == global_rank``."""
        return (batch["index"] % self.trainer.world_size) == self.trainer.global_rank

    @torch.no_grad()
    def generate(self, eeg: Tensor, index: Tensor) -> tuple[Tensor, Condition]:
        """``[B, S, 3, H, W]`` images in [0, 1] (S = num_samples) and the EEG condition."""
        condition = self.condition_model(eeg)
        return self.sample(condition, index), condition

    @torch.no_grad()
    def sample(self, condition: Condition, index: Tensor, guided: bool = True) -> Tensor:
        """``[B, S, 3, H, W]``: sample ``k`` of trial ``i`` from noise seeded with ``derive_seed(seed, i, k)``,
        whatever the condition (the controls reuse the trial's seeds)."""
        b = condition.hidden_states.shape[0]
        null = self.condition_model.null(b) if guided and self.guidance_scale != 1.0 else None
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
        return torch.stack(samples, dim=1)

    def null_condition(self, condition: Condition) -> Condition:
        """The learned unconditional input for every trial of ``condition`` (zero time vector, as in guidance).
        Sampling reads only the hidden states and the time vector."""
        b = condition.hidden_states.shape[0]
        time_vector = None if condition.time_vector is None else torch.zeros_like(condition.time_vector)
        return dataclasses.replace(condition, hidden_states=self.condition_model.null(b), time_vector=time_vector)

    def save_pngs(self, folder: Path, images: Tensor, names: list[str]) -> list[str]:
        return eval_outputs.save_pngs(folder, images, names)

    trial_name = staticmethod(eval_outputs.trial_name)

    # ------------------------------------------------------------------------------------------ test
    def score(self, generated: Tensor, gt: Tensor, gt_class: Tensor, index: Tensor) -> dict[str, Tensor]:
        """Per-trial ``top1_mean``, ``top1_best``, ``psnr``, ``ssim``, ``lpips`` ``[B]`` of generated images
        ``[B, S, 3, H, W]`` against the trials' pictures ``gt [B, 3, H, W]`` (classifier classes ``gt_class [B]``).
        Sample ``k`` of trial ``i`` is scored on the n-way trials seeded by ``(i, k)`` in every condition."""
        b, s = generated.shape[:2]
        flat = generated.flatten(0, 1)  # trial-major: trial j's samples are rows j*s .. j*s+s-1
        keys = torch.tensor([derive_seed(int(i), k) for i in index.tolist() for k in range(s)])
        top1 = self.n_way_scorer.image_scores(self.classifier(flat), gt_class.repeat_interleave(s), keys).view(b, s)
        pairs = self.image_metrics.pair_scores(flat, gt.repeat_interleave(s, dim=0))
        return {
            "top1_mean": top1.mean(dim=1), "top1_best": top1.max(dim=1).values,
            **{key: value.view(b, s).double().mean(dim=1) for key, value in pairs.items()},
        }

    def test_step(self, batch: dict, batch_idx: int) -> None:
        rows = self.own_rows(batch)
        if not rows.any():
            return
        index = batch["index"][rows]
        names = [n for n, keep in zip(batch["image_name"], rows.tolist(), strict=True) if keep]
        generated, condition = self.generate(batch["eeg"][rows], index)  # [B, S, 3, H, W]
        gt = ((batch["image"][rows].float() + 1) / 2).clamp(0, 1)
        if gt.shape[-2:] != generated.shape[-2:]:
            gt = nn.functional.interpolate(gt, size=tuple(generated.shape[-2:]), mode="bilinear", antialias=True)
        b, s = generated.shape[:2]
        flat = generated.flatten(0, 1)
        gt_class = self.classifier(gt).argmax(dim=1)

        self.image_metrics.update_real(gt)
        image_keys = torch.tensor([int(i) * s + k for i in index.tolist() for k in range(s)])
        self.image_metrics.update_generated(flat, gt.repeat_interleave(s, dim=0), image_keys)
        columns = self.score(generated, gt, gt_class, index)
        target = self.clip_targets(batch, rows)
        columns["clip_predicted"] = self.condition_model.clip_embedding(condition.tokens)
        columns["clip_target"] = target if target is not None else torch.full_like(columns["clip_predicted"], float("nan"))

        folder = self.stage_dir / "samples"
        trial_names = [self.trial_name(int(i), n) for i, n in zip(index.tolist(), names, strict=True)]
        self.save_pngs(folder, gt, [f"{t}_gt" for t in trial_names])
        self.save_pngs(folder, flat, [f"{t}_sample{k}" for t in trial_names for k in range(s)])
        if self.controls:
            shuffled_condition = self.condition_model(self.partner_eeg(index))
            controls = {
                "shuffled": self.sample(shuffled_condition, index),
                "null": self.sample(self.null_condition(condition), index, guided=False),
            }
            for prefix, images in controls.items():
                scores = self.score(images, gt, gt_class, index)
                columns.update({f"{prefix}_{key}": scores[key] for key in ("top1_mean", "psnr", "ssim", "lpips")})
                self.save_pngs(folder, images.flatten(0, 1), [f"{t}_{prefix}_sample{k}" for t in trial_names for k in range(s)])
            columns["shuffled_clip_predicted"] = self.condition_model.clip_embedding(shuffled_condition.tokens)
        self.trial_table.update(index, **columns)
        if self.feature_table is not None:
            pool, logits = self.feature_nets
            self.feature_table.update(
                index, real=pool(to_uint8(gt)), generated=pool(to_uint8(flat)).reshape(b, -1),
                logits=logits(to_uint8(flat)).reshape(b, -1),
            )

    def clip_targets(self, batch: dict, rows: Tensor) -> Tensor | None:
        """CLIP image embeddings of the trials' images: from ``clip_pixels`` through the CLIP model, or cached."""
        if self.clip is not None and "clip_pixels" in batch:
            return self.clip(pixel_values=batch["clip_pixels"][rows].to(self.clip.dtype)).image_embeds
        if "clip_embeds" in batch:
            return batch["clip_embeds"][rows]
        return None

    def on_test_epoch_end(self) -> None:
        # every process computes (torchmetrics syncs inside compute); rank 0 writes
        results, table = self.compute_results()
        if self.trainer.is_global_zero:
            self.write_reports(results)
            self.write_trials(table)
            self.write_grids({i: self.split[i]["label"] for i in table["index"].tolist()})
        self.trainer.strategy.barrier()
        for key, value in results["metrics"].items():
            if isinstance(value, float):
                self.log(f"test/{key}", value, rank_zero_only=True)

    def set_level_intervals(self) -> dict[str, list[float] | None]:
        """FID and IS recomputed on resampled trial sets (``bootstrap_set_resamples``; ``None`` when off or too few)."""
        return eval_results.set_level_intervals(self.feature_table, self.num_samples, self.is_splits, self.bootstrap)

    def compute_results(self) -> tuple[dict, dict[str, Tensor]]:
        """``metrics.json``'s dict and the per-trial table (:func:`~dreamdiffusion.stages.eval_results.compute_results`)."""
        return eval_results.compute_results(self)

    def write_reports(self, results: dict) -> None:
        eval_outputs.write_reports(self.stage_dir, results)

    def write_trials(self, table: dict[str, Tensor]) -> None:
        """``trials.csv``: one row per trial (sorted by index) with its picture, class, subject and scalar values."""
        partner = self.partner if self.controls else None
        eval_outputs.write_trials(self.stage_dir / "trials.csv", table, self.split, self.position_of, partner)

    def write_grids(self, labels: dict[int, int]) -> None:
        """``samples/grid_class<label>.png`` of the trials in ``labels`` (trial index → class), up to ``max_grid_rows``."""
        eval_outputs.write_grids(self.stage_dir / "samples", labels, self.num_samples, self.max_grid_rows)

    # ------------------------------------------------------------------------------------------ predict
    def predict_step(self, batch: dict, batch_idx: int) -> list[str]:
        """Generate ``num_samples`` images per EEG into ``<stage folder>/predictions/``; returns their paths."""
        rows = self.own_rows(batch)
        if not rows.any():
            return []
        index = batch["index"][rows]
        names = batch.get("image_name") or [f"eeg{int(i)}" for i in batch["index"].tolist()]
        names = [n for n, keep in zip(names, rows.tolist(), strict=True) if keep]
        generated, _ = self.generate(batch["eeg"][rows], index)
        trial_names = [self.trial_name(int(i), n) for i, n in zip(index.tolist(), names, strict=True)]
        s = generated.shape[1]
        return self.save_pngs(
            self.stage_dir / "predictions", generated.flatten(0, 1), [f"{t}_sample{k}" for t in trial_names for k in range(s)]
        )
