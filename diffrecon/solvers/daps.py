"""Decoupled annealing posterior sampling (DAPS): Zhang, Chu, Berner, Ruan, Zhang, Yue,
Azizzadenesheli & Anandkumar, "Improving diffusion inverse problem solving with decoupled noise
annealing", CVPR 2025.

Algorithm 1. At each annealing level sigma_t the state is decoupled from the last: the sampler
estimates the clean image, samples ``x0`` from an approximation of ``p(x0 | x_t, y)`` by
Langevin dynamics, and re-noises that sample independently to the next level:

    x0_hat = ODE(x_t: sigma_t -> 0)                     (probability-flow ODE, ode_steps Euler steps)
    repeat N times (Langevin, Eq. 9-10):
        x0 <- x0 + eta_t grad[ -||x0 - x0_hat||^2 / (2 r_t^2) - ||y - A x0||^2 / (2 sigma_y^2) ]
                 + sqrt(2 eta_t) eps
    x_{t-1} = x0 + sigma_{t-1} eps                      (re-noise, Alg. 1 last line)

The Gaussian ``N(x0_hat, r_t^2 I)`` stands in for ``p(x0 | x_t)``. The paper takes ``r_t = sigma_t``
(Sec. 3.3), the posterior spread of a prior of unbounded variance: at levels above the data's own
spread that lets x0 wander far outside the prior and lets the data pull it anywhere. A stated
departure, on by default: ``r_t^2 = sigma_t^2 v / (v + sigma_t^2)``, the posterior variance of a
Gaussian prior with the prior's per-pixel variance ``v``
(:func:`~diffrecon.solvers._common.prior_data_variance`); ``r_variance="paper"`` is ``r_t = sigma_t``.

Posterior mode, stated departures (the registry entry's ``posterior_mode``; the defaults stay the
paper's apart from r_t above). ``ode_steps = 1``: x0_hat is Tweedie's estimate ``E[x0 | x_t]``, the mean
of the Gaussian that stands in for ``p(x0 | x_t)``; an ODE end point is closer to one draw of
``p(x0 | x_t)`` than to its mean, so adding ``r_t`` around it counts the spread twice (x1.2-1.7 too much
variance at 5 ODE steps on the exact priors). ``r_variance="local"``: ``r_t^2 = tr Cov(x0 | x_t) / n``
read off the denoiser at the current states (Tweedie's second moment, one more evaluation per
level). ``lr = 0.05``: the unadjusted-Langevin variance bias ``1 / (1 - lr / 2)`` drops from 5 % to
2.6 % (x1.11 to x1.07 along the best-measured directions of 8x8 inpainting with the mixture prior at
50 levels). Langevin starts at x0_hat and takes N = 100 steps per level (the
paper's; DAPS-1K: 200 levels x 5 ODE steps).

Step size, a stated departure. The paper fixes eta_0 = 1e-4, decayed over the levels, for its
noise level sigma_y = 0.05 on [-1, 1] images. A fixed step relaxes the data term at a rate
``eta / sigma_y^2`` that depends on the task: on our Gaussian checks it left the chains far from
the data (posterior-mean error 0.4-0.9) and a larger one explodes on strong operators. We take
``eta_t = lr / L_t`` with ``L_t = 1/r_t^2 + ||A||^2 / sigma_y^2`` the Lipschitz constant of the
gradient: every data direction relaxes within the 100 steps, the chain is stable for every
operator, and with lr = 0.1 the unadjusted-Langevin bias of the variance is under 6 %
(``1/(1 - lr/2)`` for a Gaussian target). sigma_y is floored at 1e-3 for noise-free data.

VP -> VE translation: DAPS is written with EDM's VE ``x_t = x0 + sigma_t eps`` already. The
likelihood gradient needs only A and A^T, no backpropagation through the network.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

from ..operators.base import measured_residual
from ..schedule import karras_sigmas
from ._common import (SolverInfo, Step, ddim_step, floored_noise_sigma, local_posterior_variance, param,
                      prior_data_variance)
from ._guidance import match_batch
from .labels import POSTERIOR, SpreadRule


@dataclass(frozen=True)
class Params:
    ode_steps: int = param(5, lo=1, hi=50, help="Euler steps of the ODE estimate of x0 per level (DAPS-1K: 5).")
    langevin_steps: int = param(100, lo=0, hi=1000, help="Langevin steps per level (paper: 100).")
    lr: float = param(0.1, lo=0.0, hi=1.0, help="Langevin step as a fraction of 1 / (gradient Lipschitz constant).")
    r_variance: str = param("prior", choices=("local", "prior", "paper"),
                            help="r_t^2: tr Cov(x0 | x_t) / n read off the denoiser at the current states (local, one "
                                 "more evaluation per step), sigma_t^2 v / (v + sigma_t^2) with the prior's variance v, "
                                 "or sigma_t^2 (paper).")


def ode_estimate(denoiser, x, sigma: float, steps: int, first=None):
    """x0 by Euler steps of the probability-flow ODE from ``sigma`` to 0 (Karras et al. 2022,
    Alg. 1 without the second-order correction); one step is Tweedie's estimate. ``first``: the
    denoiser at ``(x, sigma)`` when the caller has it (the first step then costs no evaluation)."""
    levels = karras_sigmas(steps, min(float(denoiser.sigma_min), sigma), sigma)
    for j in range(steps):
        s, s_next = float(levels[j]), float(levels[j + 1])
        x = ddim_step(x, first if j == 0 and first is not None else denoiser(x, s), s, s_next)
    return x


def solve(denoiser, op, y, sigmas, x_init, *, params: Params, generator) -> Iterator[Step]:
    n = len(sigmas) - 1
    x = x_init
    y = match_batch(y, x.shape[0])
    sigma_y2 = floored_noise_sigma(op) ** 2
    lipschitz_data = op.norm() ** 2 / sigma_y2
    v = prior_data_variance(denoiser) if params.r_variance == "prior" else float("inf")
    local = params.r_variance == "local"
    nfe = 0
    for i in range(n):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        if local:  # Tweedie's estimate, the variance of x0 around it, then the ODE from it
            tweedie = denoiser(x, sigma)
            r2 = local_posterior_variance(denoiser, x, tweedie, sigma, generator)
            x0_hat = ode_estimate(denoiser, x, sigma, params.ode_steps, first=tweedie)   # 3: x0_hat(x_t)
        else:
            x0_hat = ode_estimate(denoiser, x, sigma, params.ode_steps)      # 3: x0_hat(x_t)
            r2 = sigma**2 if math.isinf(v) else sigma**2 * v / (v + sigma**2)  # r_t (paper: sigma_t)
        nfe += _nfe_per_step(params)
        eta = params.lr / (1.0 / r2 + lipschitz_data)
        x0 = x0_hat
        for _ in range(params.langevin_steps):                                # 4-6: Langevin on x0
            data = op.A_adjoint(measured_residual(op, x0, y)).to(x0.dtype) / sigma_y2
            x0 = x0 + eta * (data - (x0 - x0_hat) / r2) + math.sqrt(2 * eta) * generator.randn_like(x0)
        x = x0 + sigma_next * generator.randn_like(x0) if sigma_next > 0 else x0   # 7: re-noise
        yield Step(i, n, sigma_next, x, x0_hat, nfe)


def _nfe_per_step(p: Params) -> int:
    return p.ode_steps + (p.r_variance == "local")  # the local variance's probe: one more


INFO = SolverInfo(
    name="daps", solve=solve, Params=Params,
    title="DAPS (decoupled annealing posterior sampling)",
    reference="Zhang, Chu, Berner, Ruan, Zhang, Yue, Azizzadenesheli & Anandkumar, CVPR 2025",
    needs=frozenset(), spread=SpreadRule(POSTERIOR, data=("langevin_steps", "lr")), uses_prior=True,
    nfe_per_step=lambda p: _nfe_per_step(p),
    posterior_mode=(("ode_steps", 1), ("r_variance", "local"), ("lr", 0.05)),
)
