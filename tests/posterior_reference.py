"""The exact posterior of a linear inverse problem, dense and in float64, for tests.

The maths lives in :mod:`diffrecon.validate.exact` (the validity report uses it too); these are
the test-facing shapes. With the prior ``x ~ N(mu, C)``, the forward model ``y = A x + n`` and
white noise ``n ~ N(0, s^2 I)`` on the measured entries, the posterior is Gaussian (Bishop, PRML
2006, Eq. 2.113-2.117):

    mean = mu + C A^T (A C A^T + s^2 I)^-1 (y - A mu)
    cov  = C - C A^T (A C A^T + s^2 I)^-1 A C

and a Gaussian mixture prior gives a Gaussian mixture posterior whose weights are multiplied by
each component's evidence ``N(y; A mu_k, A C_k A^T + s^2 I)``.
"""
from __future__ import annotations

import torch

from diffrecon.validate.exact import MixturePosterior, dense_forward, gaussian_posterior_exact, gmm_posterior_exact

Tensor = torch.Tensor

__all__ = ["dense_forward", "gaussian_posterior", "gmm_posterior", "posterior_std", "MixturePosterior"]


def gaussian_posterior(prior, op, y: Tensor) -> tuple[Tensor, Tensor]:
    """Posterior mean ``(C, H, W)`` and covariance ``(n, n)`` (float64) of a
    :class:`~diffrecon.priors.gaussian.StationaryGaussianPrior` given one measurement ``y``
    (``(1, *meas_shape)`` or ``meas_shape``) under ``op``."""
    post = gaussian_posterior_exact(prior, op, y)
    return post.means[0].reshape(op.image_shape), post.covs[0]


def gmm_posterior(prior, op, y: Tensor) -> MixturePosterior:
    """Posterior weights ``(K,)``, means ``(K, n)`` and covariances ``(K, n, n)`` of a
    :class:`~diffrecon.priors.gmm.GaussianMixturePrior` given ``y``."""
    return gmm_posterior_exact(prior, op, y)


def posterior_std(cov: Tensor, image_shape) -> Tensor:
    """Per-pixel posterior standard deviation from the dense covariance."""
    return cov.diagonal().clamp_min(0).sqrt().reshape(image_shape)
