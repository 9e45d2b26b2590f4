"""Plug-and-play ADMM with the diffusion denoiser: Venkatakrishnan, Bouman & Wohlberg,
GlobalSIP 2013; Chan, Wang & Elgendy, IEEE TCI 3(1), 2017.

ADMM on ``||y - A x||^2 / (2 sigma_y^2) + R(x)`` with the proximal step of R replaced by the
denoiser (Chan et al., Alg. 1; scaled dual u):

    x^{k+1} = argmin_x ||y - A x||^2 / (2 sigma_y^2) + rho ||x - (v^k - u^k)||^2 / (2 s_k^2)
    v^{k+1} = D(x^{k+1} + u^k, s_k)
    u^{k+1} = u^k + x^{k+1} - v^{k+1}

The x-update is ``op.solve_regularized(y, v - u, rho sigma_y^2 / s_k^2)`` (closed form through
an SVD, else conjugate gradients). The denoiser strength ``s_k`` falls geometrically from
sigma_start to sigma_end over the budget (fixed when they are equal), which plays the role of
Chan et al.'s increasing penalty (their ``rho_{k+1} = gamma rho_k`` with ``s_k^2 ~ 1/rho_k``).
The schedule ``sigmas`` only sets the number of iterations. Defaults are for images in
[-1, 1]: from 0.4 (about 50/255 on a [0, 255] scale) to 0.01; sigma_y is floored at 1e-3.

Deterministic and seed-independent (v starts at 0): a point estimate.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch

from ._common import SolverInfo, Step, floored_noise_sigma, param
from ._guidance import match_batch
from .labels import POINT, SpreadRule


@dataclass(frozen=True)
class Params:
    sigma_start: float = param(0.4, lo=1e-4, hi=100.0, help="Denoiser noise level of the first iteration.")
    sigma_end: float = param(0.01, lo=1e-4, hi=100.0, help="Denoiser noise level of the last iteration.")
    rho: float = param(1.0, lo=1e-4, hi=1e4, help="ADMM penalty, relative to 1 / denoiser level^2.")


def solve(denoiser, op, y, sigmas, x_init, *, params: Params, generator) -> Iterator[Step]:
    n = len(sigmas) - 1
    y = match_batch(y, x_init.shape[0])
    sigma_y2 = floored_noise_sigma(op) ** 2
    v = torch.zeros_like(x_init)
    u = torch.zeros_like(x_init)
    ratio = params.sigma_end / params.sigma_start
    for k in range(n):
        s_k = params.sigma_start * ratio ** (k / max(n - 1, 1))
        x = op.solve_regularized(y, v - u, params.rho * sigma_y2 / s_k**2)   # data (x) update
        v = denoiser(x + u, s_k)                                             # prior (v) update
        u = u + x - v                                                        # dual update
        yield Step(k, n, s_k if k + 1 < n else 0.0, x, v, k + 1)


INFO = SolverInfo(
    name="pnp_admm", solve=solve, Params=Params,
    title="PnP-ADMM (plug-and-play, point estimate)",
    reference="Venkatakrishnan, Bouman & Wohlberg 2013; Chan, Wang & Elgendy, IEEE TCI 2017",
    needs=frozenset(), spread=SpreadRule(POINT), uses_prior=True,
)
