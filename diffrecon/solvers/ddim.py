"""Denoising diffusion implicit models (DDIM): Song, Meng & Ermon, ICLR 2021, with guidance.

Eq. 12 in the VE sigma form: with ``x0_hat = D(x, sigma)`` and ``eps_hat = (x - x0_hat) / sigma``,

    x' = x0_hat + sigma_down eps_hat + sigma_up eps,   sigma_down^2 + sigma_up^2 = sigma'^2,

``sigma_up = eta sigma' sqrt(1 - sigma'^2 / sigma^2)`` (Eq. 16): eta = 0 is the deterministic
sampler (the probability-flow ODE discretised), eta = 1 is DDPM. VP -> VE: divide Eq. 12 by
``sqrt(abar_{t-1})``; ``sqrt(1 - abar)/sqrt(abar)`` is sigma (no further factor).

Guidance makes it a fast reconstruction method (``guidance``):

* ``projection`` (default): x0_hat is replaced by DDNM's range-null-space correction
  ``x0_hat - A^+ (A x0_hat - y)`` (Wang, Yu & Zhang, ICLR 2023, Eq. 3) before the step, so the
  output matches y on the range of A. It needs a pseudo-inverse (closed form or CG), no gradient.
* ``dps``: after the step, ``x' -= zeta * gain * grad ||y - A x0_hat||`` through the network
  (Chung et al., ICLR 2023, Eq. 16; gain the VP -> VE factor of
  :func:`~diffrecon.solvers._guidance.vp_to_ve_gain`), per sample.
* ``none``: unconditional DDIM (prior samples).

With eta = 0 the output is a deterministic function of the starting noise: the spread over
seeds is not a posterior spread, and the registry says so (``posterior`` callable).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from ._common import SolverInfo, Step, ancestral_ddim_step, param
from ._guidance import guidance_param, guidance_uses_data, guided_estimate, match_batch, zeta_param
from .labels import POSTERIOR, SpreadRule


@dataclass(frozen=True)
class Params:
    eta: float = param(0.0, lo=0.0, hi=1.0, help="Fresh-noise fraction (0: deterministic DDIM, 1: DDPM).")
    guidance: str = guidance_param()
    zeta: float = zeta_param()


def solve(denoiser, op, y, sigmas, x_init, *, params: Params, generator) -> Iterator[Step]:
    n = len(sigmas) - 1
    x = x_init
    y = match_batch(y, x.shape[0])
    for i in range(n):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        x0_hat, shift = guided_estimate(params.guidance, denoiser, op, x, y, sigma, sigma_next, params.zeta)
        x = ancestral_ddim_step(x, x0_hat, sigma, sigma_next, params.eta, generator)  # Eq. 12
        if shift is not None:
            x = x + shift
        yield Step(i, n, sigma_next, x.detach(), x0_hat, i + 1)


INFO = SolverInfo(
    name="ddim", solve=solve, Params=Params,
    title="DDIM (fast; deterministic at eta = 0)",
    reference="Song, Meng & Ermon, ICLR 2021",
    needs=frozenset({"pinv", "grad"}), uses_prior=True,
    spread=SpreadRule(POSTERIOR, noise=("eta",), data=guidance_uses_data),
)
