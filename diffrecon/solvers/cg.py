"""Tikhonov-regularised least squares by conjugate gradients (a classical baseline).

Solves ``min_x ||A x - y||^2 + lam ||x||^2`` through the normal equations
``(A^T A + lam I) x = A^T y`` with the method of Hestenes & Stiefel (J. Res. NBS 1952), one
iteration per step of the budget ``len(sigmas) - 1``. Step lengths are per sample; a sample whose
residual has vanished stops moving. With lam = 0 it is CGLS, converging to the minimum-norm
least-squares solution from x = 0. No prior: ``denoiser`` and the noise levels are ignored.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch

from ..linalg import batch_dot, batch_view
from ._common import SolverInfo, Step, param
from ._guidance import match_batch, zeros_like_batch
from .labels import POINT, SpreadRule


@dataclass(frozen=True)
class Params:
    lam: float = param(1e-2, lo=0.0, hi=1e6, help="Tikhonov weight on ||x||^2 (0: plain least squares).")


def solve(denoiser, op, y, sigmas, x_init, *, params: Params, generator) -> Iterator[Step]:
    n = len(sigmas) - 1
    y = match_batch(y, x_init.shape[0])
    lam = params.lam

    def normal(v):
        return op.A_normal(v) + lam * v

    x = zeros_like_batch(op, y, x_init.shape[0])
    r = op.A_adjoint(y).to(x.dtype)                                  # 1: r0 = b - M x0, x0 = 0
    p = r.clone()                                                    # 2: p0 = r0
    rs = batch_dot(r, r)
    tiny = torch.finfo(rs.dtype).tiny
    for i in range(n):
        Mp = normal(p)
        alpha = torch.where(rs > tiny, rs / batch_dot(p, Mp).clamp_min(tiny), torch.zeros_like(rs))
        x = x + batch_view(alpha, x) * p                             # 3: x += alpha p
        r = r - batch_view(alpha, r) * Mp                            # 4: r -= alpha M p
        rs_new = batch_dot(r, r)
        beta = torch.where(rs > tiny, rs_new / rs.clamp_min(tiny), torch.zeros_like(rs))
        p = r + batch_view(beta, p) * p                              # 5: p = r + beta p
        rs = rs_new
        yield Step(i, n, 0.0, x, x, 0)


INFO = SolverInfo(
    name="cg", solve=solve, Params=Params,
    title="Tikhonov least squares (conjugate gradients)",
    reference="Hestenes & Stiefel, J. Res. NBS 1952; Tikhonov 1963",
    needs=frozenset(), spread=SpreadRule(POINT), uses_prior=False,
)
