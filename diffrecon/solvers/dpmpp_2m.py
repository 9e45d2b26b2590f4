"""DPM-Solver++(2M): Lu, Zhou, Bao, Chen, Li & Zhu, "DPM-Solver++: Fast solver for guided
sampling of diffusion probabilistic models", arXiv:2211.01095 (2022), Algorithm 2.

A second-order multistep solver of the probability-flow ODE in its data-prediction form. With
``lambda = -log sigma`` (VE: alpha = 1), ``h_i = lambda_i - lambda_{i-1}`` and
``r_i = h_{i-1} / h_i``,

    D_i  = (1 + 1/(2 r_i)) x0_{i-1} - 1/(2 r_i) x0_{i-2}           (second order, Alg. 2)
    x_i  = (sigma_i / sigma_{i-1}) x_{i-1} - (e^{-h_i} - 1) D_i      (Eq. 18 with alpha = 1)

The first step, and the last one (to sigma = 0, where ``h`` is infinite), are first order
(``D_i = x0_{i-1}``: DDIM). VP -> VE: the paper's ``alpha_t`` are all 1 and its
``sigma_t / alpha_t`` is our sigma, so no other factor appears.

Guidance (``guidance``) as in :mod:`diffrecon.solvers.ddim`: ``projection`` corrects each x0
by the range-null-space step before it enters the multistep history; ``dps`` adds the DPS
gradient step after the update. The sampler injects no noise: it is deterministic given the
starting noise, and its spread over seeds is a seed spread, never a posterior std.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

from ._common import SolverInfo, Step
from ._guidance import guidance_param, guidance_uses_data, guided_estimate, match_batch, zeta_param
from .labels import SEED, SpreadRule


@dataclass(frozen=True)
class Params:
    guidance: str = guidance_param()
    zeta: float = zeta_param()


def solve(denoiser, op, y, sigmas, x_init, *, params: Params, generator) -> Iterator[Step]:
    n = len(sigmas) - 1
    x = x_init
    y = match_batch(y, x.shape[0])
    x0_prev, h_prev = None, None
    for i in range(n):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        x0, shift = guided_estimate(params.guidance, denoiser, op, x, y, sigma, sigma_next, params.zeta)
        if sigma_next == 0:
            x = x0                                                            # the ODE's end: D at sigma -> 0
        else:
            h = math.log(sigma / sigma_next)
            if x0_prev is None:
                d = x0                                                        # first order on the first step
            else:
                r = h_prev / h
                d = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * x0_prev         # Alg. 2, D_i
            x = (sigma_next / sigma) * x - math.expm1(-h) * d                 # Eq. 18, alpha = 1
            h_prev = h
        if shift is not None:
            x = x + shift
        x0_prev = x0
        yield Step(i, n, sigma_next, x.detach(), x0, i + 1)


INFO = SolverInfo(
    name="dpmpp_2m", solve=solve, Params=Params,
    title="DPM-Solver++(2M) (fast, deterministic)",
    reference="Lu, Zhou, Bao, Chen, Li & Zhu, arXiv:2211.01095, 2022",
    needs=frozenset({"pinv", "grad"}), uses_prior=True,
    spread=SpreadRule(SEED, data=guidance_uses_data,
                      why="DPM-Solver++(2M) is deterministic given its starting noise: the spread over samples "
                          "is a seed spread, not a posterior standard deviation."),
)
