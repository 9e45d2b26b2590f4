"""Multilevel Euler-Maruyama (ML-EM): "Polynomial speedup in diffusion models with the multilevel
Euler-Maruyama method" (the drift of an SDE from approximators ``f^1, ..., f^k`` of increasing
accuracy and cost; many evaluations of the cheap ones, few of the most accurate).

The reverse diffusion SDE's drift is linear in the denoiser, so each step replaces ``D`` by the
randomised telescoping sum (the paper's estimator)

    D~(x, sigma) = D^1(x) + sum_{l >= 2} (B_l / p_l) (D^l(x) - D^{l-1}(x)),   B_l ~ Bernoulli(p_l),

unbiased for the finest ``D^k`` whatever the ``p_l``, at the expected cost
``c_1 + sum_l p_l (c_l + c_{l-1})`` (an evaluation of a level already made in the step is reused).
The step is Euler-Maruyama in exponential-integrator form, i.e. DDPM's ancestral step (Song, Meng &
Ermon, ICLR 2021, Eq. 16 with eta = 1) with ``D~``:

    x' = D~ + r^2 (x - D~) + sigma' sqrt(1 - r^2) eps,    r = sigma' / sigma.

The probabilities are ``p_l = rate^((l - 1) / (k - 1))`` (``rate`` for the finest correction,
geometrically between for the others); the draws are shared by the samples of a run (one stream
from the run's seed), so every sample evaluates the same levels and a sample's result does not
depend on its batch.

Levels (``levels``): a :class:`Multilevel` denoiser carries its own; ``resolution`` builds them
from one network that runs at any size (its card's ``extra.any_size``): the prior on ``x``
average-pooled by 4 and by 2 (the noise std shrinks by the same factor), its estimate upsampled,
costing 1/16 and 1/4; ``auto`` takes a Multilevel's levels, else ``resolution`` where the network
allows, else the one level (plain Euler-Maruyama, DDPM's sampler). :func:`family_levels` builds a
Multilevel from the bundled procedural family (1/16, 1/4, 1 of the compute).
``Step.nfe`` counts network evaluations (each level's call as one, as the engine's counter does);
``Step.info["cost"]`` has their cost in full evaluations (the engine's ``equivalent_nfe_per_sample``).

Guidance (``guidance``, :mod:`._fast`) applies to ``D~``. A stochastic sampler whose samples,
with the data let in, are designed as posterior samples (as DDPM's guided relatives are).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..priors.base import Denoiser
from ._common import SolverInfo, Step, ancestral_ddim_step, param
from ._fast import GuidanceParams, clipped, guided_x0, uses_data
from ._guidance import match_batch
from .labels import POSTERIOR, SpreadRule

Tensor = torch.Tensor


class Multilevel(Denoiser):
    """Denoisers of increasing cost and accuracy; ``levels[-1]`` is the prior itself, and calling
    this object evaluates it, so other solvers see the finest level only. ``costs`` are relative
    to the finest (which costs 1)."""

    def __init__(self, levels: Sequence[Callable], costs: Sequence[float]):
        super().__init__()
        if len(levels) != len(costs) or not levels:
            raise ValueError("a Multilevel needs one cost per level")
        self.level_list = list(levels)
        self.networks = torch.nn.ModuleList([m for m in levels if isinstance(m, torch.nn.Module)])
        self.costs = [float(c) for c in costs]
        finest = levels[-1]
        self.card = finest.card
        self.bounded = getattr(finest, "bounded", True)

    @property
    def levels(self) -> list[tuple[Callable, float]]:
        return list(zip(self.level_list, self.costs))

    def discrete_sigmas(self):
        return self.level_list[-1].discrete_sigmas()

    def forward(self, x: Tensor, sigma) -> Tensor:
        return self.level_list[-1](x, sigma)


class AtResolution:
    """``denoiser`` on ``x`` average-pooled by ``factor`` (noise std ``sigma / factor``), its estimate
    upsampled bilinearly: a cheap, blurred approximation that is good at high noise."""

    def __init__(self, denoiser, factor: int):
        self.denoiser, self.factor = denoiser, int(factor)

    def __call__(self, x: Tensor, sigma) -> Tensor:
        small = F.avg_pool2d(x, self.factor)
        est = self.denoiser(small, sigma / self.factor)
        return F.interpolate(est, size=x.shape[-2:], mode="bilinear", align_corners=False)


def resolution_levels(denoiser, factors: Sequence[int] = (4, 2)) -> list[tuple[Callable, float]] | None:
    """Levels at reduced resolution of one network that runs at any size, or None where it cannot."""
    card = getattr(denoiser, "card", None)
    extra = getattr(card, "extra", None) or {}
    if not extra.get("any_size"):
        return None
    h, w = card.resolution
    usable = [f for f in factors if h % (8 * f) == 0 and w % (8 * f) == 0]
    if not usable:
        return None
    return [(AtResolution(denoiser, f), 1.0 / f**2) for f in sorted(usable, reverse=True)] + [(denoiser, 1.0)]


def family_levels(finest: str = "procedural", device="cpu") -> Multilevel:
    """The bundled family up to ``finest``, cheapest first, costs from the cards' ``relative_compute``."""
    from ..priors import load_prior

    top = load_prior(finest, device=device)
    members = (top.card.extra.get("family") or {}).get("members") or {finest: {"relative_compute": 1.0}}
    own = members[finest]["relative_compute"]
    names = sorted((n for n, m in members.items() if m["relative_compute"] < own), key=lambda n: members[n]["relative_compute"])
    levels = [load_prior(n, device=device) for n in names] + [top]
    return Multilevel(levels, [members[n]["relative_compute"] / own for n in names] + [1.0])


