"""The data step of the few-step samplers (fvfo, dpmpp_3m_sde, mlem): how ``y`` enters a clean estimate.

Four choices (``guidance``), the three of :func:`~._guidance.guided_estimate` plus the proximal
step of the plug-and-play solvers:

* ``proximal``: ``x0 = argmin ||y - A x||^2 + rho ||x - x0_hat||^2`` with ``rho = lam sigma_y^2 / sigma^2``
  (DiffPIR's half-quadratic data step, Zhu et al., CVPRW 2023, Eq. 12-13; sigma_y floored at 1e-3
  as there). Closed form through an SVD, conjugate gradients otherwise: every operator serves.
* ``projection``: DDNM's range-null-space correction (needs a pseudo-inverse).
* ``dps``: the Tweedie estimate, plus a DPS gradient step on the next state (backpropagation).
* ``none``: the unconditional sampler.

``clip`` (on): for a bounded prior (a network trained on data scaled into its value range,
``Denoiser.bounded``) each denoised estimate is clipped to that range before the data step, as
DiffPIR here and deepinv do (DPM-Solver++, Lu et al. 2022, Sec. 6, thresholds its data predictions
for the same reason: at few steps a network's estimate at high noise overshoots the range, and the
multistep updates amplify it). Analytic priors are unbounded and never clipped.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ._common import param
from ._guidance import guided_estimate

Tensor = torch.Tensor

GUIDANCE = ("proximal", "projection", "dps", "none")
#: DiffPIR's floor on the noise level in rho (noise-free data stays a well-posed proximal problem).
SIGMA_Y_FLOOR = 1e-3


def guidance_param(default: str = "proximal"):
    return param(default, choices=GUIDANCE,
                 help="How y enters: proximal (DiffPIR's data step), projection (range-null-space), "
                      "dps (gradient) or none.")


def lam_param():
    return param(1.0, lo=1e-3, hi=1e4, help="Prior weight of the proximal data step, rho = lam sigma_y^2 / sigma^2 "
                                           "(1: Bayesian for a Gaussian estimate of spread sigma; DiffPIR: 7).")


def zeta_param():
    return param(1.0, lo=0.0, hi=100.0, help="Step size of the dps guidance (DPS paper: 1.0).")


@dataclass(frozen=True)
class GuidanceParams:
    """The guidance settings every few-step sampler shares (its Params subclass this)."""

    guidance: str = guidance_param()
    lam: float = lam_param()
    zeta: float = zeta_param()
    clip: bool = param(True, help="Clip each denoised estimate to a bounded prior's value range (networks only).")


def clipped(denoiser, on: bool, like=None):
    """``denoiser`` with its estimates clipped to the value range of ``like`` (default: its own), where
    ``on`` and that prior is bounded."""
    like = denoiser if like is None else like
    card = getattr(like, "card", None)
    if not on or card is None or not getattr(like, "bounded", False):
        return denoiser
    lo, hi = (float(v) for v in card.value_range)
    return lambda x, sigma: denoiser(x, sigma).clamp(lo, hi)


def proximal(op, x0_hat: Tensor, y: Tensor, sigma: float, lam: float) -> Tensor:
    """DiffPIR's data step: ``argmin ||y - A x||^2 + (lam sigma_y^2 / sigma^2) ||x - x0_hat||^2``."""
    sigma_y = max(float(op.noise_sigma), SIGMA_Y_FLOOR)
    return op.solve_regularized(y, x0_hat, lam * sigma_y**2 / max(sigma, 1e-12) ** 2)


def guided_x0(params, denoiser, op, x: Tensor, y: Tensor, sigma: float, sigma_next: float) -> tuple[Tensor, Tensor | None]:
    """``(x0, shift)``: the clean estimate at ``(x, sigma)`` with ``y`` let in by ``params.guidance``, and
    the DPS shift to add to the next state (None for the other choices)."""
    denoiser = clipped(denoiser, params.clip)
    if params.guidance == "proximal":
        return proximal(op, denoiser(x, sigma), y, sigma, params.lam), None
    return guided_estimate(params.guidance, denoiser, op, x, y, sigma, sigma_next, params.zeta)


def uses_data(params) -> bool:
    """Whether ``y`` enters (``none``, or ``dps`` at zeta = 0, ignore it)."""
    return params.guidance != "none" and not (params.guidance == "dps" and params.zeta == 0)

