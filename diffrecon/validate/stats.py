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
