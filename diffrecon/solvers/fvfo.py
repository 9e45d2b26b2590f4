"""Forward-value first-order sampler (F-DPMSolver): Jiao, Li, Cai & Li, "Are first-order diffusion
samplers really slower? A fast forward-value approach", arXiv:2512.24927 (2025).

The probability-flow ODE in data-prediction form, ``dx/dsigma = (x - D(x, sigma)) / sigma``, has
over one interval the exact solution

    x(sigma') = r x(sigma) + (1 - r) <D>,   r = sigma' / sigma,

with ``<D>`` a weighted mean of the denoiser along the path. DDIM takes ``<D> = D(x, sigma)``, the
value at the *start* of the interval (a backward value). This sampler takes the *forward value*
``D(x(sigma'), sigma')`` at its end, whose leading error has the opposite sign to DDIM's, and makes
it explicit with a cheap one-step look-ahead: the point ``x(sigma')`` is predicted by a DDIM step
with the previous evaluation (no network call), and the network is evaluated there:

    x~  = r x_i + (1 - r) D_{i}                 look-ahead predictor (DDIM step, free)
    D_{i+1} = D(x~, sigma_{i+1})                the one evaluation of the step (forward value)
    x_{i+1} = r x_i + (1 - r) D_{i+1}           first-order update with the forward value

(our reading of the algorithm from the paper's abstract: one evaluation per step, first order,
evaluations placed at the end of each interval). ``D_0 = D(x_0, sigma_0)`` costs one evaluation
before the first step; the last step, to sigma = 0 where ``D(x, 0) = x``, is free, so N steps
cost N evaluations, as DDIM's.

Guidance (``guidance``, :mod:`._fast`): each ``D`` is replaced by its guided estimate (proximal
data step, range-null-space projection), or the DPS gradient at the look-ahead point shifts the
update (and the last state, which is the last look-ahead's estimate). Deterministic given the starting noise: its spread over seeds is a seed spread.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from ._common import SolverInfo, Step
from ._fast import GuidanceParams, guided_x0, uses_data
from ._guidance import match_batch
from .labels import SEED, SpreadRule


@dataclass(frozen=True)
class Params(GuidanceParams):
    pass


def solve(denoiser, op, y, sigmas, x_init, *, params: Params, generator) -> Iterator[Step]:
    n = len(sigmas) - 1
    x = x_init
    y = match_batch(y, x.shape[0])
    level = [float(s) for s in sigmas]
    d, shift = guided_x0(params, denoiser, op, x, y, level[0], level[1])      # D_0
    nfe = 1
    for i in range(n):
        sigma, sigma_next = level[i], level[i + 1]
        if sigma_next == 0:
            x = d if shift is None else d + shift                              # D(x, 0) = x: the look-ahead itself
        else:
            r = sigma_next / sigma
            x_look = r * x + (1 - r) * d                                       # look-ahead predictor (free)
            d, shift = guided_x0(params, denoiser, op, x_look, y, sigma_next, level[i + 2])  # forward value
            nfe += 1
            x = r * x + (1 - r) * d                                            # first-order update
            if shift is not None:
                x = x + shift
        x = x.detach()
        yield Step(i, n, sigma_next, x, d.detach(), nfe)


INFO = SolverInfo(
    name="fvfo", solve=solve, Params=Params,
    title="Forward-value first-order sampler (fast, deterministic)",
    reference="Jiao, Li, Cai & Li, arXiv:2512.24927, 2025",
    needs=frozenset({"grad"}), uses_prior=True,
    spread=SpreadRule(SEED, data=uses_data,
                      why="The forward-value sampler is deterministic given its starting noise: the spread over "
                          "samples is a seed spread, not a posterior standard deviation."),
)
