"""Stage 3 on THINGS-EEG2: everything :class:`~dreamdiffusion.stages.evaluate.EvalModule` measures, plus the field's
zero-shot retrieval and the MindEye reconstruction suite, in the same ``metrics.json`` / ``metrics.md``.

``dreamdiffusion test -c configs/things/eval.yaml`` adds to ``metrics.json`` a ``things`` section:

* ``retrieval``: 200-way top-1/top-5 and seeded k-way (k ∈ ``k_way``) EEG→CLIP retrieval over the split's
  distinct pictures (:mod:`dreamdiffusion.zero_shot`), each ``{value, ci, chance}``;
* ``reconstruction``: PixCorr, SSIM, AlexNet(2), AlexNet(5), Inception, CLIP (two-way identification) and
  EfficientNet-B1, SwAV (correlation distance) (:mod:`dreamdiffusion.reconstruction_metrics`) on the generated
  images and ground truths resized to ``suite_image_size`` (256), each ``{value, ci}``;
* ``protocol``: the data module's protocol (splits, held-out validation concepts) and ``notes`` (the official
  files' whitening used test-EEG statistics).

Intervals are 95% percentile bootstraps over trials of the per-trial values (the gallery stays the whole split).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from dreamdiffusion.atomic import write_text
from dreamdiffusion.bootstrap import mean_interval
from dreamdiffusion.models.feature_nets import (
    FeatureNetConfig,
    alexnet_2,
    alexnet_5,
    clip_features,
    efficientnet_b1,
    inception_v3,
    load_feature_net,
    swav,
)
from dreamdiffusion.reconstruction_metrics import (
    CorrelationDistance,
    GreySSIM,
    PixCorr,
    TwoWayIdentification,
    resize_for_suite,
)
from dreamdiffusion.stages.eval_report import metrics_table
from dreamdiffusion.stages.evaluate import EvalModule
from dreamdiffusion.stages.things_report import DEFINITIONS, things_table
from dreamdiffusion.zero_shot import zero_shot_retrieval


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


class ThingsEvalModule(EvalModule):
    """:class:`~dreamdiffusion.stages.evaluate.EvalModule` plus zero-shot retrieval and the reconstruction suite.

    Every argument of ``EvalModule`` is accepted too (``clip_model`` is the CLIP ViT-L/14 of the retrieval and of
    the CLIP two-way figure).

    Parameters
    ----------
    alexnet_2, alexnet_5, inception_v3, efficientnet_b1, swav
        Feature networks of the suite (:class:`~dreamdiffusion.models.feature_nets.FeatureNetConfig`): torchvision
        builder, layer, weights (torchvision name, URL or local ``weights_path``), input side. ``null`` skips one.
    suite_image_size
        Side in pixels both image sets are resized to before the suite (256).
    retrieval_top_k
        The k of the zero-shot top-k retrievals (1 and 5); ``top_k`` stays the n-way classification's k.
    k_way, k_way_trials
        The seeded k-way retrievals and the draws per trial.
    """

    def __init__(
        self,
        alexnet_2: FeatureNetConfig | None = alexnet_2(),
        alexnet_5: FeatureNetConfig | None = alexnet_5(),
        inception_v3: FeatureNetConfig | None = inception_v3(),
        efficientnet_b1: FeatureNetConfig | None = efficientnet_b1(),
        swav: FeatureNetConfig | None = swav(),
        suite_image_size: int = 256,
        retrieval_top_k: list[int] | None = None,
        k_way: list[int] | None = None,
        k_way_trials: int = 100,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.network_configs = {"alexnet_2": alexnet_2, "alexnet_5": alexnet_5, "inception": inception_v3,
                                "efficientnet": efficientnet_b1, "swav": swav}
        self.suite_image_size = suite_image_size
        self.retrieval_top_k = [1, 5] if retrieval_top_k is None else list(retrieval_top_k)
        self.k_way = [2, 4, 10, 50, 100] if k_way is None else list(k_way)
        self.k_way_trials = k_way_trials
        self._generated: Tensor | None = None

    def setup(self, stage: str) -> None:
        super().setup(stage)
        if stage == "predict" or hasattr(self, "suite"):
            return
        suite: dict[str, nn.Module] = {"pixcorr": PixCorr(), "ssim": GreySSIM()}
        self.suite_provenance: dict[str, str] = {}
        for name, config in self.network_configs.items():
            if config is None:
                continue
            network = load_feature_net(config)
            self.suite_provenance[name] = network.provenance
            metric = CorrelationDistance if name in ("efficientnet", "swav") else TwoWayIdentification
            suite[name] = metric(network)
        if self.clip is not None:  # the CLIP tower EvalModule loaded for retrieval
            from transformers import CLIPImageProcessor

            processor = CLIPImageProcessor.from_pretrained(self.clip_model_source, local_files_only=self.local_files_only)
            self.suite_provenance["clip"] = f"clip_model {self.clip_model_source}"
            suite["clip"] = TwoWayIdentification(clip_features(self.clip, processor))
        self.suite = nn.ModuleDict(suite)

    # ------------------------------------------------------------------------------------------ test
    def generate(self, eeg: Tensor, index: Tensor):
        images, condition = super().generate(eeg, index)
        self._generated = images  # the EEG-conditioned samples of this batch, for the suite
        return images, condition

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._generated = None
        super().test_step(batch, batch_idx)
        if self._generated is None:  # no trial of this batch is this process's
            return
        rows = self.own_rows(batch)
        gt = ((batch["image"][rows].float() + 1) / 2).clamp(0, 1)
        reconstructions = resize_for_suite(self._generated, self.suite_image_size)
        gt = resize_for_suite(gt, self.suite_image_size)
        for metric in self.suite.values():
            metric.update(reconstructions, gt, batch["index"][rows])
        self._generated = None

    def compute_results(self) -> tuple[dict, dict[str, Tensor]]:
        results, table = super().compute_results()
        index = table["index"]
        names = [self.split[i]["image_name"] for i in index.tolist()]
        things: dict = {"retrieval": {}, "reconstruction": {}, "definitions": DEFINITIONS}
        target = table["clip_target"]
        if not target.isnan().any():
            values, chance, pictures = zero_shot_retrieval(
                table["clip_predicted"], target, names, index, self.retrieval_top_k, self.k_way, self.k_way_trials, self.seed
            )
            things["pictures"] = pictures
            for key, per_trial in values.items():
                things["retrieval"][key] = self.figure(per_trial) | {"chance": chance[key]}
            skipped = [k for k in self.k_way if f"{k}way" not in values]
            if skipped:
                results["notes"].append(f"k-way retrieval for k={skipped} skipped: the split has {pictures} distinct pictures")
        for name, metric in self.suite.items():
            metric_index, per_trial = metric.compute()
            if not torch.equal(metric_index.cpu(), index.cpu()):
                raise RuntimeError(f"the {name} metric scored other trials than the trial table; this is a bug")
            things["reconstruction"][name] = self.figure(per_trial)
        random = sorted(n for n, p in self.suite_provenance.items() if p == "random")
        things["random_networks"] = random
        things["network_provenance"] = self.suite_provenance
        datamodule = getattr(self.trainer, "datamodule", None)
        protocol = dict(getattr(datamodule, "protocol", {}) or {})
        things["protocol"] = protocol
        things["notes"] = list(protocol.get("notes", []))
        if random:
            things["notes"].append(f"figures of {', '.join(random)} come from random networks: not meaningful")
        results["notes"] += things["notes"]
        results["things"] = things
        results["settings"]["things"] = {
            "suite_image_size": self.suite_image_size, "top_k": self.retrieval_top_k, "k_way": self.k_way,
            "k_way_trials": self.k_way_trials,
            "networks": {k: (v.to_dict() if v is not None else None) for k, v in self.network_configs.items()},
        }
        return results, table

    def figure(self, per_trial: Tensor) -> dict:
        """``{value, ci}`` of per-trial values (the mean and its bootstrap interval; ``None`` if not finite)."""
        per_trial = per_trial.double().cpu()
        value = _finite(float(per_trial.mean()))
        ci = list(mean_interval(per_trial, self.bootstrap)) if value is not None else None
        return {"value": value, "ci": ci}

    def write_reports(self, results: dict) -> None:
        super().write_reports(results)
        write_text(self.stage_dir / "metrics.md", metrics_table(results) + "\n" + things_table(results["things"]))
