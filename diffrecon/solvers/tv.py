"""Total-variation regularised reconstruction by the primal-dual algorithm of Chambolle & Pock
(J. Math. Imaging Vis. 2011, Algorithm 1) with the diagonal preconditioning of Pock & Chambolle
(ICCV 2011, Lemma 2, alpha = 1), a classical baseline.

    min_x  1/2 ||A x - y||^2 + lam_abs TV(x)  [+ indicator(x >= 0)],   TV(x) = sum_px |grad x|_2

(isotropic TV, forward differences, Neumann boundary). With ``K = [A; grad]`` and the dual
variables ``p`` (data) and ``q`` (gradient) one iteration is

    p <- (p + s_p (A x_bar - y)) / (1 + s_p)        prox of the conjugate of 1/2||. - y||^2
    q <- q_tilde / max(1, |q_tilde| / lam_abs),  q_tilde = q + s_q grad x_bar
    x_new <- P(x - t (A^T p - div q))               P: projection on x >= 0, or identity
    x_bar <- 2 x_new - x

The steps are per entry: ``t_j = 1 / (sum_i |K_ij|)``, ``s_i = 1 / (sum_j |K_ij|)`` (Lemma 2: then
``||S^1/2 K T^1/2|| <= 1`` and the iteration converges). For operators with non-negative entries
(CT, inpainting, super-resolution) the sums of ``|A|`` are ``A 1`` and ``A^T 1``; for the others
the data block counts as one block of norm ``||A||`` (``s_p = 1/||A||``, ``||A||`` added to each
column sum), which satisfies the same bound. The problem is first divided by ``||A||^2`` (``A``
and ``y`` by ``||A||``), so the balance between the data and the gradient blocks, and with it
the number of iterations, does not depend on the operator's units. The gradient's rows sum to 2 and its columns to at
most 4, so the TV part keeps steps near 1/2 however large ``||A||`` is (with scalar steps
``1/||K||`` and ``||A|| = 90`` it moved 45 times slower than the data part and never became
active in a budget of a few hundred iterations).

``lam`` is relative: ``lam_abs = lam * sigma ||A||`` (:func:`~.classical.tv_weight_unit`).
The iteration stops when the image changes by less than ``tol`` (relative) per iteration, or
after ``max_iter`` iterations; the step budget only sets how often progress is reported.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch

from ..linalg import batch_norm
from ._common import SolverInfo, Step, param
from ._guidance import match_batch, zeros_like_batch
from .classical import iterations_per_step, tv_weight_unit
from .labels import POINT, SpreadRule

Tensor = torch.Tensor

#: Operators whose matrix has non-negative entries, so that ``A 1`` and ``A^T 1`` are the row and
#: column sums of ``|A|``.
NONNEGATIVE_KINDS = frozenset({"ct", "inpaint", "sr", "denoise"})


@dataclass(frozen=True)
class Params:
    # 0.5: the median of the discrepancy-principle weights on real and phantom images (CT 0.15-0.2,
    # MRI, inpainting, deblurring and super-resolution 0.3-0.8; benchmarks/real_images.py)
    lam: float = param(0.5, lo=0.0, hi=1e6, help="Weight of the total variation, in units of noise sigma times "
                       "||A|| (larger is smoother; the weight assistant picks it from the data).")
    nonneg: bool = param(False, help="Constrain the image to non-negative values.")
    tol: float = param(1e-4, lo=0.0, hi=1.0, help="Stop when the image changes by less than this (relative) "
                       "per iteration.")
    max_iter: int = param(2000, lo=1, hi=1_000_000, help="Most iterations (the step budget only sets how often "
                          "progress is shown).")


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


def preconditioners(op, like: Tensor, scale: float) -> tuple[Tensor, Tensor | float]:
    """Primal steps ``t`` (image-shaped) and data dual steps ``s_p`` (measurement-shaped, or one
    number for the block form) of Pock & Chambolle's Lemma 2 with alpha = 1, for ``A / scale``."""
    ones = torch.ones_like(like[:1].real)
    grad_columns = _grad_column_sums(ones)  # at most 4 per pixel
    if op.kind in NONNEGATIVE_KINDS and not like.is_complex():
        rows = op.A(ones).real / scale
        columns = op.A_adjoint(torch.ones_like(rows)).real / scale
        s_p = 1.0 / rows.clamp_min(1e-12)
        t = 1.0 / (columns + grad_columns).clamp_min(1e-12)
        return t, s_p
    norm = float(op.norm()) / scale
    return 1.0 / (norm + grad_columns), 1.0 / max(norm, 1e-12)


def _grad_column_sums(ones: Tensor) -> Tensor:
    """Column sums of ``|grad|``: each pixel enters the difference to its lower and right
    neighbours (-1) and from its upper and left ones (+1) where those exist."""
    h, w = ones.shape[-2:]
    rows = torch.full((h,), 2.0, device=ones.device)
    rows[0] = rows[-1] = 1.0
    cols = torch.full((w,), 2.0, device=ones.device)
    cols[0] = cols[-1] = 1.0
    if h == 1:
        rows[:] = 0.0
    if w == 1:
        cols[:] = 0.0
    return (rows[:, None] + cols[None, :]).expand_as(ones).clone()


def solve(denoiser, op, y, sigmas, x_init, *, params: Params, generator) -> Iterator[Step]:
    n = len(sigmas) - 1
    batch = x_init.shape[0]
    y = match_batch(y, batch)
    # the problem divided by ||A||^2 (A / c, y / c, lam / c^2): the same minimiser, and steps that
    # do not depend on the operator's units (the gradient block keeps its scale)
    c = max(float(op.norm()), 1e-12)
    lam = params.lam * tv_weight_unit(op) / c**2
    y = y / c
    x = zeros_like_batch(op, y, batch)
    t, s_p = preconditioners(op, x, c)
    s_q = 0.5  # rows of grad hold one +1 and one -1
    x_bar = x
    p = torch.zeros_like(y)
    q = grad(x)
    per_step = iterations_per_step(params.max_iter, n)
    done, converged = 0, False
    for i in range(n):
        for _ in range(0 if converged else per_step):
            p = (p + s_p * (op.A(x_bar) / c - y)) / (1 + s_p)                        # 1: data dual
            q_tilde = q + s_q * grad(x_bar)
            magnitude = q_tilde.abs().square().sum(dim=1, keepdim=True).sqrt()      # isotropic |.|
            q = q_tilde / (magnitude / lam).clamp_min(1.0) if lam > 0 else torch.zeros_like(q)  # 2: TV dual
            x_new = x - t * (op.A_adjoint(p) / c - div(q))                          # 3: primal
            if params.nonneg and not x_new.is_complex():
                x_new = x_new.clamp_min(0)
            x_bar = 2 * x_new - x                                                   # 4: extrapolation
            done += 1
            # the test reads a number back from the device: every 10th iteration only
            check = done % 10 == 0 and bool((batch_norm(x_new - x) < params.tol * batch_norm(x_new)).all())
            x = x_new
            if done >= params.max_iter or check:
                converged = True
                break
        yield Step(i, n, 0.0, x, x, 0)  # once converged, the remaining steps repeat x at no cost


INFO = SolverInfo(
    name="tv", solve=solve, Params=Params,
    title="Total variation (Chambolle-Pock)",
    reference="Chambolle & Pock, J. Math. Imaging Vis. 2011; Pock & Chambolle, ICCV 2011; Rudin, Osher & Fatemi 1992",
    needs=frozenset(), spread=SpreadRule(POINT), uses_prior=False,
)
