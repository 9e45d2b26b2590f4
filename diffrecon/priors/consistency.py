"""Consistency models (Song, Dhariwal, Chen & Sutskever, ICML 2023) as priors.

A consistency function ``f(x, sigma)`` maps any point ``x`` of a probability-flow ODE trajectory
at noise level ``sigma`` to the trajectory's end at the smallest level ``eps`` (Eq. 3), so one
evaluation turns noise into an image. It has the denoiser's call signature, but it is *not* a
Tweedie denoiser: it returns one image on the data manifold, not the posterior mean
``E[x0 | x]``. Solvers that need the mean should be given the teacher.

Parametrisation (Song et al., Eq. 5): ``f(x, sigma) = c_skip(sigma) x + c_out(sigma) D(x, sigma)``
with ``c_skip = eps / sigma`` and ``c_out = 1 - eps / sigma``, where ``D`` is a network in the
teacher's own form (an epsilon-prediction UNet read as ``D = x - sigma eps(x_t, t)``). Then
``f(x, eps) = x`` exactly (the boundary condition), ``f = x - (sigma - eps) eps(x_t, t)``
everywhere, and a student copied from the teacher starts as the teacher's denoiser, which is
what makes a short distillation possible.

A prior folder written by :func:`diffrecon.training.consistency.distill` is a diffusers folder
(config.json, fp16 safetensors, card.json) whose card holds ``extra.consistency`` (teacher,
its weight hash, steps, metric, ...); :func:`~diffrecon.priors.diffusers_vp.load_diffusers_prior`
returns a :class:`ConsistencyDenoiser` for it, so ``load_prior(folder)`` loads it like any prior.

:class:`GaussianConsistency` is the exact consistency function of a stationary Gaussian prior,
for tests: its probability-flow ODE ``dx/dsigma = (x - D(x, sigma)) / sigma`` is diagonal in
Fourier space, ``dr/dsigma = sigma r / (p + sigma^2)``, so ``r(sigma) ~ sqrt(p + sigma^2)`` and

    f(x, sigma) = mu + F^H sqrt((p + eps^2) / (p + sigma^2)) F (x - mu).
"""
from __future__ import annotations

import dataclasses

import torch

from .base import Denoiser, sigma_as_batch
from .diffusers_vp import CARD_KINDS, VPEpsilonDenoiser
from .gaussian import StationaryGaussianPrior

Tensor = torch.Tensor

#: the card key that marks a consistency model
CARD_KEY = "consistency"


def boundary_scalings(sigma: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    """``(c_skip, c_out)`` of Song et al. Eq. 5 in the teacher's denoiser form: ``c_skip = eps /
    sigma`` (1 at ``sigma = eps``), ``c_out = 1 - c_skip`` (0 there); ``sigma`` is clamped to ``eps``."""
    c_skip = eps / sigma.clamp_min(eps)
    return c_skip, 1 - c_skip


def consistency_output(x: Tensor, sigma: Tensor, eps: float, denoised: Tensor) -> Tensor:
    """``c_skip x + c_out D`` with ``D`` the network's denoised estimate at ``sigma`` ((B,) tensor)."""
    c_skip, c_out = (c.reshape(-1, *([1] * (x.ndim - 1))) for c in boundary_scalings(sigma, eps))
    return c_skip * x + c_out * denoised


def is_consistency(denoiser) -> bool:
    """Whether ``denoiser`` (or the prior behind a counting wrapper) is a consistency function."""
    return bool(getattr(denoiser, "is_consistency_model", False))


class ConsistencyDenoiser(VPEpsilonDenoiser):
    """A distilled consistency model: a VP epsilon-prediction UNet read through the boundary
    scalings. Everything else (autocast, CUDA graphs or compile, weight hash) is the VP adapter's."""

    is_consistency_model = True

    @property
    def boundary_sigma(self) -> float:
        """``eps`` of the boundary condition ``f(x, eps) = x``: the smallest level of the table."""
        return float(self.card.sigma_min)

    def forward(self, x: Tensor, sigma: Tensor | float) -> Tensor:
        s = sigma_as_batch(sigma, x)
        return consistency_output(x.float(), s, self.boundary_sigma, super().forward(x, s))

    def data_variance(self) -> float:
        """The per-pixel variance of the distillation images (``tr Cov(x0) / n``), from the card;
        else that of a uniform distribution over the value range. Reading it off the network as
        for a Tweedie denoiser (``solvers._common.prior_data_variance``) would be wrong here."""
        value = (self.card.extra.get(CARD_KEY) or {}).get("data_variance")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            return float(value)
        lo, hi = self.card.value_range
        return (hi - lo) ** 2 / 12


CARD_KINDS[CARD_KEY] = ConsistencyDenoiser


class GaussianConsistency(Denoiser):
    """The exact consistency function of a :class:`StationaryGaussianPrior` (module docstring)."""

    bounded = False
    is_consistency_model = True

    def __init__(self, prior: StationaryGaussianPrior, eps: float | None = None):
        super().__init__()
        self.prior = prior
        self.eps = float(prior.card.sigma_min if eps is None else eps)
        self.card = dataclasses.replace(prior.card, name=f"cm-{prior.card.name}", sigma_min=self.eps,
                                        description="Exact consistency function of a stationary Gaussian prior.")

    @property
    def boundary_sigma(self) -> float:
        return self.eps

    def forward(self, x: Tensor, sigma: Tensor | float) -> Tensor:
        s2 = sigma_as_batch(sigma, x).clamp_min(self.eps).reshape(-1, 1, 1, 1).square()
        p = self.prior.power
        gain = ((p + self.eps**2) / (p + s2)).sqrt()
        r = torch.fft.fft2(x - self.prior.mean, norm="ortho")
        return self.prior.mean + torch.fft.ifft2(gain * r, norm="ortho").real

    def data_variance(self) -> float:
        return self.prior.data_variance()
