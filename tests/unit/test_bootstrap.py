"""Percentile-bootstrap intervals over trials on data whose answer is known."""

import pytest
import torch

from dreamdiffusion.bootstrap import BootstrapSettings, mean_interval, resample_indices, statistic_interval


def test_a_constant_metric_has_a_zero_width_interval():
    low, high = mean_interval(torch.full((40,), 0.3), BootstrapSettings(n_resamples=200))
    assert low == pytest.approx(0.3) and high == pytest.approx(0.3)


def test_intervals_are_seeded():
    values = torch.rand(50, generator=torch.Generator().manual_seed(0))
    assert mean_interval(values, BootstrapSettings(seed=1)) == mean_interval(values, BootstrapSettings(seed=1))
    assert mean_interval(values, BootstrapSettings(seed=1)) != mean_interval(values, BootstrapSettings(seed=2))


def test_95_percent_intervals_cover_a_bernoulli_mean_about_95_percent_of_the_time():
    g = torch.Generator().manual_seed(0)
    p, n, experiments = 0.3, 120, 400
    covered = 0
    for e in range(experiments):
        hits = (torch.rand(n, generator=g) < p).double()
        low, high = mean_interval(hits, BootstrapSettings(n_resamples=400, seed=e))
        covered += low <= p <= high
    assert 0.91 <= covered / experiments <= 0.98


def test_set_level_statistic_is_recomputed_on_resampled_trials():
    values = torch.arange(10.0)
    low, high = statistic_interval(lambda d: float(values[d].max()), 10, BootstrapSettings(set_resamples=200))
    assert 5 <= low <= high == 9.0
    assert statistic_interval(lambda d: 0.0, 10, BootstrapSettings(set_resamples=0)) is None
    draws = resample_indices(7, 3, seed=0)
    assert draws.shape == (3, 7) and draws.min() >= 0 and draws.max() < 7


@pytest.mark.parametrize("kwargs, message", [({"n_resamples": 0}, "resamples must be"), ({"level": 1.0}, "level must be")])
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BootstrapSettings(**kwargs)
