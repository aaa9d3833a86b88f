"""The pairing of the shuffled-EEG control: every trial gets the EEG of a trial of another picture.

If the generated images come from the EEG, conditioning trial ``i`` on the EEG recorded while another
picture was shown must bring every figure that compares an image with trial ``i``'s own picture (n-way
top-1, EEG→CLIP retrieval) down to chance. The pairing is a derangement *by image*: no trial is paired with a
trial of its own picture (another subject's trial of the same picture included), seeded, over the whole
evaluated split, and computed identically on every process of a distributed run.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def image_derangement(image_names: Sequence[str], seed: int) -> list[int]:
    """``partner[i]``: the split position whose EEG conditions trial ``i`` in the shuffled control.

    Pictures are visited in a seeded random order, their trials shuffled within, and each trial is paired
    with the trial ``m`` places further along that circular order, ``m`` being the largest number of trials
    of one picture: two trials ``m`` apart (either way round) can then never share a picture, as long as
    ``m`` is at most half the trials. A split where one picture holds more than half the trials has no
    such pairing, and is refused.
    """
    n = len(image_names)
    by_image: dict[str, list[int]] = {}
    for position, name in enumerate(image_names):
        by_image.setdefault(name, []).append(position)
    largest = max((len(v) for v in by_image.values()), default=0)
    if n < 2 or 2 * largest > n:
        raise ValueError(
            f"the shuffled-EEG control needs every trial paired with a trial of another picture, but "
            f"{largest} of the {n} evaluated trials show one picture (more than half): evaluate more pictures "
            "or set controls: false"
        )
    generator = torch.Generator("cpu").manual_seed(int(seed))
    names = sorted(by_image)
    order: list[int] = []
    for g in torch.randperm(len(names), generator=generator).tolist():
        trials = by_image[names[g]]
        order += [trials[j] for j in torch.randperm(len(trials), generator=generator).tolist()]
    partner = [0] * n
    for k, position in enumerate(order):
        partner[position] = order[(k + largest) % n]
    return partner
