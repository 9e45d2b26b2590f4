"""Diffusion plug-and-play image restoration (DiffPIR): Zhu, Zhang, Liang, Cao, Wen, Timofte &
Van Gool, CVPR Workshops (NTIRE) 2023.

Algorithm 1, half-quadratic splitting inside the reverse process:

    x0     = D(x_t, sigma_bar_t)                                             (line 3, Eq. 11)
    x0_hat = argmin_x ||y - A x||^2 + rho_t ||x - x0||^2                     (line 4, Eq. 12)
    eps    = (x_t - x0_hat) / sigma_bar_t                                    (line 5)
    x_{t-1} = x0_hat + sigma_bar_{t-1} (sqrt(1 - zeta) eps + sqrt(zeta) eps_t)   (line 7)

with ``rho_t = lambda sigma_y^2 / sigma_bar_t^2`` (the paper's Eq. 13: the data term weighted by
``1 / (2 sigma_y^2)`` against the prior's proximal weight ``lambda / (2 sigma_bar_t^2)``). The
data step is the operator's closed form where it has an SVD, conjugate gradients otherwise
(``op.solve_regularized``). As in the authors' code, sigma_y is floored at 1e-3 so that
noise-free data still gives a well-posed proximal problem (rho_t -> 0 is a hard projection).

VP -> VE translation. The paper already denoises at ``sigma_bar_t = sqrt((1 - abar_t)/abar_t)``,
which is our sigma. Its line 7, ``x_{t-1} = sqrt(abar_{t-1}) x0_hat + sqrt(1 - abar_{t-1})(...)``,
divided by ``sqrt(abar_{t-1})`` is the VE line above.

Clipping. For a bounded prior (a network trained on data scaled into its value range,
``Denoiser.bounded``) the denoised estimate is clipped to that range before the data step, as
deepinv's DiffPIR does; ``clip=False`` turns it off. Analytic priors (Gaussian, mixture) are
unbounded and never clipped, so their samples keep the exact posterior's tails. Clipping the
Gaussian prior's estimates to [0, 1] is worth 1.4 dB on sparse-view CT of phantoms
(``benchmarks/bench_deepinv.py``, agreement section, where both sides clip).

Defaults. lambda = 7.0 and zeta = 0.3 are the paper's choice for deblurring with Gaussian noise
(and close to those for super-resolution); inpainting works better with zeta near 1. Both were
tuned for images in [-1, 1], the range the engine maps data into.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from ._common import SolverInfo, Step, param
from ._guidance import match_batch
from .labels import POSTERIOR, SpreadRule

#: the authors' floor on the noise level in rho_t (noise-free data).
SIGMA_Y_FLOOR = 1e-3


@dataclass(frozen=True)
class Params:
    lam: float = param(7.0, lo=1e-3, hi=1e4, help="lambda: prior weight in the data step, rho_t = lambda sigma_y^2 / sigma_t^2.")
    zeta: float = param(0.3, lo=0.0, hi=1.0, help="Fraction of fresh noise re-injected per step (0 deterministic, 1 DDPM-like).")
    clip: bool = param(True, help="Clip each denoised estimate to a bounded prior's value range before the data step.")


def solve(denoiser, op, y, sigmas, x_init, *, params: Params, generator) -> Iterator[Step]:
    n = len(sigmas) - 1
    x = x_init
    y = match_batch(y, x.shape[0])
    sigma_y = max(op.noise_sigma, SIGMA_Y_FLOOR)
    card = getattr(denoiser, "card", None)
    clip = params.clip and card is not None and getattr(denoiser, "bounded", False)
    bounds = tuple(float(v) for v in card.value_range) if clip else None
    for i in range(n):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        x0 = denoiser(x, sigma)                                              # 3: prior (denoising) step
        if bounds is not None:
            x0 = x0.clamp(*bounds)
        rho = params.lam * sigma_y**2 / sigma**2                             # Eq. 13
        x0_hat = op.solve_regularized(y, x0, rho)                            # 4: data step, Eq. 12
        if sigma_next == 0:
            x = x0_hat
        else:
            eps = (x - x0_hat) / sigma                                       # 5: effective noise
            eps_t = generator.randn_like(x)                                  # 6
            x = x0_hat + sigma_next * ((1 - params.zeta) ** 0.5 * eps + params.zeta**0.5 * eps_t)  # 7
        yield Step(i, n, sigma_next, x, x0_hat, i + 1)


INFO = SolverInfo(
    name="diffpir", solve=solve, Params=Params,
    title="DiffPIR (diffusion plug-and-play)",
    reference="Zhu, Zhang, Liang, Cao, Wen, Timofte & Van Gool, CVPRW 2023",
    needs=frozenset(), spread=SpreadRule(POSTERIOR, noise=("zeta",)), uses_prior=True,
)
