"""Small pieces of maths that several of the solvers in this package share.

Kept apart from ``_common.py`` (the lead's contract) so the algorithms stay one screen each.
"""
from __future__ import annotations

import torch

from ..linalg import batch_dot

Tensor = torch.Tensor


def match_batch(y: Tensor, batch: int) -> Tensor:
    """``y`` with one measurement per sample: a batch of 1 is shared by all samples."""
    if y.shape[0] == batch:
        return y
    if y.shape[0] == 1:
        return y.expand(batch, *y.shape[1:])
    raise ValueError(f"measurement batch {y.shape[0]} matches neither 1 nor the {batch} samples")


def measured_residual(op, x0: Tensor, y: Tensor) -> Tensor:
    """``y - A x0`` restricted to the entries that were measured (the rest carry no data)."""
    r = y - op.A(x0)
    m = op.measured()
    return r if m is None else r * m.to(r.real.dtype)


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
