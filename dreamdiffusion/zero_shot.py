"""Zero-shot EEG→CLIP retrieval over the pictures of a test split (THINGS-EEG2: 200 pictures of 200 unseen concepts).

Each trial's CLIP-head prediction ``h(y)`` is ranked by cosine similarity against the CLIP image embeddings of
the split's **distinct pictures** (the gallery, ``M``; 200 on THINGS-EEG2):

* top-k (k = 1, 5): the trial's own picture is among the ``k`` most similar; chance ``k / M`` (0.5% / 2.5%);
* seeded k-way: ``n_trials`` draws of ``k − 1`` other pictures of the gallery (seeded per trial from
  ``(seed, trial index)``, so the figure does not depend on batch size or process count); a draw is a hit when
  the own picture is more similar than every drawn one; chance ``1 / k``.

Per-trial values are returned, for the bootstrap.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from dreamdiffusion.generation import derive_seed
from dreamdiffusion.metrics import distractor_trials


def gallery(names: list[str], targets: Tensor) -> tuple[list[str], Tensor, Tensor]:
    """Distinct pictures of the split: ``(picture names [M], embeddings [M, d], picture of each trial [N])``."""
    order = list(dict.fromkeys(names))
    position = {n: i for i, n in enumerate(order)}
    first = [names.index(n) for n in order]
    return order, targets[first], torch.tensor([position[n] for n in names], dtype=torch.long)


def similarities(predicted: Tensor, embeddings: Tensor) -> Tensor:
    """Cosine similarity ``[N, M]`` of predictions ``[N, d]`` to gallery embeddings ``[M, d]``."""
    return nn.functional.normalize(predicted.double(), dim=-1) @ nn.functional.normalize(embeddings.double(), dim=-1).T


def top_k_hits(sim: Tensor, own: Tensor, k: int) -> Tensor:
    """``[N]`` 1.0 when the own picture ``own [N]`` ranks among the ``k`` most similar of ``sim [N, M]``."""
    own_sim = sim.gather(1, own.view(-1, 1))
    return ((sim > own_sim).sum(dim=1) < k).double()


def k_way_scores(sim: Tensor, own: Tensor, index: Tensor, k: int, n_trials: int, seed: int) -> Tensor:
    """``[N]`` share of ``n_trials`` seeded k-way draws a trial wins (module docstring)."""
    m = sim.shape[1]
    if not 2 <= k <= m:
        raise ValueError(f"{k}-way retrieval needs at least {k} distinct pictures in the split, which has {m}")
    scores = []
    for row, target, key in zip(sim, own.tolist(), index.tolist(), strict=True):
        draws = distractor_trials(m, int(target), k, n_trials, derive_seed(seed, int(key)))  # column 0: own picture
        values = row[draws]
        scores.append((values[:, 1:] < values[:, :1]).all(dim=1).double().mean())
    return torch.stack(scores)


def zero_shot_retrieval(
    predicted: Tensor, targets: Tensor, names: list[str], index: Tensor, top_k: list[int], k_way: list[int],
    n_trials: int, seed: int,
) -> tuple[dict[str, Tensor], dict[str, float], int]:
    """Per-trial values ``{"top1": [N], "top5": [N], "2way": [N], ...}``, their chance levels and the gallery size ``M``.

    ``predicted [N, d]`` CLIP-head predictions, ``targets [N, d]`` CLIP embeddings of each trial's picture,
    ``names [N]`` picture names, ``index [N]`` trial indices (seeds of the k-way draws). A ``k`` of ``k_way``
    larger than the gallery is skipped (not in the output).
    """
    _, embeddings, own = gallery(names, targets)
    sim = similarities(predicted, embeddings)
    m = embeddings.shape[0]
    values, chance = {}, {}
    for k in top_k:
        values[f"top{k}"] = top_k_hits(sim, own, k)
        chance[f"top{k}"] = min(1.0, k / m)
    for k in k_way:
        if k <= m:
            values[f"{k}way"] = k_way_scores(sim, own, index, k, n_trials, seed)
            chance[f"{k}way"] = 1 / k
    return values, chance, m
