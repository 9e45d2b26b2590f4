"""Reference posterior sampler: split Gibbs sampling with noise splitting (slow, exact).

For ``y = A x + n``, ``n ~ N(0, sigma_y^2 I)``, write the noise as two independent parts
(Vono, Dobigeon & Chainais, IEEE TSP 67, 2019, Sec. III; the noise-splitting form of Coeurdoux,
Dobigeon & Chainais, IEEE TIP 33, 2024, Sec. III-B):

    z = x + rho e,   y = A z + e',   e ~ N(0, I),   e' ~ N(0, sigma_y^2 I - rho^2 A A^T),

which needs ``rho < sigma_y / ||A||``. ``A e rho + e'`` is exactly ``N(0, sigma_y^2 I)``, so the
x-marginal of ``p(x, z | y)`` *is* the posterior (no approximation at any rho). Gibbs sampling
alternates

    z-step  p(z | x, y) = N(x + (rho^2 / sigma_y^2) A^T (y - A x),  rho^2 (I - (rho^2 / sigma_y^2) A^T A)),
    x-step  p(x | z)    = the prior's posterior given the noisy image z at noise level rho,

the z-step in closed form (its noise from the SVD where the operator has one, else a Chebyshev
polynomial in ``A^T A``: any linear operator, complex data included) and the x-step by the reverse
diffusion from ``sigma = rho`` started at ``z``. The reverse diffusion is DDPM's ancestral step with
the variance it drops at finite steps put back: the exact transition of a Gaussian prior
``p(x_s' | x_s)`` has covariance ``(s^2 - s'^2) (r^2 I + (1 - r^2) J)`` (``r = s'/s``, ``J`` the
denoiser's Jacobian, ``s^2 J = Cov(x0 | x_s)``, Tweedie's second moment), the ancestral step only
``(s^2 - s'^2) r^2 I``. Here the step's noise is ``s sqrt(1 - r^2) (r I + (1 - r) J) xi`` with
``J xi`` from one more denoiser evaluation (a finite difference along ``xi``): exact where ``J`` is
0 or I and at most a few per cent short in between at 20 steps, against 30-50 % short for the plain
ancestral step (:mod:`diffrecon.validate` checks the x-step against the exact ``p(x | z)``).

The step budget is the number of x-step steps in all: ``ceil(steps / inner_steps)`` Gibbs
iterations. The first ``anneal_fraction`` of them are burn-in with the splitting level lowered
geometrically from ``anneal_from`` to rho (the likelihood tempered to ``sigma_y = rho ||A|| / f`` so
the split stays valid): the chains reach the posterior's bulk in a few iterations instead of random
walking there in steps of rho. Each batch element is one chain and its last state the sample;
split-R-hat and the effective sample size of the post-burn-in chains (:mod:`.diagnostics`, over a
few fixed linear summaries of the image) come with the last Step. Mixing takes about
``2 lambda / rho^2`` iterations along a direction of posterior variance ``lambda``: thousands of
steps, which is why this is the slow reference and not a working solver.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from ..errors import InputError
from ..linalg import batch_dot, chebyshev_apply, chebyshev_coefficients
from ..operators.base import measured_residual
from ._common import SolverInfo, Step, param, variance_corrected_step
from ._guidance import match_batch
from .diagnostics import effective_sample_size, split_rhat

#: smallest level of the x-step's geometric ladder, as a fraction of rho (then one step to 0).
LADDER_END = 1e-3
#: linear summaries recorded per Gibbs iteration for the diagnostics: the mean and fixed directions.
SUMMARIES = 4


@dataclass(frozen=True)
class Params:
    rho_fraction: float = param(0.9, lo=0.05, hi=0.99,
                                help="Splitting level rho as a fraction of its bound sigma_y / ||A||.")
    inner_steps: int = param(20, lo=1, hi=1000, help="Reverse-diffusion steps of each x-step (rho down to 0).")
    anneal_fraction: float = param(0.3, lo=0.0, hi=0.9,
                                   help="Share of the Gibbs iterations spent as burn-in lowering rho.")
    anneal_from: float = param(1.0, lo=0.0, hi=100.0,
                               help="Splitting level where burn-in starts, in the prior's units.")
    chebyshev_degree: int = param(24, lo=2, hi=200,
                                  help="Polynomial degree of the z-step noise for operators without an SVD.")


def reverse_diffusion(denoiser, z, level: float, steps: int, generator):
    """The x-step: a draw from ``p(x | z)``, ``z = x + level e``, by ``steps`` variance-corrected
    ancestral steps down a geometric ladder from ``level`` to ``LADDER_END level``, then to 0.
    Yields ``(x, x0_hat, next level)`` per step; the last ``x`` is the draw."""
    ladder = [level * LADDER_END ** (k / max(steps - 1, 1)) for k in range(steps)] + [0.0]
    x = z
    for k in range(steps):
        x0_hat = denoiser(x, ladder[k])
        x = variance_corrected_step(denoiser, x, x0_hat, ladder[k], ladder[k + 1], generator)
        yield x, x0_hat, ladder[k + 1]


def _z_noise_factory(op, f2: float, degree: int, generator):
    """A function ``c -> sqrt(I - c A^T A) xi`` (fresh ``xi`` per call) where ``c ||A||^2 = f2 < 1``."""
    if op.has_svd:
        s = op.singulars()
        n = int(np.prod(op.image_shape))

        def svd_noise(c: float) -> torch.Tensor:
            coeff = generator.randn((n,), torch.float32).to(s.device)
            coeff[:, : s.numel()] *= (1 - c * s * s).clamp_min(0).sqrt()
            return op.V(coeff).to(op.image_dtype)
        return svd_noise
    # Spectrum of c A^T A lies in [0, f2]; interpolate sqrt(1 - u) on [0, hi] with hi halfway to
    # the branch point u = 1, so the series converges geometrically and an underestimated ||A||
    # still stays inside the interval.
    hi = f2 + 0.5 * (1 - f2)
    coeffs = chebyshev_coefficients(lambda u: math.sqrt(max(1 - u, 0.0)), 0.0, hi, degree)

    def poly_noise(c: float) -> torch.Tensor:
        xi = generator.randn(op.image_shape, op.image_dtype).to(op.device)
        return chebyshev_apply(lambda v: c * op.A_normal(v), xi, coeffs, 0.0, hi)
    return poly_noise


def _plan(n: int, inner: int) -> list[int]:
    """Steps of each Gibbs iteration: ``n`` in all, as even as possible, at most about ``inner`` each."""
    iterations = max(1, math.ceil(n / inner))
    base, extra = divmod(n, iterations)
    return [base + (1 if j < extra else 0) for j in range(iterations)]


def solve(denoiser, op, y, sigmas, x_init, *, params: Params, generator) -> Iterator[Step]:
    n = len(sigmas) - 1
    sigma_y = float(op.noise_sigma)
    if sigma_y <= 0:
        raise InputError("The reference sampler needs a noise level above 0 (it splits the measurement noise); "
                         "set the measurement's noise_sigma.")
    y = match_batch(y, x_init.shape[0])
    norm = float(op.norm())
    f = params.rho_fraction
    rho = f * sigma_y / norm
    rho_hi = max(min(params.anneal_from, float(sigmas[0])), rho)
    z_noise = _z_noise_factory(op, f * f, params.chebyshev_degree, generator)
    plan = _plan(n, params.inner_steps)
    burn = int(params.anneal_fraction * len(plan))
    g = torch.Generator().manual_seed(20250)  # fixed summary directions, identical for every batch
    dirs = torch.randn(SUMMARIES - 1, *op.image_shape, generator=g)
    dirs = (dirs / dirs.reshape(SUMMARIES - 1, -1).norm(dim=1).reshape(-1, 1, 1, 1)).to(x_init.device)
    x = torch.zeros_like(x_init)
    trace: list[torch.Tensor] = []
    i = 0
    for j, m in enumerate(plan):
        level = rho_hi * (rho / rho_hi) ** (j / burn) if j < burn else rho
        s_y = max(sigma_y, level * norm / f)   # tempered during burn-in; sigma_y afterwards
        c = level**2 / s_y**2
        # z-step: closed-form Gaussian p(z | x, y).
        z = x + c * op.A_adjoint(measured_residual(op, x, y)) + level * z_noise(c)
        # x-step: reverse diffusion from level to 0 started at z, variance-corrected ancestral steps.
        for k, (x, x0_hat, s_next) in enumerate(reverse_diffusion(denoiser, z, level, m, generator)):
            i += 1
            info = None
            if j >= burn:
                if k == m - 1:
                    flat = x.real if x.is_complex() else x
                    summary = [flat.reshape(flat.shape[0], -1).mean(dim=1)]
                    summary += [batch_dot(flat, d.expand_as(flat)) for d in dirs]
                    trace.append(torch.stack(summary, dim=1))
                if i == n:
                    t = torch.stack(trace).cpu().double().numpy()
                    info = {"trace": t, "split_rhat": split_rhat(t), "ess": effective_sample_size(t)}
            yield Step(i - 1, n, s_next, x, x0_hat, 2 * i, info)


INFO = SolverInfo(
    name="reference", solve=solve, Params=Params,
    title="Reference sampler (split Gibbs, exact; slow: use thousands of steps)",
    reference="Vono, Dobigeon & Chainais, IEEE TSP 2019; Coeurdoux, Dobigeon & Chainais, IEEE TIP 2024",
    needs=frozenset(), posterior=True, uses_prior=True, nfe_per_step=2,
)
