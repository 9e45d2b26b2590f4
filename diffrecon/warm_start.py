"""Warm start from the classical reconstruction: Come-Closer-Diffuse-Faster (Chung, Sim & Ye,
CVPR 2022).

Instead of pure noise at the prior's top level, the reverse diffusion starts from the TV
reconstruction ``x_tv`` noised to a level ``sigma_start``: ``x_init = x_tv + sigma_start n``, and
the whole step budget is spent on levels at or below ``sigma_start`` (the schedule of the run,
truncated and refined), so a run is shorter for the same quality or finer for the same time.

``sigma_start`` comes from an estimate of the error of ``x_tv`` (CCDF's contraction argument: the
added noise must swamp that error, so the prior can replace it): the RMS change of the TV
reconstruction between weights four times above and below the default,
``e = rms(x_tv(4 lam) - x_tv(lam / 4))``. Where the data pin the image down, the weight barely
matters and ``e`` is small; where they leave it open (missing views, k-space, pixels), the
regulariser decides and ``e`` is large. On the real-image set this estimate lay within 0.5-2.4x
of the true RMS error of ``x_tv`` (benchmarks/real_images.py), hence the margin: ``sigma_start =
2 e``, kept inside the prior's noise range.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Callable

import torch

from .errors import InputError

WARM_STARTS = ("none", "tv")
MARGIN = 2.0  # sigma_start = MARGIN * estimated error
SPREAD = 4.0  # the TV weights lam * SPREAD and lam / SPREAD whose difference estimates the error


@dataclass(frozen=True)
class WarmStart:
    """The start of a warm-started run, in the prior's units."""

    x0: torch.Tensor  # (1, C, H, W): the classical reconstruction
    sigma_start: float
    sigmas: torch.Tensor  # the run's schedule, starting at sigma_start
    error_estimate: float  # RMS, prior units
    seconds: float = 0.0  # the classical solves it took (a run's time prediction adds them)

    def provenance(self, scale: float) -> dict:
        """What a result file records (levels also in physical units: ``scale`` per prior unit)."""
        return {"warm_start": "tv", "warm_sigma_start": self.sigma_start,
                "warm_sigma_start_physical": self.sigma_start * scale,
                "warm_error_estimate_physical": self.error_estimate * scale}


def classical(op, y: torch.Tensor, solver: str = "tv", **params) -> torch.Tensor:
    """The classical reconstruction of ``y`` (batch 1) by ``solver`` run to its tolerance."""
    from .solvers import get_solver

    info = get_solver(solver)
    p = dataclasses.replace(info.Params(), **params)
    x = None
    with torch.no_grad():
        x_init = torch.zeros(y.shape[0], *op.image_shape, device=y.device)
        for step in info.solve(None, op, y, torch.zeros(11, dtype=torch.float64), x_init, params=p, generator=None):
            x = step.x
    return x


def estimate_error(op, y: torch.Tensor) -> tuple[torch.Tensor, float]:
    """``(x_tv, e)``: the TV reconstruction at the default weight and the estimate of its RMS error."""
    from .solvers.tv import Params

    lam = Params().lam
    x = classical(op, y, lam=lam)
    hi, lo = classical(op, y, lam=lam * SPREAD), classical(op, y, lam=lam / SPREAD)
    return x, float((hi - lo).real.square().mean().sqrt())


def truncated_schedule(make: Callable[[int], torch.Tensor], steps: int, sigma_start: float) -> torch.Tensor:
    """``steps`` levels of the schedule family ``make(n)`` at or below ``sigma_start``, then 0: the
    family is refined until enough of its levels lie below the start, and its tail is kept."""
    n = steps
    while True:
        s = make(n)
        tail = s[s <= sigma_start * (1 + 1e-9)]
        if len(tail) >= steps + 1 or n > 200_000:
            return tail[-(steps + 1):].clone()
        n = max(n + 1, int(n * (steps + 1) / max(len(tail), 1) * 1.1))


def prepare(kind: str, op, y: torch.Tensor, denoiser, make: Callable[[int], torch.Tensor], steps: int,
            sigma_start: float | None = None) -> WarmStart | None:
    """The warm start of a run (None for ``kind`` "none"). ``op`` and ``y`` are in the prior's
    units; ``make(n)`` builds the run's schedule of ``n`` steps; ``sigma_start`` overrides the
    estimate."""
    if kind == "none":
        return None
    if kind not in WARM_STARTS:
        raise InputError(f"Warm start {kind!r} is not known; valid values are {', '.join(WARM_STARTS)}.")
    t0 = time.perf_counter()
    x0, error = estimate_error(op, y[:1])
    seconds = time.perf_counter() - t0
    lo, hi = float(denoiser.sigma_min), float(denoiser.sigma_max)
    if sigma_start is None:
        sigma_start = MARGIN * error
    elif not sigma_start > 0:
        raise InputError(f"Warm-start sigma_start is {sigma_start}; it must be positive (or unset: estimated).")
    sigma_start = min(max(float(sigma_start), 2 * lo), hi)
    sigmas = truncated_schedule(make, steps, sigma_start)
    return WarmStart(x0.real.to(torch.float32) if not x0.is_complex() else x0, float(sigmas[0]), sigmas, error,
                     seconds)
