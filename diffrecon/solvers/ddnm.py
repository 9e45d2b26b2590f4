"""Denoising diffusion null-space model (DDNM / DDNM+): Wang, Yu & Zhang, ICLR 2023.

Range-null-space decomposition (Eq. 3, Alg. 1): the measurement fixes the range component of
the clean estimate, the prior fills the null space,

    x0_hat' = A^+ y + (I - A^+ A) x0_hat  =  x0_hat - A^+ (A x0_hat - y).

DDNM+ for noisy data (Sec. 3.3, Eq. 17-19) only partly corrects, ``x0_hat' = x0_hat -
lambda_t A^+ (A x0_hat - y)``, and shrinks the fresh noise so that the noise carried in from
``A^+ y`` plus the fresh noise add up to the level the reverse process needs:

    lambda_t = 1 if sigma_t >= a_t sigma_y else sigma_t / (a_t sigma_y)
    gamma_t  = sigma_t^2 - (a_t lambda_t sigma_y)^2                                    (Eq. 19)

``a_t`` is the weight of x0_hat in the next state and ``sigma_t`` the fresh-noise std. In the VE
sigma form the ancestral step ``x' = x0 + (sigma_down/sigma)(x - x0) + sigma_up eps`` gives
``a_t = 1 - sigma_down/sigma`` and ``sigma_t = sigma_up``. Like the paper's "simplified" DDNM+ we
take the noise of ``A^+ y`` as ``sigma_y`` per pixel (exact for masks and the identity), so
only a pseudo-inverse is needed. Steps use DDIM with eta = 0.85 as in the authors' released
configurations (eta = 1 is the DDPM posterior of Alg. 1).

Time travel (Sec. 3.4, Alg. 3), off by default: every ``travel_length`` steps the sampler runs
``travel_length`` steps ahead, re-noises back to the current level, ``travel_repeat`` times, before
taking the step it yields. It costs extra network evaluations (counted in ``Step.nfe``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from ._common import SolverInfo, Step, ancestral_step, ddim_step, param
from ._guidance import match_batch, range_null_space


@dataclass(frozen=True)
class Params:
    eta: float = param(0.85, lo=0.0, hi=1.0, help="Fresh-noise fraction of each DDIM step (released code: 0.85).")
    travel_length: int = param(0, lo=0, hi=100, help="Steps per time-travel jump; 0 turns time travel off.")
    travel_repeat: int = param(1, lo=1, hi=20, help="How often each time-travel jump is repeated.")


def _step(denoiser, op, x, y, sigma, sigma_next, eta, generator):
    """One DDNM+ step from ``sigma`` to ``sigma_next``; returns ``(x_next, x0_hat)``."""
    sigma_y = op.noise_sigma
    sigma_down, sigma_up = ancestral_step(sigma, sigma_next, eta)
    a_t = 1.0 - sigma_down / sigma
    x0_hat = denoiser(x, sigma)                                              # 1: Tweedie estimate
    if sigma_y == 0 or sigma_up >= a_t * sigma_y:                           # 2: Eq. 19, lambda_t
        lam, gamma = 1.0, (sigma_up**2 - (a_t * sigma_y) ** 2) ** 0.5
    else:
        lam, gamma = sigma_up / (a_t * sigma_y), 0.0
    x0_proj = range_null_space(op, x0_hat, y, lam)                           # 3: range-null-space fix
    x_next = ddim_step(x, x0_proj, sigma, sigma_down)                       # 4: posterior mean, a_t x0 + b_t x
    if gamma > 0:
        x_next = x_next + gamma * generator.randn_like(x)                   # 5: shrunk fresh noise
    return x_next, x0_proj


def _renoise(x, sigma_low, sigma_high, generator):
    """Forward diffusion from level ``sigma_low`` back up to ``sigma_high`` (time travel)."""
    return x + (sigma_high**2 - sigma_low**2) ** 0.5 * generator.randn_like(x)


def solve(denoiser, op, y, sigmas, x_init, *, params: Params, generator) -> Iterator[Step]:
    n = len(sigmas) - 1
    levels = [float(s) for s in sigmas]
    travel = params.travel_length
    x = x_init
    y = match_batch(y, x.shape[0])
    nfe = 0
    for i in range(n):
        if travel > 0 and i % travel == 0 and i + travel < n:
            for _ in range(params.travel_repeat):
                ahead = x
                for j in range(i, i + travel):
                    ahead, _ = _step(denoiser, op, ahead, y, levels[j], levels[j + 1], params.eta, generator)
                nfe += travel
                x = _renoise(ahead, levels[i + travel], levels[i], generator)
        x, x0_hat = _step(denoiser, op, x, y, levels[i], levels[i + 1], params.eta, generator)
        nfe += 1
        yield Step(i, n, levels[i + 1], x, x0_hat, nfe)


INFO = SolverInfo(
    name="ddnm", solve=solve, Params=Params,
    title="DDNM+ (null-space diffusion)",
    reference="Wang, Yu & Zhang, ICLR 2023",
    needs=frozenset({"pinv"}), posterior=True, uses_prior=True,
)
