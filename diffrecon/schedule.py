"""Noise-level schedules. The step budget of every solver is ``len(sigmas) - 1``.

Schedules are 1-D float64 CPU tensors, decreasing, ending with an exact 0, so solvers read
``float(sigmas[i])`` without a device synchronisation.
"""
from __future__ import annotations

import torch

from .errors import InputError

SCHEDULES = ("karras", "vp_uniform")


def karras_sigmas(steps: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> torch.Tensor:
    """Karras et al. (EDM, NeurIPS 2022) Eq. 5: sigma_i = (a + i/(N-1) (b - a))^rho."""
    ramp = torch.linspace(0, 1, steps, dtype=torch.float64)
    a, b = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    s = (a + ramp * (b - a)) ** rho
    return torch.cat([s, s.new_zeros(1)])


def vp_uniform_sigmas(steps: int, discrete: torch.Tensor) -> torch.Tensor:
    """DDIM's uniform subsequence of a discrete training schedule (Song et al., ICLR 2021, Sec. 4.2)."""
    t = torch.linspace(len(discrete) - 1, 0, steps).round().long()
    return torch.cat([discrete.double()[t], torch.zeros(1, dtype=torch.float64)])


def make_sigmas(steps: int, denoiser, kind: str = "karras", *, rho: float = 7.0) -> torch.Tensor:
    """The schedule of ``steps`` steps for ``denoiser``'s noise range."""
    if steps < 1:
        raise InputError(f"steps must be at least 1 (got {steps}).")
    if kind == "karras":
        return karras_sigmas(steps, denoiser.sigma_min, denoiser.sigma_max, rho)
    if kind == "vp_uniform":
        discrete = denoiser.discrete_sigmas()
        if discrete is None:
            return karras_sigmas(steps, denoiser.sigma_min, denoiser.sigma_max, 1.0)
        return vp_uniform_sigmas(steps, discrete)
    raise InputError(f"Unknown schedule {kind!r}; valid schedules are {', '.join(SCHEDULES)}.")
