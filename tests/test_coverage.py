"""Coverage of K samples: the t prediction interval mean +- t_{K-1} sqrt(1 + 1/K) s that every
report uses scores its nominal level for an exact sampler at any K."""
from __future__ import annotations

import numpy as np
import pytest

from diffrecon.metrics import COVERAGE_LEVEL, coverage, interval_factor

PIXELS = 40_000  # standard error of a coverage near 0.9: 0.0015


def _exact_draws(k: int, seed: int):
    """Per pixel a posterior N(mu, sd^2) with its own mu and sd, K exact draws and one truth."""
    rng = np.random.default_rng(seed)
    mu, sd = rng.normal(size=PIXELS), rng.uniform(0.1, 3.0, size=PIXELS)
    samples = mu + sd * rng.standard_normal((k, PIXELS))
    truth = mu + sd * rng.standard_normal(PIXELS)
    return samples.mean(0), samples.std(0, ddof=1), truth


@pytest.mark.parametrize("k", [4, 8])
@pytest.mark.parametrize("level", [COVERAGE_LEVEL, 0.5])
def test_an_exact_sampler_scores_the_nominal_level_at_small_k(k, level):
    mean, std, truth = _exact_draws(k, seed=k)
    assert coverage(mean, std, truth, k, level) == pytest.approx(level, abs=0.01)


@pytest.mark.parametrize("k", [4, 8])
def test_the_gaussian_interval_of_the_sample_std_under_covers_at_small_k(k):
    mean, std, truth = _exact_draws(k, seed=10 + k)
    gaussian = float(np.mean(np.abs(truth - mean) <= 1.6449 * std))
    assert gaussian < COVERAGE_LEVEL - 0.05  # why the t-interval: 0.76 at K = 4, 0.835 at K = 8
    assert interval_factor(k) > 1.6449 * np.sqrt(1 + 1 / k)  # t's heavier tails on top of sqrt(1 + 1/K)


def test_an_over_dispersed_sampler_over_covers_and_the_interval_needs_two_samples():
    mean, std, truth = _exact_draws(8, seed=3)
    assert coverage(mean, 2 * std, truth, 8) > 0.99
    with pytest.raises(ValueError, match="at least 2 samples"):
        coverage(mean, std, truth, 1)
