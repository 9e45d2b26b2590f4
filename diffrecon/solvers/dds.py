"""Decomposed diffusion sampling (DDS): Chung, Lee & Ye, ICLR 2024.

Algorithm 1. The Tweedie estimate is made data-consistent by a few conjugate-gradient steps on
the normal equations, started at x0_hat, so the correction stays in the Krylov subspace
``x0_hat + K_M(A^T A, A^T y - A^T A x0_hat)`` (Sec. 3.2, Eq. 14-15): no backpropagation through
the network, the clean-manifold estimate is only moved along directions the data see. Then a
DDIM step re-noises the corrected estimate with the network's own noise estimate:

    x0_hat  = D(x_t, sigma_t)                                         (Tweedie)
    x0_hat' = CG_M(A^T A x = A^T y; start x0_hat)                      (Eq. 15, M = 5)
    eps_hat = (x_t - x0_hat) / sigma_t
    x_{t-1} = x0_hat' + sigma_down eps_hat + sigma_up eps              (DDIM, Eq. 16)

with ``sigma_up = eta sigma' sqrt(1 - sigma'^2/sigma^2)`` and
``sigma_down^2 + sigma_up^2 = sigma'^2``. The number of CG steps regularises noisy data
(early stopping); the paper uses M = 5 and eta = 0.15 (Sec. 4) and so do we.

Noise-aware data step, a stated departure (on by default). Eq. 15 solves ``A^T A x = A^T y``:
with noisy data the iterates fit the noise as far as M steps go, whatever sigma_y is (the samples
all carry the same fitted noise: zero spread on observed pixels). ``noise_aware`` runs the same M
CG steps on the MAP problem of ``N(x; x0_hat, r_t^2) N(y; A x, sigma_y^2)``,
``(A^T A + sigma_y^2 / r_t^2) x = A^T y + sigma_y^2 / r_t^2 x0_hat`` with ``r_t^2 = sigma_t^2 v / (v +
sigma_t^2)`` (``v`` the prior's per-pixel variance), so the data pull weakens with the noise.

VP -> VE translation. Algorithm 1's ``x_{t-1} = sqrt(abar_{t-1}) x0_hat' + sqrt(1 - abar_{t-1} -
eta^2 beta_t^2) eps_hat + eta beta_t eps`` divided by ``sqrt(abar_{t-1})`` is the line above
(``sqrt(1 - abar)/sqrt(abar) = sigma``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from ..linalg import conjugate_gradient
from ._common import SolverInfo, Step, ancestral_step, ddim_step, param, prior_data_variance
from ._guidance import match_batch
from .labels import POSTERIOR, SpreadRule


@dataclass(frozen=True)
class Params:
    eta: float = param(0.15, lo=0.0, hi=1.0, help="Fresh-noise fraction of each DDIM step (paper: 0.15).")
    cg_steps: int = param(5, lo=0, hi=100, help="Conjugate-gradient steps of the data step (paper: 5).")
    noise_aware: bool = param(True, help="Weigh the data step by the noise: CG on (A^T A + sigma_y^2 / r_t^2 I) x = "
                                         "A^T y + sigma_y^2 / r_t^2 x0_hat; off: the paper's plain normal equations.")


def solve(denoiser, op, y, sigmas, x_init, *, params: Params, generator) -> Iterator[Step]:
    n = len(sigmas) - 1
    x = x_init
    y = match_batch(y, x.shape[0])
    rhs = op.A_adjoint(y).to(x.dtype)
    data_var = prior_data_variance(denoiser) if params.noise_aware and op.noise_sigma > 0 else None
    for i in range(n):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        x0_hat = denoiser(x, sigma)                                          # Tweedie estimate
        x0_dc = x0_hat
        if params.cg_steps > 0 and data_var is not None:                    # noise-aware data step
            gamma = op.noise_sigma**2 * (data_var + sigma**2) / (sigma**2 * data_var)  # sigma_y^2 / r_t^2
            x0_dc = conjugate_gradient(lambda v: op.A_normal(v) + gamma * v, rhs + gamma * x0_hat, x0=x0_hat,
                                       iters=params.cg_steps)
        elif params.cg_steps > 0:                                            # Eq. 15: Krylov data step
            x0_dc = conjugate_gradient(op.A_normal, rhs, x0=x0_hat, iters=params.cg_steps)
        sigma_down, sigma_up = ancestral_step(sigma, sigma_next, params.eta)
        # DDIM with the network's noise estimate (x - x0_hat) / sigma, around the corrected x0.
        x = ddim_step(x, x0_hat, sigma, sigma_down) + (x0_dc - x0_hat)
        if sigma_up > 0:
            x = x + sigma_up * generator.randn_like(x)
        yield Step(i, n, sigma_next, x, x0_dc, i + 1)


INFO = SolverInfo(
    name="dds", solve=solve, Params=Params,
    title="DDS (decomposed diffusion sampling)",
    reference="Chung, Lee & Ye, ICLR 2024",
    needs=frozenset(), spread=SpreadRule(POSTERIOR, noise=("eta",)), uses_prior=True,
)
