"""r_t^2 read off the denoiser (``r_variance="local"``) against the exact ``tr Cov(x0 | x_t) / n``."""
from __future__ import annotations

import pytest
import torch

from diffrecon.operators import Denoise
from diffrecon.solvers._common import SampleRNG, local_posterior_variance, prior_data_variance
from diffrecon.validate.exact import exact_posterior
from diffrecon.validate.problems import make_prior


def _exact_average(prior, x_t: torch.Tensor, sigma: float) -> float:
    """Mean over the batch of ``tr Cov(x0 | x_t) / n``: the posterior of a denoising problem."""
    op = Denoise(tuple(x_t.shape[1:]))
    op.noise_sigma = sigma
    return float(torch.stack([exact_posterior(prior, op, x_t[k:k + 1]).variance.mean()
                              for k in range(x_t.shape[0])]).mean())


@pytest.mark.parametrize("kind", ["gaussian", "gmm"])
@pytest.mark.parametrize("sigma", [0.05, 0.2, 1.0])
def test_local_variance_matches_the_exact_conditional_variance(kind, sigma):
    prior = make_prior(kind, 8)
    g = torch.Generator().manual_seed(7)
    x0 = prior.sample(64, g)
    x_t = x0 + sigma * torch.randn(x0.shape, generator=g)
    with torch.no_grad():  # Hutchinson's probes are noisy (a rank-one part of J most): 8 probe seeds
        estimate = sum(local_posterior_variance(prior, x_t, prior(x_t, sigma), sigma, SampleRNG(seed, range(64)))
                       for seed in range(8)) / 8
    exact = _exact_average(prior, x_t, sigma)
    assert estimate == pytest.approx(exact, rel=0.05)


def test_a_gaussian_with_the_mixtures_variance_overstates_its_conditional_variance():
    """Why posterior mode reads r_t^2 locally: for the mixture prior the variance of a Gaussian prior
    with the same per-pixel variance (``r_variance="prior"``) is too large at the levels where the two
    components separate (the MMSE is below the LMMSE); the local estimate is not."""
    prior = make_prior("gmm", 8)
    sigma = 0.2
    g = torch.Generator().manual_seed(3)
    x_t = prior.sample(64, g)
    x_t = x_t + sigma * torch.randn(x_t.shape, generator=g)
    v = prior_data_variance(prior)
    gaussian_r2 = sigma**2 * v / (v + sigma**2)
    exact = _exact_average(prior, x_t, sigma)
    assert gaussian_r2 > 1.5 * exact
    with torch.no_grad():
        local = local_posterior_variance(prior, x_t, prior(x_t, sigma), sigma, SampleRNG(1, range(64)))
    assert local == pytest.approx(exact, rel=0.05)
