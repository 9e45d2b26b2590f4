"""What the classical baselines (``tv``, ``cg``) share: the scale of their weights and how
their iterations are spread over the step budget.

Their weights are relative to the operator and the noise, so one default suits CT in pixel
units (||A|| about 60-90) as well as inpainting (||A|| = 1): a problem scaled as
``A -> c A, y -> c y, sigma -> c sigma`` keeps the same solution at the same relative weight.
"""
from __future__ import annotations

import math

#: Noise floor relative to ||A|| where the measurement states no noise (sigma = 0): the scale
#: of the weights must not vanish, or an iterative solver never regularises.
NOISE_FLOOR = 1e-3


def effective_sigma(op) -> float:
    """The operator's noise level, at least ``NOISE_FLOOR * ||A||``."""
    return max(float(op.noise_sigma), NOISE_FLOOR * float(op.norm()))


def tv_weight_unit(op) -> float:
    """Unit of the TV weight: ``sigma ||A||``. For ``A = c I`` (denoising at noise sigma/c after
    dividing by c) the ROF weight that suits noise ``s`` is about ``s``; multiplied back by ``c^2``
    that is ``sigma c``."""
    return effective_sigma(op) * float(op.norm())


def tikhonov_weight_unit(op) -> float:
    """Unit of the Tikhonov weight: ``sigma^2`` (the Wiener weight is ``sigma^2 / var(x)``)."""
    return effective_sigma(op) ** 2


def iterations_per_step(max_iter: int, steps: int) -> int:
    """Iterations between two yields so that ``steps`` yields cover ``max_iter`` iterations."""
    return max(1, math.ceil(max_iter / max(steps, 1)))
