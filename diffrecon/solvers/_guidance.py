"""Small pieces of maths that several of the solvers in this package share.

Kept apart from ``_common.py`` (the lead's contract) so the algorithms stay one screen each.
"""
from __future__ import annotations

import torch

from ..linalg import batch_dot, pinv_kept
from ..operators.base import measured_residual
from ._common import param

Tensor = torch.Tensor


def match_batch(y: Tensor, batch: int) -> Tensor:
    """``y`` with one measurement per sample: a batch of 1 is shared by all samples."""
    if y.shape[0] == batch:
        return y
    if y.shape[0] == 1:
        return y.expand(batch, *y.shape[1:])
    raise ValueError(f"measurement batch {y.shape[0]} matches neither 1 nor the {batch} samples")


def measured_noise(op, y: Tensor, generator) -> Tensor:
    """Standard normal noise on the measured entries of ``y`` (zero elsewhere), from each sample's
    own stream: a fresh draw of the measurement noise over ``noise_sigma``."""
    noise = generator.randn_like(y)
    mask = op.measured()
    return noise if mask is None else noise * mask.to(noise.real.dtype)


def smooth_norm(r: Tensor, eps: float = 1e-20) -> Tensor:
    """Per-sample ``||r||`` whose gradient stays finite at ``r = 0``."""
    return (batch_dot(r, r) + eps).sqrt()


def vp_to_ve_gain(sigma_from: float, sigma_to: float) -> float:
    """Factor turning a VP step (gradient w.r.t. ``x_vp``) into the VE sigma form.

    With ``x_ve = x_vp / sqrt(abar)`` and ``1/abar = 1 + sigma^2``, a gradient w.r.t. ``x_vp`` at
    level ``sigma_from`` applied at level ``sigma_to`` is ``sqrt((1+s_from^2)(1+s_to^2))`` times
    the same step on the VE gradient (about ``1 + sigma^2`` when the two levels are close).
    """
    return ((1.0 + sigma_from**2) * (1.0 + sigma_to**2)) ** 0.5


def zeros_like_batch(op, y: Tensor, batch: int) -> Tensor:
    """The starting image of the classical baselines: zeros, one per sample, on ``y``'s device."""
    return torch.zeros(batch, *op.image_shape, dtype=op.image_dtype, device=y.device)


def tweedie_with_residual_grad(denoiser, op, x: Tensor, y: Tensor, sigma: float) -> tuple[Tensor, Tensor]:
    """``(x0_hat, grad_x ||y - A x0_hat||)`` per sample, backpropagated through the network.

    The gradient of DPS (Chung et al., ICLR 2023, Eq. 16); samples are independent, so the
    gradient of the sum over the batch is each sample's own gradient.
    """
    with torch.enable_grad():
        x_i = x.detach().requires_grad_(True)
        x0_hat = denoiser(x_i, sigma)
        residual = smooth_norm(measured_residual(op, x0_hat, y))
        (grad,) = torch.autograd.grad(residual.sum(), x_i)
    return x0_hat.detach(), grad


def range_null_space(op, x0_hat: Tensor, y: Tensor, lam: float = 1.0) -> Tensor:
    """``x0_hat - lam A^+ (A x0_hat - y)``: DDNM's range-null-space correction (Wang et al.,
    ICLR 2023, Eq. 3; ``lam < 1`` is DDNM+'s partial correction, Eq. 17)."""
    return x0_hat - lam * op.A_pinv(op.A(x0_hat) - y)


GUIDANCE = ("projection", "dps", "none")


def guidance_param():
    """The ``guidance`` setting of the accelerated samplers (a dataclass field, see :func:`guided_estimate`)."""
    return param("projection", choices=GUIDANCE,
                 help="How y enters: projection (range-null-space), dps (gradient) or none.")


def zeta_param():
    """The ``zeta`` setting of their ``dps`` guidance (a dataclass field)."""
    return param(1.0, lo=0.0, hi=100.0, help="Step size of the dps guidance (DPS paper: 1.0).")


def guided_estimate(guidance: str, denoiser, op, x: Tensor, y: Tensor, sigma: float, sigma_next: float,
                    zeta: float) -> tuple[Tensor, Tensor | None]:
    """``(x0, shift)`` for the accelerated samplers (DDIM, DPM-Solver++) with guidance.

    ``projection``: x0 is DDNM's range-null-space correction of the Tweedie estimate, no shift.
    ``dps``: x0 is the Tweedie estimate and ``shift = -zeta * gain * grad ||y - A x0_hat||`` is
    added to the next state, as DPS does after its unconditional step (gain: the VP -> VE factor).
    ``none``: the unconditional sampler.
    """
    if guidance == "dps":
        x0_hat, grad = tweedie_with_residual_grad(denoiser, op, x, y, sigma)
        return x0_hat, -(zeta * vp_to_ve_gain(sigma, sigma_next)) * grad
    x0_hat = denoiser(x, sigma)
    if guidance == "projection":
        return range_null_space(op, x0_hat, y), None
    return x0_hat, None


def spectral_measurement(op, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(s_safe, observed, y_bar)`` of ``A = U diag(s) V^T``: singular values with the (numerically)
    zero ones replaced by 1, the mask of the non-zero ones, and ``y_bar = diag(s)^+ U^T y`` (the
    spectral measurement of DDRM, Kawar et al., NeurIPS 2022, Eq. 4; DDNM+, Wang et al., ICLR
    2023, Sec. 3.3). Zero singular values are pure null space: their ``y_bar`` is 0."""
    s = op.singulars()
    observed = pinv_kept(s)  # the cut-off of every pseudo-inverse
    s_safe = torch.where(observed, s, torch.ones_like(s))
    y_bar = torch.where(observed, op.U_adjoint(y) / s_safe, torch.zeros_like(s))
    return s_safe, observed, y_bar


def guidance_uses_data(params) -> bool:
    """Whether the accelerated samplers' ``guidance`` lets ``y`` in (``none``, or ``dps`` at zeta = 0, ignore it)."""
    return params.guidance != "none" and not (params.guidance == "dps" and params.zeta == 0)
