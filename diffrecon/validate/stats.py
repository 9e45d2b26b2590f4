"""The report's statistics: error of the mean, variance ratio, a test of the marginals, coverage.

The marginal test is a one-sample Kolmogorov-Smirnov test per pixel (Massey, JASA 46, 1951)
of the solver's K samples against the exact marginal CDF (a normal, or a mixture of normals for
the GMM prior), which is sharper than a two-sample test against exact draws. A calibrated sampler
is rejected at 5 % in about 5 % of pixels; we report the fraction rejected.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.stats import kstwo

from .exact import MixturePosterior


def mean_error(samples: np.ndarray, post: MixturePosterior, prior_mean: np.ndarray) -> float:
    """``||mean_hat - mean|| / ||mean - prior mean||``: 0 exact, about 1 ignores the data."""
    mean = post.mean.numpy()
    est = samples.reshape(samples.shape[0], -1).mean(axis=0)
    return float(np.linalg.norm(est - mean) / max(np.linalg.norm(mean - prior_mean.reshape(-1)), 1e-30))


def variance_ratio(samples: np.ndarray, post: MixturePosterior) -> tuple[float, float, float]:
    """Per-pixel sample variance over true variance: (median, 10 %, 90 % quantiles over pixels)."""
    var = samples.reshape(samples.shape[0], -1).var(axis=0, ddof=1)
    ratio = var / np.maximum(post.variance.numpy(), 1e-30)
    lo, med, hi = np.quantile(ratio, [0.1, 0.5, 0.9])
    return float(med), float(lo), float(hi)


def ks_reject_fraction(samples: np.ndarray, post: MixturePosterior, level: float = 0.05) -> float:
    """Fraction of pixels whose samples a one-sample KS test rejects at ``level``."""
    flat = np.sort(samples.reshape(samples.shape[0], -1).astype(np.float64), axis=0)
    k = flat.shape[0]
    cdf = post.marginal_cdf(torch.as_tensor(flat)).numpy()  # (K, n)
    steps = np.arange(1, k + 1)[:, None] / k
    d = np.maximum(steps - cdf, cdf - (steps - 1.0 / k)).max(axis=0)
    return float(np.mean(kstwo.sf(d, k) < level))


def t_interval_covered(samples: np.ndarray, truth: np.ndarray, level: float = 0.9) -> tuple[int, int]:
    """``(covered, pixels)``: how many pixels' truth lies in the prediction interval of the K
    samples, :func:`diffrecon.metrics.coverage`'s ``mean +- t_{K-1} sqrt(1 + 1/K) s`` (counts, so
    several measurements pool)."""
    from ..metrics import coverage

    flat = samples.reshape(samples.shape[0], -1).astype(np.float64)
    fraction = coverage(flat.mean(axis=0), flat.std(axis=0, ddof=1), truth.reshape(-1), flat.shape[0], level)
    return int(round(fraction * flat.shape[1])), int(flat.shape[1])


def posterior_covariance(post: MixturePosterior) -> np.ndarray:
    """The posterior's total covariance ``sum_k w_k (C_k + m_k m_k^T) - m m^T`` (law of total covariance)."""
    w, means, covs = post.weights.numpy(), post.means.numpy(), post.covs.numpy()
    mean = w @ means
    second = np.einsum("k,kij->ij", w, covs) + np.einsum("k,ki,kj->ij", w, means, means)
    return second - np.outer(mean, mean)


def eigen_variance_ratios(samples: np.ndarray, post: MixturePosterior, share: float = 0.25) -> tuple[float, float]:
    """Sample variance over posterior variance along the posterior covariance's eigenvectors,
    averaged over the best-measured ``share`` of them (smallest posterior variance) and over the
    least-measured ``share`` (largest): a check of the joint covariance, where per-pixel marginals
    can look right while the samples miss the data along a well-measured direction."""
    lam, vecs = np.linalg.eigh(posterior_covariance(post))
    flat = samples.reshape(samples.shape[0], -1).astype(np.float64)
    ratio = (flat @ vecs).var(axis=0, ddof=1) / np.maximum(lam, 1e-300)
    q = max(1, int(round(share * lam.size)))
    return float(ratio[:q].mean()), float(ratio[-q:].mean())


def mean_error_squares(samples: np.ndarray, post: MixturePosterior) -> tuple[float, float]:
    """``(||mean_hat - mean||^2, tr(cov) / K)``: the squared error of the sample mean and its
    expectation for K exact draws (the Monte-Carlo floor); their pooled ratio's root is the mean
    error in units of the floor (about 1 for an exact sampler)."""
    flat = samples.reshape(samples.shape[0], -1).astype(np.float64)
    err2 = float(np.square(flat.mean(axis=0) - post.mean.numpy()).sum())
    return err2, float(post.variance.sum()) / flat.shape[0]
