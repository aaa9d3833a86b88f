"""The THINGS-EEG2 section of stage 3's ``metrics.md``: zero-shot retrieval and the reconstruction suite, each with
its 95% interval and chance, beside the published anchors (the authors' own protocols, most of which leak:
test-EEG statistics in the whitening, model selection on the test set)."""

from __future__ import annotations

# 200-way zero-shot top-1 / top-5 in % (subject-dependent, mean over subjects) as published.
RETRIEVAL_ANCHORS = {
    "NICE (Song et al., 2024)": {"top1": 15.6, "top5": 42.8},
    "ATM-S (Li et al., 2024)": {"top1": 28.5, "top5": 60.4},
    "UBP (Wu et al., 2025)": {"top1": 50.9, "top5": 79.7},
}
# Reconstruction of sub-08's 200 test pictures as published by ATM (Li et al., 2024).
RECONSTRUCTION_ANCHORS = {
    "ATM, sub-08 (Li et al., 2024)": {
        "pixcorr": 0.160, "ssim": 0.345, "alexnet_2": 0.776, "alexnet_5": 0.866, "inception": 0.734, "clip": 0.786,
        "efficientnet": None, "swav": 0.582,
    },
}
SUITE_COLUMNS = {
    "pixcorr": "PixCorr ↑", "ssim": "SSIM ↑", "alexnet_2": "AlexNet(2) ↑", "alexnet_5": "AlexNet(5) ↑",
    "inception": "Inception ↑", "clip": "CLIP ↑", "efficientnet": "EffNet-B ↓", "swav": "SwAV ↓",
}
DEFINITIONS = {
    "top_k": "200-way zero-shot: the trial's own picture among the k most cosine-similar CLIP embeddings of the split's "
             "distinct pictures (CLIP-head prediction vs CLIP image embeddings); chance k / pictures",
    "k_way": "seeded k-way: n_trials draws of k-1 other pictures per trial (seed, trial index); a hit when the own "
             "picture is the most similar; chance 1/k",
    "pixcorr": "Pearson correlation of the pixels of reconstruction and ground truth (both resized to 256 px)",
    "ssim": "SSIM of grey images (rgb2gray luma), Gaussian window sigma 1.5 (11x11), data range 1, 256 px",
    "two_way": "for reconstruction i, the share of other ground truths j with corr(gt_j, rec_i) < corr(gt_i, rec_i) "
               "on the network's features; chance 0.5",
    "correlation_distance": "1 - corr(features of gt_i, features of rec_i), mean over trials (lower is better)",
    "samples": "each trial's value is the mean over its num_samples samples; sample k of every trial forms one set",
}


def _value(figure: dict | None, percent: bool = False) -> str:
    if not figure or figure.get("value") is None:
        return "–"
    scale, unit = (100.0, "%") if percent else (1.0, "")
    text = f"{scale * figure['value']:.1f}{unit}" if percent else f"{figure['value']:.3f}"
    if figure.get("ci"):
        low, high = (scale * v for v in figure["ci"])
        text += f" [{low:.1f}, {high:.1f}]" if percent else f" [{low:.3f}, {high:.3f}]"
    return text


def things_table(things: dict) -> str:
    """Markdown of ``metrics.json``'s ``things`` section."""
    retrieval, suite = things.get("retrieval", {}), things.get("reconstruction", {})
    random = things.get("random_networks") or []
    label = "ours" if not random else f"ours (random {', '.join(random)}: not meaningful)"
    lines = ["## THINGS-EEG2 (zero-shot test, leak-free protocol)\n\n"]
    lines += [f"* {note}\n" for note in things.get("notes", [])]
    lines.append("\n")
    if retrieval:
        m = things.get("pictures")
        keys = [k for k in retrieval if k.startswith("top")] + [k for k in retrieval if k.endswith("way")]
        lines.append(f"| retrieval ({m} pictures) | " + " | ".join(keys) + " |\n|---|" + "---|" * len(keys) + "\n")
        lines.append("| ours | " + " | ".join(_value(retrieval[k], percent=True) for k in keys) + " |\n")
        lines.append("| chance | " + " | ".join(f"{100 * retrieval[k]['chance']:.1f}%" for k in keys) + " |\n")
        for name, anchor in RETRIEVAL_ANCHORS.items():
            lines.append(f"| {name} | " + " | ".join(f"{anchor[k]}%" if k in anchor else "–" for k in keys) + " |\n")
        lines.append("\n")
    else:
        lines.append("Retrieval not computed: no CLIP targets (set clip_model).\n\n")
    if suite:
        keys = [k for k in SUITE_COLUMNS if k in suite]
        lines.append("| reconstruction | " + " | ".join(SUITE_COLUMNS[k] for k in keys) + " |\n|---|" + "---|" * len(keys) + "\n")
        lines.append(f"| {label} | " + " | ".join(_value(suite[k]) for k in keys) + " |\n")
        for name, anchor in RECONSTRUCTION_ANCHORS.items():
            lines.append(f"| {name} | " + " | ".join("–" if anchor.get(k) is None else f"{anchor[k]:.3f}" for k in keys) + " |\n")
        lines.append("\n")
    lines.append(
        "Anchors are the authors' published figures under their own protocols (most with test-EEG statistics in the "
        "whitening and model selection on the test set); ours: validation on held-out training concepts, test scored once.\n"
    )
    return "".join(lines)
