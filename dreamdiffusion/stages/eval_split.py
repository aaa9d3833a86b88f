"""The split stage 3 evaluates, read the same way on every process, and the shuffled-EEG control's pairing.

Every process reads every trial's index, picture, class and subject from the test loader's dataset (through
its ``trial_info(i)``, which skips the picture, when it has one), so a trial's control partner can be fetched
by position whichever batch or process holds it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from dreamdiffusion.controls import image_derangement


class EvaluatedSplit(NamedTuple):
    """``item(position)`` → the dataset's item (or trial info) at a position; ``trials``: trial index →
    ``{"image_name", "label", "subject"}``; ``position_of``: trial index → position; ``partner``: position →
    the position of its shuffled-EEG partner (a trial of another picture), or None without controls."""

    item: Callable[[int], dict]
    trials: dict[int, dict]
    position_of: dict[int, int]
    partner: list[int] | None


def read_test_split(loaders, seed: int, controls: bool) -> EvaluatedSplit:
    """Read the one test loader's split; a second loader or a trial index given twice is refused."""
    loaders = loaders if isinstance(loaders, (list, tuple)) else [loaders]
    if len(loaders) != 1:
        raise ValueError(f"stage 3 evaluates one test split; the data module gave {len(loaders)} test loaders")
    dataset = loaders[0].dataset
    item = getattr(dataset, "trial_info", dataset.__getitem__)
    trials: dict[int, dict] = {}
    position_of: dict[int, int] = {}
    names = []
    for position in range(len(dataset)):
        info = item(position)
        index = int(info["index"])
        if index in trials:
            raise ValueError(f"the test split holds trial index {index} twice; every trial must have its own index")
        trials[index] = {"image_name": info["image_name"], "label": int(info["label"]), "subject": int(info["subject"])}
        position_of[index] = position
        names.append(info["image_name"])
    return EvaluatedSplit(item, trials, position_of, image_derangement(names, seed) if controls else None)
