"""The shuffled-EEG pairing: a seeded derangement by picture over the whole split."""

import pytest

from dreamdiffusion.controls import image_derangement


def split(images: int, trials_per_image: int) -> list[str]:
    return [f"n0000000{i % 10}_{i}" for i in range(images) for _ in range(trials_per_image)]


@pytest.mark.parametrize("images, per_image", [(2, 1), (3, 1), (40, 6), (7, 3), (11, 1)])
def test_no_trial_is_paired_with_a_trial_of_its_own_picture_and_every_trial_is_used_once(images, per_image):
    names = split(images, per_image)
    partner = image_derangement(names, seed=0)
    assert sorted(partner) == list(range(len(names)))  # a permutation: every EEG conditions exactly one trial
    assert all(names[partner[i]] != names[i] for i in range(len(names)))


def test_uneven_pictures_still_pair_with_others():
    names = ["a"] * 5 + ["b"] * 2 + ["c"] * 3
    partner = image_derangement(names, seed=3)
    assert all(names[partner[i]] != names[i] for i in range(len(names)))


def test_the_pairing_is_seeded():
    names = split(30, 2)
    assert image_derangement(names, seed=1) == image_derangement(names, seed=1)
    assert image_derangement(names, seed=1) != image_derangement(names, seed=2)


@pytest.mark.parametrize("names", [["a"] * 3 + ["b"], ["a"], []])
def test_a_split_without_a_pairing_is_refused(names):
    with pytest.raises(ValueError, match="set controls: false"):
        image_derangement(names, seed=0)
