"""DPM-Solver++(3M) SDE: the third-order multistep solver of the diffusion SDE in data-prediction
form (Lu, Zhou, Bao, Chen, Li & Zhu, arXiv:2211.01095, 2022, Sec. 5 and App. B; the SDE variant
and the third-order multistep combination as in k-diffusion's ``sample_dpmpp_3m_sde``, Crowson).

With ``lambda = -log sigma`` (VE: alpha = 1), ``h = lambda_{i+1} - lambda_i``, ``h_eta = (1 + eta) h``:

    x    = e^{-h_eta} x_i + (1 - e^{-h_eta}) D_i                              (exponential integrator)
    x   += phi_2 D1 - phi_3 D2                                                 (2nd / 3rd order corrections)
    x   += sigma_{i+1} sqrt(1 - e^{-2 eta h}) eps                               (fresh noise, eta > 0)

with ``phi_2 = expm1(-h_eta) / h_eta + 1``, ``phi_3 = phi_2 / h_eta - 1/2``, ``D1`` and ``D2`` the first and second divided differences of
the last three clean estimates in ``lambda`` (first order on the first step, second order on the
second). ``eta = 1`` solves the reverse SDE (a sampler of the prior, ancestral in the limit of
small steps); ``eta = 0`` is the probability-flow ODE (DPM-Solver++(3M), deterministic).

Guidance (``guidance``, :mod:`._fast`): each clean estimate is replaced by its guided estimate
before it enters the multistep history, or the DPS gradient shifts the state after the update.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

from ._common import SolverInfo, Step, param
from ._fast import GuidanceParams, guided_x0, uses_data
from ._guidance import match_batch
from .labels import POSTERIOR, SpreadRule


@dataclass(frozen=True)
class Params(GuidanceParams):
    eta: float = param(1.0, lo=0.0, hi=1.0, help="Stochasticity (1: the reverse SDE; 0: the ODE, deterministic).")


def solve(denoiser, op, y, sigmas, x_init, *, params: Params, generator) -> Iterator[Step]:
    n = len(sigmas) - 1
    x = x_init
    y = match_batch(y, x.shape[0])
    d_1 = d_2 = h_1 = h_2 = None
    for i in range(n):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        d, shift = guided_x0(params, denoiser, op, x, y, sigma, sigma_next)
        if sigma_next == 0:
            x = d                                                              # the end: D at sigma -> 0
        else:
            h = math.log(sigma / sigma_next)
            h_eta = h * (params.eta + 1)
            x = math.exp(-h_eta) * x - math.expm1(-h_eta) * d                  # first order (DDIM-like)
            phi_2 = math.expm1(-h_eta) / h_eta + 1
            if h_2 is not None:                                                # third order
                r0, r1 = h_1 / h, h_2 / h
                d1_0, d1_1 = (d - d_1) / r0, (d_1 - d_2) / r1
                d1 = d1_0 + (d1_0 - d1_1) * r0 / (r0 + r1)
                d2 = (d1_0 - d1_1) / (r0 + r1)
                x = x + phi_2 * d1 - (phi_2 / h_eta - 0.5) * d2
            elif h_1 is not None:                                              # second order
                x = x + phi_2 * (d - d_1) / (h_1 / h)
            if params.eta > 0:
                x = x + sigma_next * math.sqrt(-math.expm1(-2 * h * params.eta)) * generator.randn_like(x)
            d_1, d_2, h_1, h_2 = d, d_1, h, h_1
        if shift is not None:
            x = x + shift
        x = x.detach()
        yield Step(i, n, sigma_next, x, d.detach(), i + 1)


INFO = SolverInfo(
    name="dpmpp_3m_sde", solve=solve, Params=Params,
    title="DPM-Solver++(3M) SDE (fast)",
    reference="Lu, Zhou, Bao, Chen, Li & Zhu, arXiv:2211.01095, 2022",
    needs=frozenset({"grad"}), uses_prior=True,
    spread=SpreadRule(POSTERIOR, noise=("eta",), data=uses_data),
)
