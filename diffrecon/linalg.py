"""Small batched linear-algebra helpers shared by operators and solvers.

All functions treat the leading dimension as a batch of independent problems: inner products,
step sizes and stopping tests are per sample, never pooled over the batch.
"""
from __future__ import annotations

from typing import Callable

import torch

Tensor = torch.Tensor

#: Relative cut-off of every pseudo-inverse (operators and solvers alike): singular values, or
#: transfer-function magnitudes, not above this fraction of the largest are treated as zero.
PINV_RTOL = 1e-6


def pinv_kept(s: Tensor) -> Tensor:
    """Bool mask of the singular values a pseudo-inverse inverts: ``|s| > PINV_RTOL max |s|``."""
    magnitude = s.abs()
    return magnitude > PINV_RTOL * magnitude.max().clamp_min(1e-30)


def batch_dot(a: Tensor, b: Tensor) -> Tensor:
    """Real inner product Re<a, b> per sample, shape ``(B,)``; complex tensors allowed."""
    prod = a.conj() * b if a.is_complex() else a * b
    return prod.reshape(a.shape[0], -1).sum(dim=1).real


def batch_norm(a: Tensor) -> Tensor:
    """Euclidean norm per sample, shape ``(B,)``."""
    return batch_dot(a, a).clamp_min(0).sqrt()


def batch_view(v: Tensor, like: Tensor) -> Tensor:
    """A ``(B,)`` tensor shaped to broadcast against ``like`` (one value per sample)."""
    return v.reshape(-1, *([1] * (like.ndim - 1)))


def conjugate_gradient(
    apply: Callable[[Tensor], Tensor],
    b: Tensor,
    x0: Tensor | None = None,
    *,
    iters: int = 50,
    tol: float = 1e-6,
) -> Tensor:
    """Solve ``apply(x) = b`` for a symmetric positive (semi-)definite ``apply`` by CG.

    Hestenes & Stiefel (1952). Runs a fixed number of iterations without host
    synchronisation; samples whose relative residual fell under ``tol`` stop moving.
    """
    x = torch.zeros_like(b) if x0 is None else x0.clone()
    r = b - apply(x) if x0 is not None else b.clone()
    p = r.clone()
    rs = batch_dot(r, r)
    stop = tol**2 * batch_dot(b, b).clamp_min(torch.finfo(rs.dtype).tiny)
    for _ in range(iters):
        Ap = apply(p)
        active = rs > stop
        alpha = torch.where(active, rs / batch_dot(p, Ap).clamp_min(1e-30), torch.zeros_like(rs))
        x = x + batch_view(alpha, x) * p
        r = r - batch_view(alpha, r) * Ap
        rs_new = batch_dot(r, r)
        beta = torch.where(active, rs_new / rs.clamp_min(1e-30), torch.zeros_like(rs))
        p = r + batch_view(beta, p) * p
        rs = rs_new
    return x


def power_iteration(
    apply_normal: Callable[[Tensor], Tensor], x0: Tensor, iters: int = 50
) -> float:
    """Largest eigenvalue of the positive semidefinite map ``apply_normal`` (e.g. A^H A)."""
    x = x0 / batch_norm(x0).max().clamp_min(1e-30)
    lam = torch.zeros(())
    for _ in range(iters):
        y = apply_normal(x)
        lam = batch_norm(y).max()
        x = y / lam.clamp_min(1e-30)
    return float(lam)


def chebyshev_coefficients(f: Callable[[float], float], lo: float, hi: float, degree: int) -> list[float]:
    """Chebyshev interpolation coefficients of ``f`` on ``[lo, hi]`` (Trefethen, "Approximation
    Theory and Approximation Practice", 2013, Ch. 3), so that ``f(t) ~ sum_k c_k T_k(u)`` with
    ``u = (2 t - lo - hi) / (hi - lo)``; ``c_0`` already halved."""
    import math

    nodes = [math.cos(math.pi * (j + 0.5) / (degree + 1)) for j in range(degree + 1)]
    values = [f(0.5 * (hi - lo) * u + 0.5 * (hi + lo)) for u in nodes]
    coeffs = []
    for k in range(degree + 1):
        c = 2.0 / (degree + 1) * sum(v * math.cos(math.pi * k * (j + 0.5) / (degree + 1)) for j, v in enumerate(values))
        coeffs.append(c)
    coeffs[0] *= 0.5
    return coeffs


def chebyshev_apply(apply: Callable[[Tensor], Tensor], v: Tensor, coeffs: list[float], lo: float, hi: float) -> Tensor:
    """``f(M) v`` for a symmetric ``M`` (``apply(v) = M v``) with spectrum in ``[lo, hi]``, from the
    Chebyshev coefficients of ``f`` (:func:`chebyshev_coefficients`): the three-term recurrence
    ``T_{k+1} = 2 u T_k - T_{k-1}``, one application of ``M`` per degree, no matrix formed."""
    scale, shift = 2.0 / (hi - lo), (hi + lo) / (hi - lo)

    def u(w: Tensor) -> Tensor:
        return scale * apply(w) - shift * w

    t_prev, t_cur = v, u(v)
    out = coeffs[0] * t_prev + (coeffs[1] * t_cur if len(coeffs) > 1 else 0)
    for c in coeffs[2:]:
        t_prev, t_cur = t_cur, 2 * u(t_cur) - t_prev
        out = out + c * t_cur
    return out
