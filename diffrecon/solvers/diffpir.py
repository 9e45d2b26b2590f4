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

Posterior mode, stated departures (the registry entry's ``posterior_mode``; the defaults stay the paper's). Line 4 returns the *mode* of the Gaussian
``N(x; y, sigma_y^2) x N(x; x0, r_t^2)``, and line 7 re-noises it: the spread of x0 given x_t and
y is dropped at every step, so the samples are under-dispersed (x0.45 along every posterior
direction of 16x16 4-view CT with lambda = 1, zeta = 1). ``perturb`` draws line 4's solution from
that Gaussian instead, by perturb-and-MAP (Papandreou & Yuille, ICCV 2011): the same solve with
``y + sigma_y eps_1`` and ``x0 + r_t eps_2``. With ``zeta = 1`` the sampler is then decoupled
annealing with an exact Gaussian data step (the structure of DAPS, Zhang et al., CVPR 2025), and
lambda = 1 is the Bayesian weight ``rho_t = sigma_y^2 / r_t^2``. ``r_t^2`` is the variance of x0
given x_t, not the paper's ``sigma_t^2``, which over-disperses directions the prior pins down: in
posterior mode ``tr Cov(x0 | x_t) / n`` read off the denoiser at the current states (Tweedie's second
moment, Hutchinson's estimator, one more evaluation per step; ``r_variance="local"``); with
``"prior"`` the posterior variance ``sigma_t^2 v / (v + sigma_t^2)`` of a Gaussian prior with the
prior's per-pixel variance ``v``, which is too large for a non-Gaussian prior (the MMSE is below the
LMMSE): x1.14 along the least-measured directions of 8x8 inpainting with the mixture prior at 200
steps, against 0.96 with ``"local"`` (docs/validity/report.md).
The paper's algorithm: ``lam=7, zeta=0.3, perturb=False, r_variance="paper"`` (its choice for
deblurring with Gaussian noise; lambda = 7 on the exact Gaussian prior kept x4.8 too much
variance on observed pixels). In posterior mode every sample is a posterior draw up to the
Gaussian approximation of ``p(x0 | x_t)``; with ``zeta = 0`` and ``perturb=False`` it is
deterministic given the start.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from ._common import SolverInfo, Step, floored_noise_sigma, local_posterior_variance, param, prior_data_variance
from ._guidance import match_batch, measured_noise
from .labels import POSTERIOR, SpreadRule


@dataclass(frozen=True)
class Params:
    lam: float = param(7.0, lo=1e-3, hi=1e4, help="lambda: prior weight in the data step, rho_t = lambda sigma_y^2 / r_t^2 (1: Bayesian; paper: 7).")
    zeta: float = param(0.3, lo=0.0, hi=1.0, help="Fraction of fresh noise re-injected per step (1: decoupled, posterior; paper: 0.3).")
    clip: bool = param(True, help="Clip each denoised estimate to a bounded prior's value range before the data step.")
    r_variance: str = param("paper", choices=("local", "prior", "paper"),
                            help="The prior step's variance r_t^2 in rho_t = lambda sigma_y^2 / r_t^2: tr Cov(x0 | x_t) / n "
                                 "read off the denoiser at the current states (local, one more evaluation per step), "
                                 "sigma_t^2 v / (v + sigma_t^2) with the prior's variance v, or sigma_t^2 (paper).")
    perturb: bool = param(False, help="Draw the data step's solution from its Gaussian (perturb-and-MAP) instead of "
                                     "taking its mode: posterior sampling; off: the paper's step.")


def solve(denoiser, op, y, sigmas, x_init, *, params: Params, generator) -> Iterator[Step]:
    n = len(sigmas) - 1
    x = x_init
    y = match_batch(y, x.shape[0])
    sigma_y = floored_noise_sigma(op)
    card = getattr(denoiser, "card", None)
    clip = params.clip and card is not None and getattr(denoiser, "bounded", False)
    bounds = tuple(float(v) for v in card.value_range) if clip else None
    data_var = prior_data_variance(denoiser) if params.r_variance == "prior" else None
    local = params.r_variance == "local"
    nfe = 0
    for i in range(n):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        x0 = denoiser(x, sigma)                                              # 3: prior (denoising) step
        if bounds is not None:
            x0 = x0.clamp(*bounds)
        nfe += 1
        if local:
            r2 = local_posterior_variance(denoiser, x, x0, sigma, generator)
            nfe += 1
        else:
            r2 = sigma**2 if data_var is None else sigma**2 * data_var / (data_var + sigma**2)
        rho = params.lam * sigma_y**2 / r2                                   # Eq. 13 (paper: r2 = sigma^2)
        if params.perturb:  # a draw from N(x; y, sigma_y^2) N(x; x0, sigma_y^2 / rho): perturb both, then solve
            y_p = y + sigma_y * measured_noise(op, y, generator)
            x0_p = x0 + (sigma_y / rho**0.5) * generator.randn_like(x0)
            x0_hat = op.solve_regularized(y_p, x0_p, rho)
        else:
            x0_hat = op.solve_regularized(y, x0, rho)                        # 4: data step, Eq. 12
        if sigma_next == 0:
            x = x0_hat
        else:
            eps = (x - x0_hat) / sigma                                       # 5: effective noise
            eps_t = generator.randn_like(x)                                  # 6
            x = x0_hat + sigma_next * ((1 - params.zeta) ** 0.5 * eps + params.zeta**0.5 * eps_t)  # 7
        yield Step(i, n, sigma_next, x, x0_hat, nfe)


INFO = SolverInfo(
    name="diffpir", solve=solve, Params=Params,
    title="DiffPIR (diffusion plug-and-play)",
    reference="Zhu, Zhang, Liang, Cao, Wen, Timofte & Van Gool, CVPRW 2023",
    needs=frozenset(), spread=SpreadRule(POSTERIOR, noise=("zeta", "perturb")), uses_prior=True,
    posterior_mode=(("lam", 1.0), ("zeta", 1.0), ("perturb", True), ("r_variance", "local")),
    nfe_per_step=lambda p: 2 if p.r_variance == "local" else 1,
)
