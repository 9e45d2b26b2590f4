"""Denoising diffusion restoration models (DDRM): Kawar, Elad, Ermon & Song, NeurIPS 2022.

DDRM works in the spectral space of ``A = U diag(s) V^T``: with ``x_bar = V^T x`` and the
measurement ``y_bar = diag(s)^+ U^T y`` each coefficient ``i`` is updated on its own (Eq. 7-8):

    null space (s_i = 0):
        x_bar' = x0_bar + sqrt(1 - eta^2) sigma' (x_bar - x0_bar) / sigma + eta sigma' eps
    sigma' <  sigma_y / s_i (measurement noisier than the target level):
        x_bar' = x0_bar + sqrt(1 - eta^2) sigma' (y_bar - x0_bar) / (sigma_y / s_i) + eta sigma' eps
    sigma' >= sigma_y / s_i:
        x_bar' = (1 - eta_b) x0_bar + eta_b y_bar + sqrt(sigma'^2 - (sigma_y / s_i)^2 eta_b^2) eps

where ``x0_bar = V^T D(x, sigma)``, ``sigma`` is the current and ``sigma'`` the next level.
DDRM is written in the VE sigma form already (its Appendix maps it onto VP checkpoints), so no
translation is needed. Defaults eta = 0.85, eta_b = 1.0 are the paper's (Sec. 5). The first
state is the engine's ``sigmas[0] * noise`` rather than Eq. 7's conditional initialisation; at
``sigma_0 >> sigma_y / s_i`` the two coincide to within the first step.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import torch

from ._common import SolverInfo, Step, param
from ._guidance import match_batch, spectral_measurement
from .labels import POSTERIOR, SpreadRule


@dataclass(frozen=True)
class Params:
    eta: float = param(0.85, lo=0.0, hi=1.0, help="Fresh-noise fraction of each step (paper: 0.85).")
    eta_b: float = param(1.0, lo=0.0, hi=1.0, help="Weight of the measurement where it is trusted (paper: 1.0).")


def solve(denoiser, op, y, sigmas, x_init, *, params: Params, generator) -> Iterator[Step]:
    n = len(sigmas) - 1
    eta, eta_b = params.eta, params.eta_b
    x = x_init
    y = match_batch(y, x.shape[0])
    s_safe, observed, y_bar = spectral_measurement(op, y)                   # Eq. 4: y_bar = S^+ U^T y
    r = s_safe.numel()
    # sigma_y / s_i: the noise level of each spectral measurement (Eq. 8); 0 for noise-free data.
    tau = op.noise_sigma / s_safe
    tau_safe = tau.clamp_min(1e-30)
    for i in range(n):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        x0_hat = denoiser(x, sigma)                                          # 1: Tweedie estimate
        x_bar, x0_bar = op.V_adjoint(x), op.V_adjoint(x0_hat)               # 2: spectral coordinates
        eps = generator.randn_like(x_bar)
        # 3: null space, Eq. 7 top: a DDIM step with fresh-noise fraction eta.
        out = (x0_bar + math.sqrt(1 - eta**2) * sigma_next * (x_bar - x0_bar) / sigma
               + eta * sigma_next * eps)
        x0_r, eps_r = x0_bar[:, :r], eps[:, :r]
        # 4: measurement noisier than sigma': pull towards y_bar without trusting it (Eq. 8 mid).
        noisy = x0_r + math.sqrt(1 - eta**2) * sigma_next * (y_bar - x0_r) / tau_safe + eta * sigma_next * eps_r
        # 5: measurement cleaner than sigma': take it and add the missing noise (Eq. 8 bottom).
        clean = ((1 - eta_b) * x0_r + eta_b * y_bar
                 + (sigma_next**2 - (tau * eta_b) ** 2).clamp_min(0).sqrt() * eps_r)
        ranged = torch.where(sigma_next < tau, noisy, clean)
        out = out.clone()
        out[:, :r] = torch.where(observed, ranged, out[:, :r])
        x = op.V(out)                                                        # 6: back to pixels
        yield Step(i, n, sigma_next, x, x0_hat, i + 1)


INFO = SolverInfo(
    name="ddrm", solve=solve, Params=Params,
    title="DDRM (denoising diffusion restoration models)",
    reference="Kawar, Elad, Ermon & Song, NeurIPS 2022",
    needs=frozenset({"svd"}), uses_prior=True,
    # eta = 0 still adds fresh noise in the measured directions (Eq. 8 bottom): never deterministic.
    spread=SpreadRule(POSTERIOR),
)
