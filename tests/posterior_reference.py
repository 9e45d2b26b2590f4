"""The exact Gaussian posterior of a linear inverse problem, dense and in float64, for tests.

With the prior ``x ~ N(mu, C)``, the forward model ``y = A x + n`` and white noise
``n ~ N(0, s^2 I)`` on the measured entries, the posterior is Gaussian (e.g. Bishop, PRML 2006,
Eq. 2.113-2.117; Rasmussen & Williams 2006, Eq. 2.22-2.24):

    mean = mu + C A^T (A C A^T + s^2 I)^-1 (y - A mu)
    cov  = C - C A^T (A C A^T + s^2 I)^-1 A C

Real images and real measurements only; meant for images of at most a few hundred pixels.
"""
from __future__ import annotations

import numpy as np
import torch

Tensor = torch.Tensor


def dense_forward(op) -> tuple[Tensor, Tensor]:
    """``(A, rows)``: the ``m x n`` float64 matrix of ``op`` restricted to its measured entries,
    and the flat indices of those entries in ``meas_shape``."""
    n = int(np.prod(op.image_shape))
    eye = torch.eye(n, dtype=torch.float32).reshape(n, *op.image_shape)
    columns = op.A(eye).reshape(n, -1).double()  # row k is A e_k
    m = op.measured()
    rows = torch.arange(columns.shape[1]) if m is None else torch.nonzero(m.reshape(-1)).reshape(-1)
    return columns.T[rows], rows


def gaussian_posterior(prior, op, y: Tensor) -> tuple[Tensor, Tensor]:
    """Posterior mean ``(C, H, W)`` and covariance ``(n, n)`` (float64) of a
    :class:`~diffrecon.priors.gaussian.StationaryGaussianPrior` given one measurement ``y``
    (``(1, *meas_shape)`` or ``meas_shape``) under ``op``."""
    A, rows = dense_forward(op)
    mu = prior.mean.reshape(-1).double()
    C = prior.covariance_matrix()
    y_vec = y.reshape(-1).double()[rows]
    s2 = float(op.noise_sigma) ** 2
    S = A @ C @ A.T + s2 * torch.eye(A.shape[0], dtype=torch.float64)
    if s2 == 0:
        S = S + 1e-12 * torch.trace(S) / S.shape[0] * torch.eye(A.shape[0], dtype=torch.float64)
    gain = torch.linalg.solve(S, A @ C).T  # C A^T S^-1 (S and C symmetric)
    mean = mu + gain @ (y_vec - A @ mu)
    cov = C - gain @ A @ C
    cov = 0.5 * (cov + cov.T)
    return mean.reshape(op.image_shape), cov


def posterior_std(cov: Tensor, image_shape) -> Tensor:
    """Per-pixel posterior standard deviation from the dense covariance."""
    return cov.diagonal().clamp_min(0).sqrt().reshape(image_shape)
