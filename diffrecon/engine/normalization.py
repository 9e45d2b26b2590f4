"""Physical units and the prior's range: the one place that converts value ranges."""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Normalization:
    """``physical = scale * prior + offset``; the one place that converts value ranges."""

    scale: float
    offset: float

    @classmethod
    def between(cls, physical: tuple[float, float], prior: tuple[float, float]) -> "Normalization":
        (lo, hi), (a, b) = physical, prior
        scale = (hi - lo) / (b - a)
        return cls(scale, lo - scale * a)

    def to_physical(self, x):
        return self.scale * x + self.offset

    def measurement_to_prior(self, op, y: torch.Tensor) -> torch.Tensor:
        """``y`` of ``A x_phys`` as ``y`` of ``A x_prior``: (y - A(offset)) / scale."""
        shift = op.A(torch.full((1, *op.image_shape), self.offset, device=y.device, dtype=op.image_dtype))
        return (y - shift) / self.scale


def estimate_range(op, y: torch.Tensor) -> tuple[float, float]:
    """Expected image range from the direct reconstruction (robust percentiles)."""
    x = op.direct(y).real.float()
    lo, hi = torch.quantile(x.flatten()[:1_000_000].cpu(), torch.tensor([0.005, 0.995], dtype=torch.float32))
    lo, hi = float(lo), float(hi)
    if not hi > lo:
        hi = lo + 1.0
    return lo, hi
