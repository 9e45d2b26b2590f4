"""The forward model's own direct reconstruction: filtered back-projection for CT, zero-filled
inverse FFT for MRI, the pseudo-inverse elsewhere (``op.direct``).

A classical baseline: no prior, no iterations, one step (``Step.n == 1`` whatever the step
budget); every sample of the batch is the same image, so its spread is zero.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from ._common import SolverInfo, Step
from ._guidance import match_batch
from .labels import POINT, SpreadRule


@dataclass(frozen=True)
class Params:
    pass


def solve(denoiser, op, y, sigmas, x_init, *, params: Params, generator) -> Iterator[Step]:
    x = op.direct(match_batch(y, x_init.shape[0])).to(x_init.dtype)
    yield Step(0, 1, 0.0, x, x, 0)


INFO = SolverInfo(
    name="direct", solve=solve, Params=Params,
    title="Direct reconstruction (FBP / zero-filled / pseudo-inverse)",
    reference="the forward model's classical inverse",
    needs=frozenset(), spread=SpreadRule(POINT), uses_prior=False,
)
