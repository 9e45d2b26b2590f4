"""Closed-form posteriors of linear inverse problems under exact priors, dense and in float64.

Gaussian prior ``x ~ N(mu, C)``, forward model ``y = A x + n``, white noise ``n ~ N(0, s^2 I)`` on
the measured entries (Bishop, PRML 2006, Eq. 2.113-2.117; Rasmussen & Williams 2006, Eq. 2.22-2.24):

    S    = A C A^T + s^2 I
    mean = mu + C A^T S^-1 (y - A mu),     cov = C - C A^T S^-1 A C,
    p(y) = N(y; A mu, S)                   (the evidence)

A Gaussian mixture ``sum_k w_k N(mu_k, C_k)`` has the posterior ``sum_k w'_k N(mean_k, cov_k)``:
each component updated as above and its weight multiplied by its evidence,
``w'_k ~ w_k N(y; A mu_k, S_k)`` (e.g. Murphy, "Machine Learning", 2012, Sec. 11.2 with
Sec. 4.4.1). Real images; complex measurements as pairs of real ones; meant for images of at most a few hundred pixels.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

Tensor = torch.Tensor


def real_vector(t: Tensor) -> Tensor:
    """``(B, ...)`` as ``(B, m)`` float64 with complex entries split into real and imaginary parts
    (each a real degree of freedom with its own noise), real parts first."""
    flat = t.reshape(t.shape[0], -1)
    if flat.is_complex():
        flat = torch.cat([flat.real, flat.imag], dim=1)
    return flat.double().cpu()


def dense_forward(op) -> tuple[Tensor, Tensor]:
    """``(A, rows)``: the float64 matrix of the real-linear map ``op`` (complex measurements as
    real and imaginary rows, see :func:`real_vector`) restricted to its measured entries, and the
    indices of those rows in ``real_vector(y)``. Real images only."""
    n = int(np.prod(op.image_shape))
    eye = torch.eye(n, dtype=torch.float32, device=op.device).reshape(n, *op.image_shape)
    with torch.no_grad():
        columns = real_vector(op.A(eye))  # row k is A e_k
    m = op.measured()
    if m is None:
        rows = torch.arange(columns.shape[1])
    else:
        mask = m.reshape(-1).cpu()
        mask = torch.cat([mask, mask]) if op.is_complex else mask
        rows = torch.nonzero(mask).reshape(-1)
    return columns.T[rows], rows


def gaussian_update(mu: Tensor, C: Tensor, A: Tensor, y: Tensor, s2: float) -> tuple[Tensor, Tensor, float]:
    """``(mean, cov, log p(y))`` of the Gaussian prior ``N(mu, C)`` given ``y = A x + N(0, s2 I)``."""
    m = A.shape[0]
    S = A @ C @ A.T + s2 * torch.eye(m, dtype=torch.float64)
    if s2 == 0:  # noise-free data: a tiny jitter keeps S invertible where A C A^T is singular
        S = S + 1e-12 * torch.trace(S) / m * torch.eye(m, dtype=torch.float64)
    L = torch.linalg.cholesky(S)
    AC = A @ C
    gain = torch.cholesky_solve(AC, L).T  # C A^T S^-1 (S and C symmetric)
    r = y - A @ mu
    mean = mu + gain @ r
    cov = C - gain @ AC
    white = torch.linalg.solve_triangular(L, r[:, None], upper=False)
    log_evidence = -0.5 * float(white.square().sum()) - float(L.diagonal().log().sum()) - 0.5 * m * math.log(2 * math.pi)
    return mean, 0.5 * (cov + cov.T), log_evidence


@dataclass
class MixturePosterior:
    """``sum_k weights[k] N(means[k], covs[k])`` over flattened images (float64)."""

    weights: Tensor  # (K,)
    means: Tensor  # (K, n)
    covs: Tensor  # (K, n, n)

    @property
    def mean(self) -> Tensor:
        return self.weights @ self.means

    @property
    def variance(self) -> Tensor:
        """Per-pixel variance: ``sum_k w_k (var_k + mean_k^2) - mean^2`` (law of total variance)."""
        second = self.weights @ (self.covs.diagonal(dim1=1, dim2=2) + self.means.square())
        return (second - self.mean.square()).clamp_min(0)

    def sample(self, count: int, generator: torch.Generator) -> Tensor:
        """``(count, n)`` exact draws: a component by weight, then its Gaussian."""
        k = torch.multinomial(self.weights.float(), count, replacement=True, generator=generator)
        n = self.means.shape[1]
        jitter = 1e-12 * torch.eye(n, dtype=torch.float64)
        chol = torch.stack([torch.linalg.cholesky(c + jitter * max(float(c.diagonal().max()), 1.0)) for c in self.covs])
        z = torch.randn(count, n, generator=generator, dtype=torch.float64)
        return self.means[k] + (chol[k] @ z[:, :, None])[..., 0]

    def marginal_cdf(self, values: Tensor) -> Tensor:
        """Per-pixel marginal CDF at ``values`` ``(..., n)``: a mixture of normal CDFs."""
        std = self.covs.diagonal(dim1=1, dim2=2).clamp_min(1e-300).sqrt()  # (K, n)
        z = (values[..., None, :] - self.means) / std
        return (self.weights[:, None] * 0.5 * torch.erfc(-z / math.sqrt(2))).sum(dim=-2)



def gaussian_posterior_exact(prior, op, y: Tensor) -> MixturePosterior:
    """The posterior of a :class:`~diffrecon.priors.gaussian.StationaryGaussianPrior`."""
    A, rows = dense_forward(op)
    y_vec = real_vector(y)[0][rows]
    mean, cov, _ = gaussian_update(prior.mean.reshape(-1).double().cpu(), prior.covariance_matrix().cpu(),
                                   A, y_vec, float(op.noise_sigma) ** 2)
    return MixturePosterior(torch.ones(1, dtype=torch.float64), mean[None], cov[None])


def gmm_posterior_exact(prior, op, y: Tensor) -> MixturePosterior:
    """The posterior of a :class:`~diffrecon.priors.gmm.GaussianMixturePrior`: updated weights,
    means and covariances of every component."""
    A, rows = dense_forward(op)
    y_vec = real_vector(y)[0][rows]
    s2 = float(op.noise_sigma) ** 2
    covs = prior.covariance_matrices().cpu()
    means, posts, logw = [], [], []
    for k in range(prior.num_components):
        mean, cov, log_evidence = gaussian_update(prior.means[k].reshape(-1).double().cpu(), covs[k], A, y_vec, s2)
        means.append(mean)
        posts.append(cov)
        logw.append(math.log(float(prior.weights[k])) + log_evidence)
    weights = torch.softmax(torch.tensor(logw, dtype=torch.float64), dim=0)
    return MixturePosterior(weights, torch.stack(means), torch.stack(posts))


def exact_posterior(prior, op, y: Tensor) -> MixturePosterior:
    """The closed-form posterior for either exact prior (a Gaussian is a one-component mixture)."""
    if hasattr(prior, "num_components"):
        return gmm_posterior_exact(prior, op, y)
    return gaussian_posterior_exact(prior, op, y)
