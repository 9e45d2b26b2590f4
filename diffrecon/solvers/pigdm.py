"""Pseudoinverse-guided diffusion models (PiGDM): Song, Vahdat, Mardani & Kautz, ICLR 2023.

The likelihood of the noisy state is approximated by taking ``p(x0 | x_t) ~ N(x0_hat, r_t^2 I)``
(Sec. 3.1-3.2), which gives ``p(y | x_t) ~ N(A x0_hat, r_t^2 A A^T + sigma_y^2 I)`` and the
guidance (Eq. 7-8, a vector-Jacobian product through the network, per sample)

    g = (d x0_hat / d x_t)^T  A^T (r_t^2 A A^T + sigma_y^2 I)^{-1} (y - A x0_hat),

with ``r_t^2 = sigma_t^2 v / (v + sigma_t^2)``, the posterior variance of a Gaussian prior of
per-pixel variance ``v``. A stated departure: the paper takes ``v = 1`` (Sec. 3.2, data of unit
variance); data scaled into [0, 1] or [-1, 1] vary far less (``v`` 0.04-0.3), so at the levels where
the data matter r_t was several times too large and the guidance too weak. ``r_variance="prior"``
reads ``v`` off the prior (:func:`~diffrecon.solvers._common.prior_data_variance`); in posterior mode
(``"local"``) ``r_t^2`` is ``tr Cov(x0 | x_t) / n`` read off the denoiser at the current states
(Tweedie's second moment with Hutchinson's estimator; with the variance correction on, its probe
gives it at no extra cost), which also holds for priors that are not Gaussian;
``r_variance="unit"`` is the paper's choice. The matrix
inverse uses the push-through identity ``A^T (r^2 A A^T + s^2 I)^{-1} = (r^2 A^T A + s^2 I)^{-1}
A^T``, i.e. ``op.solve_regularized(res, 0, sigma_y^2 / r_t^2) / r_t^2``: closed form through the
SVD where the operator has one, conjugate gradients otherwise, and with noise-free data it is
exactly the paper's noiseless form ``A^+ y - A^+ A x0_hat`` (divided by r_t^2), so every
operator gets the noisy form, not only those with an SVD.

The guidance enters the DDIM step as a conditional score (Algorithm 1; Dhariwal & Nichol,
NeurIPS 2021, Alg. 2): in the VE sigma form the conditional Tweedie estimate is
``x0_hat + sigma_t^2 g`` and the DDIM step (eta) is taken around it. VP -> VE: the paper's
gradient w.r.t. ``x_vp = sqrt(abar) x_ve`` weighted by ``sqrt(abar_t)`` is g above; its DDIM
step divided by ``sqrt(abar_{t-1})`` is :func:`~diffrecon.solvers._common.ancestral_ddim_step`. The
paper samples with DDIM at eta = 1 (stochastic); eta = 1 is our default.

Variance correction, a stated departure (in posterior_mode, eta = 1 only): the ancestral step drops the
variance of x0 given x_t and y from every transition (x0.73-0.75 along every posterior direction
of 16x16 4-view CT at 50 steps). The step's noise becomes
``sigma sqrt(1 - r^2) (r I + (1 - r) J_y) xi`` (:func:`~diffrecon.solvers._common.corrected_noise_step`)
with ``J_y = J - sigma^2 J A^T (r_t^2 A A^T + sigma_y^2)^-1 A J`` the guided estimate's Jacobian under
the paper's own Gaussian approximation, ``J xi`` by finite differences of the denoiser: two more
network evaluations per step, no more gradients. Measured there: x0.94-1.02. The paper's
algorithm: ``r_variance="unit", variance_correction=False``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch

from ..operators.base import measured_residual
from ._common import (SolverInfo, Step, ancestral_ddim_step, corrected_noise_step, jacobian_probe,
                      local_posterior_variance, param, prior_data_variance, trace_variance)
from ._guidance import match_batch
from .labels import POSTERIOR, SpreadRule


@dataclass(frozen=True)
class Params:
    eta: float = param(1.0, lo=0.0, hi=1.0, help="Fresh-noise fraction of each DDIM step (1: DDPM-like).")
    weight: float = param(1.0, lo=0.0, hi=100.0, help="Multiplier of the guidance (1: the paper's adaptive weight).")
    r_variance: str = param("unit", choices=("local", "prior", "unit"),
                            help="r_t^2: tr Cov(x0 | x_t) / n read off the denoiser at the current states (local), "
                                 "or from a data variance read off the prior, or 1 as in the paper.")
    variance_correction: bool = param(False, help="At eta = 1, restore the variance the ancestral step drops at "
                                                 "finite steps (two more network evaluations per step).")


def solve(denoiser, op, y, sigmas, x_init, *, params: Params, generator) -> Iterator[Step]:
    n = len(sigmas) - 1
    x = x_init
    y = match_batch(y, x.shape[0])
    sigma_y = op.noise_sigma
    zero = torch.zeros_like(x)
    data_var = prior_data_variance(denoiser) if params.r_variance == "prior" else 1.0
    corrected = params.variance_correction and params.eta == 1
    local = params.r_variance == "local"
    for i in range(n):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        r2 = sigma**2 * data_var / (data_var + sigma**2)                      # Sec. 3.2, r_t^2
        with torch.enable_grad():
            x_t = x.detach().requires_grad_(True)
            x0_hat = denoiser(x_t, sigma)                                    # 3: Tweedie estimate
            with torch.no_grad():
                if corrected:  # the correction's probe J xi also gives tr J (Hutchinson) for free
                    xi = generator.randn_like(x)
                    u = jacobian_probe(denoiser, x, x0_hat.detach(), sigma, xi)
                    if local:
                        r2 = trace_variance(sigma, xi, u)
                elif local:
                    r2 = local_posterior_variance(denoiser, x, x0_hat.detach(), sigma, generator)
            with torch.no_grad():                                            # 4: (r^2 AA^T + s^2)^-1 term
                res = measured_residual(op, x0_hat, y)
                v = op.solve_regularized(res, zero, sigma_y**2 / r2) / r2
            (g,) = torch.autograd.grad(x0_hat, x_t, grad_outputs=v)          # 5: VJP, Eq. 7
        x0_guided = x0_hat.detach() + params.weight * sigma**2 * g           # conditional Tweedie
        if corrected:
            # the guided estimate's Jacobian J - w sigma^2 J A^T (r^2 AA^T + s^2)^-1 A J along xi
            a_u = op.A(u)
            mask = op.measured()
            a_u = a_u if mask is None else a_u * mask.to(a_u.real.dtype)
            w = op.solve_regularized(a_u, zero, sigma_y**2 / r2) / r2
            j_xi = u - params.weight * sigma**2 * jacobian_probe(denoiser, x, x0_hat.detach(), sigma, w)
            x = corrected_noise_step(x, x0_guided, sigma, sigma_next, xi, j_xi)
        else:
            x = ancestral_ddim_step(x, x0_guided, sigma, sigma_next, params.eta, generator)  # 6: DDIM step, Alg. 1
        per_step = _nfe_per_step(params)
        yield Step(i, n, sigma_next, x.detach(), x0_guided, (i + 1) * per_step)


def _nfe_per_step(p: Params) -> int:
    if p.variance_correction and p.eta == 1:
        return 3
    return 2 if p.r_variance == "local" else 1


INFO = SolverInfo(
    name="pigdm", solve=solve, Params=Params,
    title="PiGDM (pseudoinverse-guided diffusion)",
    reference="Song, Vahdat, Mardani & Kautz, ICLR 2023",
    needs=frozenset({"grad", "pinv"}), uses_prior=True,
    nfe_per_step=lambda p: _nfe_per_step(p),
    posterior_mode=(("r_variance", "local"), ("variance_correction", True)),
    spread=SpreadRule(POSTERIOR, noise=("eta",), data=("weight",)),
)
