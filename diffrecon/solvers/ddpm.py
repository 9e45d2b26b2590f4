"""Unconditional ancestral sampling (DDPM): Ho, Jain & Abbeel, NeurIPS 2020.

Algorithm 2 draws ``x_{t-1}`` from the forward-process posterior ``q(x_{t-1} | x_t, x0)`` with
x0 replaced by the network's estimate (Eq. 6-7). It ignores the measurement: its samples are
draws from the prior, which is what a check of a prior (do its samples look like the data?)
needs, and the spread of the prior is the reference the posterior std is compared with.

VP -> VE translation. With ``x_ve = x_vp / sqrt(abar)`` and ``sigma^2 = (1 - abar) / abar``, Eq. 7's
mean and variance become, from level sigma to sigma',

    x' = x0_hat + (sigma'^2 / sigma^2) (x - x0_hat) + sigma' sqrt(1 - sigma'^2 / sigma^2) eps,

DDIM's ancestral step with eta = 1 (Song et al., ICLR 2021, Eq. 16), so it reuses
:func:`~diffrecon.solvers._common.ancestral_ddim_step`. The "fixed small" variance ``beta_tilde`` of
the paper is the one this form gives; the DDPM training schedule only enters through ``sigmas``.

A stated departure, on by default: Algorithm 2's step replaces x0 by its estimate, which drops the
variance of x0 given x_t from every transition; at 20 Karras steps an exact Gaussian prior's samples
keep only about 56 % of its variance (78 % at 50). ``variance_correction`` puts the dropped variance
back to first order with one more network evaluation per step
(:func:`~diffrecon.solvers._common.variance_corrected_step`); ``variance_correction=False`` is the
paper's algorithm.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from ._common import SolverInfo, Step, ancestral_ddim_step, param, variance_corrected_step
from .labels import PRIOR, SpreadRule


@dataclass(frozen=True)
class Params:
    variance_correction: bool = param(True, help="Restore the variance the ancestral step drops at finite "
                                                 "steps (one more network evaluation per step); off: the paper's step.")


def solve(denoiser, op, y, sigmas, x_init, *, params: Params, generator) -> Iterator[Step]:
    n = len(sigmas) - 1
    x = x_init
    for i in range(n):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        x0_hat = denoiser(x, sigma)                                          # 4: eps_theta as x0_hat
        if params.variance_correction:
            x = variance_corrected_step(denoiser, x, x0_hat, sigma, sigma_next, generator)
        else:
            x = ancestral_ddim_step(x, x0_hat, sigma, sigma_next, 1.0, generator)  # 3-4: Eq. 7 mean + sigma_t z
        yield Step(i, n, sigma_next, x, x0_hat, (i + 1) * (2 if params.variance_correction else 1))


INFO = SolverInfo(
    name="ddpm", solve=solve, Params=Params,
    title="DDPM (unconditional prior samples; ignores the measurement)",
    reference="Ho, Jain & Abbeel, NeurIPS 2020",
    needs=frozenset(), spread=SpreadRule(PRIOR), uses_prior=True,
    nfe_per_step=lambda p: 2 if p.variance_correction else 1,
)
