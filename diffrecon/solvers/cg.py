"""Tikhonov-regularised least squares by conjugate gradients (a classical baseline).

Solves ``min_x ||A x - y||^2 + lam_abs ||x||^2`` through the normal equations
``(A^T A + lam_abs I) x = A^T y`` with the method of Hestenes & Stiefel (J. Res. NBS 1952). Step
lengths are per sample; a sample whose residual has vanished stops moving. ``lam`` is relative to
the noise: ``lam_abs = lam * sigma^2`` (:func:`~.classical.tikhonov_weight_unit`; the Wiener
weight of an image of variance ``1/lam``), so one default suits every operator scale. It
iterates until the normal-equation residual falls below ``tol`` times its start, or
``max_iter`` iterations; the step budget only sets how often progress is reported. With
lam = 0 it is CGLS, converging to the minimum-norm least-squares solution from x = 0. No prior:
``denoiser`` and the noise levels are ignored.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch

from ..linalg import batch_dot, batch_view
from ._common import SolverInfo, Step, param
from ._guidance import match_batch, zeros_like_batch
from .classical import iterations_per_step, tikhonov_weight_unit
from .labels import POINT, SpreadRule


@dataclass(frozen=True)
class Params:
    # 50: within the discrepancy-principle weights on real and phantom images (11-390)
    lam: float = param(50.0, lo=0.0, hi=1e9, help="Tikhonov weight on ||x||^2 in units of the noise variance "
                       "(0: plain least squares).")
    tol: float = param(1e-6, lo=0.0, hi=1.0, help="Stop when the residual of the normal equations falls below "
                       "this fraction of its start.")
    max_iter: int = param(500, lo=1, hi=1_000_000, help="Most iterations (the step budget only sets how often "
                          "progress is shown).")


def solve(denoiser, op, y, sigmas, x_init, *, params: Params, generator) -> Iterator[Step]:
    n = len(sigmas) - 1
    y = match_batch(y, x_init.shape[0])
    lam = params.lam * tikhonov_weight_unit(op)

    def normal(v):
        return op.A_normal(v) + lam * v

    x = zeros_like_batch(op, y, x_init.shape[0])
    r = op.A_adjoint(y).to(x.dtype)                                  # 1: r0 = b - M x0, x0 = 0
    p = r.clone()                                                    # 2: p0 = r0
    rs = batch_dot(r, r)
    stop = rs * params.tol**2
    tiny = torch.finfo(rs.dtype).tiny
    per_step = iterations_per_step(params.max_iter, n)
    done, converged = 0, False
    for i in range(n):
        for _ in range(0 if converged else per_step):
            Mp = normal(p)
            alpha = torch.where(rs > tiny, rs / batch_dot(p, Mp).clamp_min(tiny), torch.zeros_like(rs))
            x = x + batch_view(alpha, x) * p                         # 3: x += alpha p
            r = r - batch_view(alpha, r) * Mp                        # 4: r -= alpha M p
            rs_new = batch_dot(r, r)
            beta = torch.where(rs > tiny, rs_new / rs.clamp_min(tiny), torch.zeros_like(rs))
            p = r + batch_view(beta, p) * p                          # 5: p = r + beta p
            rs = rs_new
            done += 1
            if done >= params.max_iter or (done % 5 == 0 and bool((rs <= stop).all())):
                converged = True
                break
        yield Step(i, n, 0.0, x, x, 0)  # once converged, the remaining steps repeat x at no cost


INFO = SolverInfo(
    name="cg", solve=solve, Params=Params,
    title="Tikhonov least squares (conjugate gradients)",
    reference="Hestenes & Stiefel, J. Res. NBS 1952; Tikhonov 1963",
    needs=frozenset(), spread=SpreadRule(POINT), uses_prior=False,
)
