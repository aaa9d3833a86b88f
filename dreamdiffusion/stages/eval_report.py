"""Stage-3 report: per-trial values → figures with 95% intervals, controls against chance, per-subject
breakdown, labels of figures that come from random networks, and ``metrics.md``.

Every per-trial figure (n-way top-1, retrieval hit, PSNR, SSIM, LPIPS, each a trial's mean over its samples)
gets a percentile-bootstrap interval over EEG trials (:mod:`dreamdiffusion.bootstrap`). A control (shuffled
EEG, null condition) whose interval lies **above** chance is a **failure of the run**: the figures would then
not come from the trials' EEG alone. An interval below chance is reported, not failed: the shuffled control
pairs each trial with another picture's EEG, so a model that reads EEG draws or retrieves that other picture,
never the trial's own (a perfect model's shuffled retrieval is 0, not 1/candidates). Chance is ``top_k / n_way``
for n-way top-k and ``1 / candidates`` for retrieval; PSNR/SSIM/LPIPS have no chance level and are reported
beside the real condition for comparison.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dreamdiffusion.bootstrap import BootstrapSettings, mean_interval
from dreamdiffusion.metrics import image_ids, retrieval_hits

# The paper's figures (Table 1: DreamDiffusion and Brain2Image; Table 2: full model, 50-way top-1 in %).
PAPER = {
    "DreamDiffusion (paper)": {"fid": 3.61, "inception_score": 28.54, "psnr": 14.6, "ssim": 0.267, "lpips": 0.644, "top1": 45.8},
    "Brain2Image (paper)": {"fid": 18.76, "inception_score": 5.06, "psnr": 12.8, "ssim": 0.213, "lpips": 0.701, "top1": None},
}
PER_TRIAL = ("top1_mean", "top1_best", "psnr", "ssim", "lpips")
CONTROL_METRICS = ("top1_mean", "retrieval_top1", "psnr", "ssim", "lpips")
CONTROLS = {"shuffled_eeg": "shuffled", "null_condition": "null"}
NOT_MEANINGFUL = "random network — not meaningful"
# which evaluation network each figure comes from (PSNR/SSIM need none; retrieval uses the CLIP model)
NETWORK_OF = {"top1_mean": "classifier", "top1_best": "classifier", "fid": "inception", "inception_score": "inception", "lpips": "lpips"}

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
    "ci": (
        "95% percentile bootstrap over EEG trials (resampled with replacement, seeded). Per-trial figures: the mean of "
        "the trials' values (retrieval: the gallery stays the whole split, the queries are resampled). FID and IS: "
        "recomputed on each resampled trial set (its ground truths and their samples; a trial drawn twice counts "
        "twice); FID's small-sample bias is not corrected, so its interval shows the spread over trial sets and can "
        "sit above the point estimate"
    ),
    "shuffled_eeg": (
        "control: every trial conditioned on the EEG of a trial of another picture (a seeded derangement by image "
        "over the whole split), with the trial's own sampling seeds; scored against the trial's own picture"
    ),
    "null_condition": "control: every trial conditioned on the pipeline's learned unconditional input (no EEG)",
}


def interval(values: Tensor, settings: BootstrapSettings) -> list[float] | None:
    """``[low, high]`` bootstrap interval of the mean of per-trial ``values`` (NaN: the trial has no value);
    ``None`` without any value or with an infinite one (PSNR of a sample equal to its picture)."""
    values = values[~values.isnan()]
    return list(mean_interval(values, settings)) if values.numel() and values.isfinite().all() else None


def hits_of(table: dict[str, Tensor], prefix: str, names: list[str]) -> tuple[Tensor, int] | None:
    """Per-trial retrieval hits ``[N]`` (NaN for trials without a CLIP target) of the ``<prefix>clip_predicted``
    column against the split's CLIP image embeddings, and the number of candidate images; ``None`` when no trial
    has a target."""
    target = table["clip_target"]
    known = torch.isfinite(target).all(dim=1)
    if not known.any():
        return None
    ids = image_ids(names)
    hits = torch.full((len(names),), float("nan"), dtype=torch.float64)
    hits[known] = retrieval_hits(table[f"{prefix}clip_predicted"][known], target[known], ids[known], ids[known]).double()
    return hits, int(ids[known].unique().numel())


def condition_figures(table: dict[str, Tensor], prefix: str, names: list[str], keep: Tensor, settings: BootstrapSettings,
                      keys: tuple[str, ...]) -> tuple[dict, dict, int | None]:
    """(figures, intervals, retrieval candidates) of one condition (``prefix`` "" real, "shuffled_", "null_") over
    the trials where ``keep [N]`` is true."""
    figures, intervals, candidates = {}, {}, None
    for key in keys:
        if key == "retrieval_top1":
            found = hits_of(table, prefix, names) if f"{prefix}clip_predicted" in table else None
            if found is None:
                continue
            values, candidates = found[0][keep], found[1]
        else:
            values = table[f"{prefix}{key}"][:, 0][keep]
        known = values[~values.isnan()]
        figures[key] = float(known.mean()) if known.numel() and known.isfinite().all() else None
        intervals[key] = interval(values, settings)
    return figures, intervals, candidates


def position(bounds: list[float], chance: float) -> str:
    """``"at"`` when the interval ``[low, high]`` contains ``chance``, else ``"above"`` or ``"below"`` it."""
    return "at" if bounds[0] <= chance <= bounds[1] else ("above" if bounds[0] > chance else "below")


def chance_levels(n_way: int, top_k: int, candidates: int | None) -> dict[str, float]:
    chance = {"top1_mean": top_k / n_way}
    if candidates:
        chance["retrieval_top1"] = 1 / candidates
    return chance


def summarise(table: dict[str, Tensor], names: list[str], subjects: list[int], settings: BootstrapSettings,
              n_way: int, top_k: int, controls: bool, random_figures: frozenset[str] = frozenset()) -> dict:
    """``metrics`` (per-trial figures), ``ci``, ``controls``, ``per_subject``, ``failures`` and ``below_chance``
    from the gathered per-trial table (rows sorted by trial index; ``names``/``subjects`` aligned with them).
    ``random_figures``: figures measured with a random network (their verdicts say so)."""
    everyone = torch.ones(len(names), dtype=torch.bool)
    metrics, ci, candidates = condition_figures(table, "", names, everyone, settings, PER_TRIAL + ("retrieval_top1",))
    result = {"metrics": metrics, "ci": ci, "retrieval_candidates": candidates, "controls": {}, "failures": [], "below_chance": []}
    if controls:
        for name, prefix in CONTROLS.items():
            keys = CONTROL_METRICS if name == "shuffled_eeg" else tuple(k for k in CONTROL_METRICS if k != "retrieval_top1")
            figures, intervals, _ = condition_figures(table, prefix + "_", names, everyone, settings, keys)
            chance = chance_levels(n_way, top_k, candidates if "retrieval_top1" in figures else None)
            side = {k: position(intervals[k], c) for k, c in chance.items() if intervals.get(k)}
            result["controls"][name] = {
                "metrics": figures, "ci": intervals, "chance": chance,
                "at_chance": {k: v == "at" for k, v in side.items()}, "versus_chance": side,
            }
            for key, where in side.items():
                low, high = intervals[key]
                text = (f"{name} control: {key} {figures[key]:.4f}, 95% CI [{low:.4f}, {high:.4f}], is {where} chance "
                        f"{chance[key]:.4f}" + (f" ({NOT_MEANINGFUL})" if key in random_figures else ""))
                if where == "above":
                    result["failures"].append(f"{text} — the figures of this run do not come from the trials' EEG alone")
                elif where == "below":
                    result["below_chance"].append(
                        f"{text}: not a failure — a model that reads the EEG draws (or retrieves) the partner's picture, "
                        "which is never the trial's own"
                    )
    subject_tensor = torch.tensor(subjects)
    result["per_subject"] = {}
    for subject in sorted(set(subjects)):
        keep = subject_tensor == subject
        figures, intervals, _ = condition_figures(table, "", names, keep, settings, PER_TRIAL + ("retrieval_top1",))
        result["per_subject"][str(subject)] = {"trials": int(keep.sum()), "metrics": figures, "ci": intervals}
    return result


def meaningful_labels(provenance: dict[str, str], clip_model: str | None) -> dict[str, dict]:
    """Per metric: the network it comes from, that network's weights provenance, and whether it means anything
    (a figure from a random network does not)."""
    labels = {}
    for metric in ("fid", "inception_score", "psnr", "ssim", "lpips", "top1_mean", "top1_best", "retrieval_top1"):
        network = NETWORK_OF.get(metric)
        if network is None:
            labels[metric] = {"network": "clip" if metric == "retrieval_top1" else None, "meaningful": True, "reason": None}
            if metric == "retrieval_top1":
                labels[metric]["network_source"] = clip_model
            continue
        origin = provenance.get(network, "unlabelled")
        random = origin == "random"
        labels[metric] = {
            "network": network,
            "provenance": origin,
            "meaningful": not random,
            "reason": f"{NOT_MEANINGFUL}: the {network} network has random weights" if random else None,
        }
    return labels


# ------------------------------------------------------------------------------------------ metrics.md
def fmt(value, digits: int = 3, percent: bool = False) -> str:
    if value is None:
        return "–"
    return f"{100 * value:.1f}%" if percent else f"{value:.{digits}f}"


def with_ci(value, bounds, digits: int = 3, percent: bool = False) -> str:
    text = fmt(value, digits, percent)
    if value is not None and bounds:
        text += f" [{fmt(bounds[0], digits, percent)}, {fmt(bounds[1], digits, percent)}]"
    return text


def cell(results: dict, key: str, digits: int = 3, percent: bool = False) -> str:
    """Our figure with its interval; a figure from a random network says so and is never bold."""
    text = with_ci(results["metrics"].get(key), results.get("ci", {}).get(key), digits, percent)
    label = results.get("meaningful", {}).get(key, {})
    return f"{text} ({NOT_MEANINGFUL})" if label.get("meaningful") is False else text


DIGITS = {"fid": (2, False), "inception_score": (2, False), "psnr": (1, False), "ssim": (3, False), "lpips": (3, False),
          "top1_mean": (1, True), "top1_best": (1, True), "retrieval_top1": (1, True)}


def control_rows(results: dict) -> str:
    st = results["settings"]
    way = f"{st['n_way']}-way top-{st['top_k']} (mean of samples)"
    if results.get("meaningful", {}).get("top1_mean", {}).get("meaningful") is False:
        way += f" ({NOT_MEANINGFUL})"
    lpips = "LPIPS" + (f" ({NOT_MEANINGFUL})" if results.get("meaningful", {}).get("lpips", {}).get("meaningful") is False else "")
    lines = [
        f"| condition | {way} | EEG→CLIP retrieval top-1 | PSNR | SSIM | {lpips} |",
        "|---|---|---|---|---|---|",
    ]
    ours = {"metrics": results["metrics"], "ci": results["ci"]}
    rows = [("EEG of the trial (ours)", ours, {}, {})]
    names = {"shuffled_eeg": "shuffled EEG (a trial of another picture)", "null_condition": "null condition (no EEG)"}
    for key, control in results["controls"].items():
        rows.append((names[key], control, control["chance"], control["versus_chance"]))
    for name, figures, chance, at_chance in rows:
        cells = []
        for key in ("top1_mean", "retrieval_top1", "psnr", "ssim", "lpips"):
            digits, percent = DIGITS[key]
            text = with_ci(figures["metrics"].get(key), figures["ci"].get(key), digits, percent)
            if key in chance and key in at_chance:
                verdict = {"at": "at chance", "above": "**ABOVE chance — FAILURE**", "below": "below chance"}[at_chance[key]]
                text += f" · chance {fmt(chance[key], percent=True)}: {verdict}"
            cells.append(text)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def subject_rows(results: dict) -> str:
    st = results["settings"]
    lines = [f"| subject | trials | {st['n_way']}-way top-{st['top_k']} (mean of samples) | EEG→CLIP retrieval top-1 "
             "| PSNR | SSIM | LPIPS |",
             "|---|---|---|---|---|---|---|"]
    for subject, part in results["per_subject"].items():
        cells = [with_ci(part["metrics"].get(k), part["ci"].get(k), *DIGITS[k])
                 for k in ("top1_mean", "retrieval_top1", "psnr", "ssim", "lpips")]
        lines.append(f"| {subject} | {part['trials']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def metrics_table(results: dict) -> str:
    """Markdown: failures first, our figures (95% intervals) beside the paper's Table 1 (and Table 2's 50-way
    top-1), the controls against chance, the per-subject breakdown, the networks and the settings."""
    m, st = results["metrics"], results["settings"]
    n_way = st["n_way"]
    labels = results.get("meaningful", {})
    all_meaningful = all(v.get("meaningful", True) for v in labels.values())
    head = (
        f"| model | FID ↓ | IS ↑ | PSNR ↑ | SSIM ↑ | LPIPS ↓ | {n_way}-way top-{st['top_k']} (mean of samples) ↑ "
        f"| {n_way}-way top-{st['top_k']} (best of {st['num_samples']}) ↑ |\n"
        "|---|---|---|---|---|---|---|---|\n"
    )
    name = "**ours**" if all_meaningful else "ours"
    ours = f"| {name} | " + " | ".join(
        cell(results, k, *DIGITS[k]) for k in ("fid", "inception_score", "psnr", "ssim", "lpips", "top1_mean", "top1_best")
    ) + " |\n"
    rows = "".join(
        f"| {paper_name} | {p['fid']} | {p['inception_score']} | {p['psnr']} | {p['ssim']} | {p['lpips']} "
        f"| {'–' if p['top1'] is None else str(p['top1']) + '%'} | – |\n"
        for paper_name, p in PAPER.items()
    )
    lines = ["# Stage 3 evaluation\n"]
    if results.get("failures"):
        lines.append(
            "## ⚠ FAILURE: a control is above chance\n\n"
            + "".join(f"* **{f}**\n" for f in results["failures"])
        )
    lines += [
        f"Pipeline: `{results['pipeline']}` · split: {results['split']} · {results['trials']} EEG trials × "
        f"{st['num_samples']} samples = {results['generated_images']} images · "
        f"{st['sampler'].upper() if st['sampler'] in ('ddim', 'plms') else st['sampler']} "
        f"{st['num_inference_steps']} steps · guidance {st['guidance_scale']} · {st['image_size']} px · seed {st['seed']}\n",
        head + ours + rows,
        "EEG→CLIP retrieval top-1: " + with_ci(m.get("retrieval_top1"), results["ci"].get("retrieval_top1"), 1, True)
        + (f" among {m['retrieval_candidates']} images (chance {fmt(1 / m['retrieval_candidates'], percent=True)})"
           if m.get("retrieval_candidates") else "")
        + "\n",
        f"[low, high]: {int(100 * st['bootstrap']['level'])}% percentile bootstrap over the {results['trials']} EEG trials "
        f"({st['bootstrap']['n_resamples']} resamples; FID and IS recomputed on {st['bootstrap']['set_resamples']} resampled "
        "trial sets, their small-set bias not corrected).\n",
    ]
    if results["controls"]:
        lines.append("## Controls (must not be above chance)\n\n" + control_rows(results))
        if results.get("below_chance"):
            lines.append("".join(f"* {b}\n" for b in results["below_chance"]))
    if results["per_subject"]:
        lines.append("## Per subject\n\n" + subject_rows(results) + "\nFID and IS are figures of a whole set of images: "
                     "not broken down by subject. Retrieval per subject ranks against the whole split's images.\n")
    networks = "".join(
        f"| {metric} | {label.get('network') or '–'} | {label.get('provenance', '–')} | "
        f"{'yes' if label['meaningful'] else NOT_MEANINGFUL} |\n"
        for metric, label in labels.items()
    )
    if networks:
        lines.append("## Networks\n\n| metric | network | weights | meaningful |\n|---|---|---|---|\n" + networks)
    lines.append(
        f"FID on {st['fid_features']}-dimensional Inception features (the paper's 3.61 came from the authors' "
        f"64-feature FID: not comparable with a 2048-feature FID); PSNR/SSIM data range {st['data_range']}; "
        f"IS with {st['is_splits']} splits; "
        f"{n_way}-way accuracy from a {st['classifier']['architecture']} classifier with {st['classifier_classes']} classes, "
        f"{st['n_trials']} seeded trials per image. The paper's accuracy is Table 2's full model (mean over samples).\n"
    )
    if results["notes"]:
        lines.append("Notes:\n" + "".join(f"* {n}\n" for n in results["notes"]))
    return "\n".join(lines)
