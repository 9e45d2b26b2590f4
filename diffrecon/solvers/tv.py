"""Total-variation regularised reconstruction by the primal-dual algorithm of Chambolle & Pock
(J. Math. Imaging Vis. 2011, Algorithm 1), a classical baseline.

    min_x  1/2 ||A x - y||^2 + lam TV(x)  [+ indicator(x >= 0)],   TV(x) = sum_px |grad x|_2

(isotropic TV, forward differences, Neumann boundary). With ``K = [A; grad]`` and the dual
variables ``p`` (data) and ``q`` (gradient) one iteration is

    p <- (p + s (A x_bar - y)) / (1 + s)            prox of the conjugate of 1/2||. - y||^2
    q <- q_tilde / max(1, |q_tilde| / lam),  q_tilde = q + s grad x_bar
    x_new <- P(x - t (A^T p - div q))               P: projection on x >= 0, or identity
    x_bar <- 2 x_new - x

with ``s = t = 1 / ||K||`` and ``||K||^2 <= ||A||^2 + 8`` (``||grad||^2 <= 8`` in 2-D), which
satisfies the convergence condition ``s t ||K||^2 <= 1``. One iteration per step of the budget.
The non-negativity constraint acts in the values the solver is given (the engine's range).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch

from ._common import SolverInfo, Step, param
from ._guidance import match_batch, zeros_like_batch
from .labels import POINT, SpreadRule

Tensor = torch.Tensor


@dataclass(frozen=True)
class Params:
    lam: float = param(0.02, lo=0.0, hi=1e6, help="Weight of the total variation against the data misfit.")
    nonneg: bool = param(False, help="Constrain the image to non-negative values.")


def grad(x: Tensor) -> Tensor:
    """Forward differences along H and W, zero at the far edge: ``(B, 2, C, H, W)``."""
    dh = torch.zeros_like(x)
    dw = torch.zeros_like(x)
    dh[..., :-1, :] = x[..., 1:, :] - x[..., :-1, :]
    dw[..., :, :-1] = x[..., :, 1:] - x[..., :, :-1]
    return torch.stack([dh, dw], dim=1)


def div(q: Tensor) -> Tensor:
    """Negative adjoint of :func:`grad` (``<grad x, q> = -<x, div q>``)."""
    qh, qw = q[:, 0], q[:, 1]
    out = torch.zeros_like(qh)
    out[..., :-1, :] += qh[..., :-1, :]
    out[..., 1:, :] -= qh[..., :-1, :]
    out[..., :, :-1] += qw[..., :, :-1]
    out[..., :, 1:] -= qw[..., :, :-1]
    return out


def solve(denoiser, op, y, sigmas, x_init, *, params: Params, generator) -> Iterator[Step]:
    n = len(sigmas) - 1
    y = match_batch(y, x_init.shape[0])
    step = 1.0 / (op.norm() ** 2 + 8.0) ** 0.5
    lam = params.lam
    x = zeros_like_batch(op, y, x_init.shape[0])
    x_bar = x
    p = torch.zeros_like(y)
    q = grad(x)
    for i in range(n):
        p = (p + step * (op.A(x_bar) - y)) / (1 + step)                          # 1: data dual
        q_tilde = q + step * grad(x_bar)
        magnitude = q_tilde.abs().square().sum(dim=1, keepdim=True).sqrt()       # isotropic |.|
        q = q_tilde / (magnitude / lam).clamp_min(1.0) if lam > 0 else torch.zeros_like(q)  # 2: TV dual
        x_new = x - step * (op.A_adjoint(p) - div(q))                            # 3: primal
        if params.nonneg:
            x_new = x_new.clamp_min(0) if not x_new.is_complex() else x_new
        x_bar = 2 * x_new - x                                                    # 4: extrapolation
        x = x_new
        yield Step(i, n, 0.0, x, x, 0)


INFO = SolverInfo(
    name="tv", solve=solve, Params=Params,
    title="Total variation (Chambolle-Pock)",
    reference="Chambolle & Pock, J. Math. Imaging Vis. 2011; Rudin, Osher & Fatemi 1992",
    needs=frozenset(), spread=SpreadRule(POINT), uses_prior=False,
)
