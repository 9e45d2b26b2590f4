"""Noise-level schedules. The step budget of every solver is ``len(sigmas) - 1``.

Schedules are 1-D float64 CPU tensors, decreasing, ending with an exact 0, so solvers read
``float(sigmas[i])`` without a device synchronisation.
"""
from __future__ import annotations

import torch

from .errors import InputError

#: ``budget``: levels searched for one prior, forward model, solver and number of steps
#: (:mod:`diffrecon.solvers.budget_schedule`); the engine builds it, :func:`make_sigmas` the others.
SCHEDULES = ("karras", "vp_uniform", "vp_quadratic", "vp_sde", "budget")

#: the linear-beta DDPM table (Ho et al., NeurIPS 2020): 1000 steps, beta 1e-4 to 0.02.
DDPM_BETAS = (1e-4, 0.02, 1000)
#: The same table as a prior card states its schedule (``PriorCard.schedule``); copy before changing.
DDPM_SCHEDULE = {"kind": "vp_linear", "beta_start": DDPM_BETAS[0], "beta_end": DDPM_BETAS[1],
                 "timesteps": DDPM_BETAS[2]}


def linear_alphas_cumprod(beta_start: float, beta_end: float, steps: int) -> torch.Tensor:
    """``abar_t = prod_{s <= t} (1 - beta_s)`` (float64) of betas linear from ``beta_start`` to
    ``beta_end`` over ``steps`` (Ho et al., NeurIPS 2020, Sec. 4)."""
    return torch.cumprod(1 - torch.linspace(beta_start, beta_end, steps, dtype=torch.float64), dim=0)


def vp_sigmas(alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """The variance-exploding noise levels ``sqrt((1 - abar) / abar)`` of a VP table (Karras et al.,
    EDM, NeurIPS 2022, Table 1)."""
    return ((1 - alphas_cumprod) / alphas_cumprod).sqrt()


def karras_sigmas(steps: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> torch.Tensor:
    """Karras et al. (EDM, NeurIPS 2022) Eq. 5: sigma_i = (a + i/(N-1) (b - a))^rho."""
    ramp = torch.linspace(0, 1, steps, dtype=torch.float64)
    a, b = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    s = (a + ramp * (b - a)) ** rho
    return torch.cat([s, s.new_zeros(1)])


def vp_uniform_sigmas(steps: int, discrete: torch.Tensor) -> torch.Tensor:
    """DDIM's uniform subsequence of a discrete training schedule (Song et al., ICLR 2021, Sec. 4.2)."""
    discrete = discrete.detach().cpu().double()  # a prior's table may live on its GPU
    t = torch.linspace(len(discrete) - 1, 0, steps).round().long()
    return torch.cat([discrete[t], torch.zeros(1, dtype=torch.float64)])


def vp_quadratic_sigmas(steps: int, discrete: torch.Tensor) -> torch.Tensor:
    """The quadratic subsequence of a discrete schedule that the DiffPIR authors use ("quad" skip,
    Zhu et al., CVPRW 2023): step ``i`` takes index ``T - 1 - floor(sqrt(i T^2 / (steps - 1)))``,
    the last one index 0. The steps are long at high noise and short near the end."""
    discrete = discrete.detach().cpu().double()  # a prior's table may live on its GPU
    n = len(discrete)
    if steps == 1:
        t = torch.tensor([n - 1])
    else:
        seq = torch.sqrt(torch.linspace(0, float(n) ** 2, steps, dtype=torch.float64)).floor().long()
        seq[-1] = seq[-1] - 1
        t = (n - 1 - seq).clamp(0, n - 1)
    return torch.cat([discrete[t], torch.zeros(1, dtype=torch.float64)])


def vp_sde_sigmas(steps: int, beta_min: float = 0.1, beta_max: float = 20.0) -> torch.Tensor:
    """Uniform time steps ``t = 1 .. 0`` of the variance-preserving SDE (Song et al., ICLR 2021)
    with linear beta: ``sigma(t) = sqrt(exp(B(t)) - 1)``, ``B(t) = beta_min t + (beta_max - beta_min) t^2 / 2``,
    for data in [-1, 1]. The last level is the exact 0 of ``t = 0``."""
    t = torch.linspace(1, 0, steps + 1, dtype=torch.float64)
    return torch.expm1(beta_min * t + 0.5 * (beta_max - beta_min) * t**2).sqrt()


def ddpm_sigmas() -> torch.Tensor:
    """Noise levels (ascending) of the linear-beta DDPM table, ``sqrt((1 - abar) / abar)``."""
    return vp_sigmas(linear_alphas_cumprod(*DDPM_BETAS))


def _half_width(denoiser) -> float:
    """Half the width of the prior's value range: the factor from levels written for data in
    [-1, 1] (the DDPM table, the VP SDE) to the prior's own units."""
    lo, hi = denoiser.card.value_range
    return (float(hi) - float(lo)) / 2


def _continuous_table(denoiser) -> torch.Tensor:
    """For a prior without a timestep table: the DDPM table (made for data in [-1, 1]) scaled to
    the prior's value range and kept inside its noise range."""
    return (ddpm_sigmas() * _half_width(denoiser)).clamp(denoiser.sigma_min, denoiser.sigma_max)


def make_sigmas(steps: int, denoiser, kind: str = "karras", *, rho: float = 7.0) -> torch.Tensor:
    """The schedule of ``steps`` steps for ``denoiser``'s noise range: ``karras`` (EDM's, rho 7),
    ``vp_uniform`` (DDIM's uniform subsequence of a discrete prior's table), ``vp_quadratic``
    (DiffPIR's quadratic subsequence) or ``vp_sde`` (uniform time of the VP SDE)."""
    if steps < 1:
        raise InputError(f"steps must be at least 1 (got {steps}).")
    if kind == "karras":
        return karras_sigmas(steps, denoiser.sigma_min, denoiser.sigma_max, rho)
    if kind == "vp_uniform":
        discrete = denoiser.discrete_sigmas()
        if discrete is None:
            # a continuous prior: DDIM's uniform subsequence of the DDPM table in the prior's units
            # (a linear ramp in sigma, used before, ends with one step from sigma_max / steps to 0
            # and kept 1-36 % of the prior's variance in unconditional sampling)
            discrete = _continuous_table(denoiser)
        return vp_uniform_sigmas(steps, discrete)
    if kind == "vp_quadratic":
        discrete = denoiser.discrete_sigmas()
        if discrete is None:
            discrete = _continuous_table(denoiser)
        return vp_quadratic_sigmas(steps, discrete)
    if kind == "vp_sde":
        s = vp_sde_sigmas(steps) * _half_width(denoiser)
        s[:-1] = s[:-1].clamp(denoiser.sigma_min, denoiser.sigma_max)
        return s
    if kind == "budget":
        raise InputError("The budget schedule is searched for a forward model and a solver, which a noise range "
                         "alone does not give; run it through the engine (schedule budget), or choose "
                         f"{', '.join(SCHEDULES[:-1])}.")
    raise InputError(f"Unknown schedule {kind!r}; valid schedules are {', '.join(SCHEDULES)}.")
