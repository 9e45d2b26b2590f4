"""Plug-and-play ADMM with a consistency model and noise injection (PnP-CM): Gülle, Yun, Alçalar
& Akçakaya, "Consistency models as plug-and-play priors for inverse problems", 2025
(arXiv:2509.22736); the noise levels of the consistency model's multistep sampling (Song et al.,
ICML 2023, Algorithm 1); CM4IR (Garber & Tirer, CVPR 2025) guides the same few steps.

One network evaluation per step, ``K = len(sigmas) - 1`` steps, scaled dual ``u``:

    v_k     = f(x_{k-1} + u_{k-1} + s_k xi_k, s_k)          (prior step: the consistency model)
    x_k     = argmin ||y - A x||^2 / (2 sigma_y^2) + ||x - (v_k - u_{k-1})||^2 / (2 r_k^2)   (data step)
    u_k     = u_{k-1} + x_k - v_k                            (dual update)

The first step's input is ``x_init`` at ``s_1 = sigmas[0]`` (pure noise, or a warm start's noised
classical reconstruction); ``s_2 .. s_K`` fall geometrically from ``sigma_mid`` to ``sigma_end``
(one level, ``sigma_mid``, at K = 2). ``xi_k`` is fresh noise of each sample's own stream
(``inject`` scales it; 0: none). The consistency model maps its input to an image on the data
manifold at every step, and the data step pulls it to the measurement, so every evaluation is
guided by ``y``. ``r_k^2 = s_k^2 v / (v + s_k^2)`` is the error variance of a clean estimate at
level ``s_k`` for a prior of per-pixel variance ``v`` (read off the prior; a distilled model's
card stores that of its images), and ``rho_k = lam sigma_y^2 / r_k^2`` (lam = 1: the Bayesian
weight); sigma_y is floored at 1e-3 as in DiffPIR. The data step is the operator's closed form
or conjugate gradients (``op.solve_regularized``). The output is the last data step's ``x``.

Stated departures from PnP-CM: no momentum, and the prior step's weight comes from the prior's
variance instead of a tuned penalty schedule. Any denoiser runs here; with a Tweedie denoiser
(a prior that is not a consistency model) the prior step returns posterior means and the result
is blurrier: give the distilled model (``diffrecon.training.consistency``).

What the spread is, measured with the exact consistency function of a stationary Gaussian prior
(16x16, 64 samples, the defaults; tests/test_consistency.py): the trace of the sample covariance
over that of the exact posterior is 1.5 / 1.3 / 1.1 at 2 / 4 / 8 evaluations for inpainting (half
the pixels seen, noise 0.05) and 0.2 / 0.4 / 0.5 for denoising (noise 0.2); without injected
noise (inject = 0) it falls to 0.4 / 0.3 / 0.1 and 0.05 / 0.03 / 0.001. The solver is labelled a
posterior sampler, as DDRM and DDNM+ are with similar ratios; how calibrated its std is for a
given problem is what ``diffrecon calibrate`` and the coverage of the benchmarks measure.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from ._common import SolverInfo, Step, floored_noise_sigma, param, prior_data_variance
from ._guidance import match_batch
from .labels import POSTERIOR, SpreadRule

@dataclass(frozen=True)
class Params:
    lam: float = param(1.0, lo=1e-3, hi=1e4, help="Prior weight in the data step, rho_k = lam sigma_y^2 / r_k^2 "
                                                   "(1: Bayesian).")
    sigma_mid: float = param(0.8, lo=1e-4, hi=1e3, help="Noise level of the second evaluation, in the prior's units.")
    sigma_end: float = param(0.05, lo=1e-4, hi=1e3, help="Noise level of the last evaluation, in the prior's units.")
    inject: float = param(1.0, lo=0.0, hi=2.0, help="Scale of the fresh noise added before each evaluation after "
                                                     "the first (0: none, deterministic given the start).")
    clip: bool = param(True, help="Clip each estimate of a bounded prior to its value range before the data step.")


def injection_levels(first: float, k: int, sigma_mid: float, sigma_end: float) -> list[float]:
    """``s_1 .. s_k``: ``first``, then ``k - 1`` levels falling geometrically from ``sigma_mid`` to
    ``sigma_end``, none above ``first``."""
    rest = [sigma_mid * (sigma_end / sigma_mid) ** (j / max(k - 2, 1)) for j in range(k - 1)]
    return [first] + [min(s, first) for s in rest]


def solve(denoiser, op, y, sigmas, x_init, *, params: Params, generator) -> Iterator[Step]:
    n = len(sigmas) - 1
    y = match_batch(y, x_init.shape[0])
    sigma_y2 = floored_noise_sigma(op) ** 2
    card = getattr(denoiser, "card", None)
    clip = params.clip and card is not None and getattr(denoiser, "bounded", False)
    bounds = tuple(float(v) for v in card.value_range) if clip else None
    v_prior = prior_data_variance(denoiser)
    levels = injection_levels(float(sigmas[0]), n, params.sigma_mid, params.sigma_end)
    x, u = x_init, None
    for k, s in enumerate(levels):
        if u is None:
            x_in = x                                                         # the start: x_init at s_1
        else:
            x_in = x + u + (params.inject * s) * generator.randn_like(x)    # noise injection
        v = denoiser(x_in, s)                                                # prior step
        if bounds is not None:
            v = v.clamp(*bounds)
        r2 = s * s * v_prior / (v_prior + s * s)
        u = v.new_zeros(()) if u is None else u
        x = op.solve_regularized(y, v - u, params.lam * sigma_y2 / r2)      # data step
        u = u + x - v                                                        # dual update
        sigma_next = levels[k + 1] if k + 1 < n else 0.0
        yield Step(k, n, sigma_next, x, v, k + 1)


INFO = SolverInfo(
    name="cm", solve=solve, Params=Params,
    title="Consistency model PnP-ADMM (2-8 evaluations, noise injection)",
    reference="Gülle, Yun, Alçalar & Akçakaya 2025 (PnP-CM); Song, Dhariwal, Chen & Sutskever, ICML 2023",
    needs=frozenset(), spread=SpreadRule(POSTERIOR, noise=("inject",)), uses_prior=True,
)