@dataclass(frozen=True)
class Params(GuidanceParams):
    levels: str = param("auto", choices=("auto", "resolution", "none"),
                        help="Cheap levels: auto (the prior's own, else reduced resolution where the network "
                             "runs at any size), resolution, or none (plain Euler-Maruyama).")
    rate: float = param(0.25, lo=0.01, hi=1.0, help="Probability of the finest correction per step (1: every step).")


def _levels(denoiser, choice: str) -> list[tuple[Callable, float]]:
    own = getattr(denoiser, "levels", None)
    if choice == "auto" and own:
        return list(own)
    if choice in ("auto", "resolution"):
        built = resolution_levels(denoiser)
        if built:
            return built
    return [(denoiser, 1.0)]


def expected_cost(costs: Sequence[float], rate: float) -> float:
    """Expected cost per step, in full evaluations, of levels costing ``costs`` (cheapest first) at ``rate``:
    level 1 always, level ``j`` when its own correction or the next level's is drawn."""
    k = len(costs)
    probs = [rate ** (l / (k - 1)) for l in range(1, k)] if k > 1 else []
    total = costs[0]
    for j in range(1, k):
        skip = 1 - probs[j - 1]
        if j + 1 < k:
            skip *= 1 - probs[j]
        total += costs[j] * (1 - skip)
    return total


def _drift(levels, draws: np.ndarray, probs: list[float]):
    """The step's estimator ``D~`` as a denoiser callable, its cost in full evaluations and its
    number of evaluations."""
    used = [0] + [l for l in range(1, len(levels)) if draws[l - 1] < probs[l - 1]]
    needed = sorted({0, *used, *[l - 1 for l in used if l > 0]})
    cost = sum(levels[l][1] for l in needed)

    def estimate(x: Tensor, sigma) -> Tensor:
        value = {l: levels[l][0](x, sigma) for l in needed}
        out = value[0]
        for l in used[1:]:
            out = out + (value[l] - value[l - 1]) / probs[l - 1]
        return out
    return estimate, cost, len(needed)


def solve(denoiser, op, y, sigmas, x_init, *, params: Params, generator) -> Iterator[Step]:
    n = len(sigmas) - 1
    x = x_init
    y = match_batch(y, x.shape[0])
    levels = _levels(denoiser, params.levels)
    k = len(levels)
    probs = [params.rate ** (l / (k - 1)) for l in range(1, k)]
    seed = np.random.SeedSequence([int(getattr(generator, "seed", 0)) & 0xFFFFFFFF, 0x4D4C454D])
    draws = np.random.default_rng(seed).random((n, max(k - 1, 1)))  # shared by the run's samples
    total, calls = 0.0, 0
    for i in range(n):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        estimate, cost, evaluations = _drift(levels, draws[i], probs)
        x0, shift = guided_x0(params, clipped(estimate, params.clip, like=denoiser), op, x, y, sigma, sigma_next)
        x = ancestral_ddim_step(x, x0, sigma, sigma_next, 1.0, generator)     # Euler-Maruyama (exp. integrator)
        if shift is not None:
            x = x + shift
        total, calls = total + cost, calls + evaluations
        x = x.detach()
        yield Step(i, n, sigma_next, x, x0.detach(), calls, {"cost": total})


INFO = SolverInfo(
    name="mlem", solve=solve, Params=Params,
    title="Multilevel Euler-Maruyama (cheap levels carry most steps)",
    reference="Polynomial speedup in diffusion models with the multilevel Euler-Maruyama method",
    needs=frozenset({"grad"}), uses_prior=True,
    spread=SpreadRule(POSTERIOR, data=uses_data),
)
