"""Display helpers shared by the window, the command line, the comparison grid and exported
figures. Qt-free.

One rule for colour levels: the 0.5th and 99.5th percentiles of the finite values, so one hot
pixel (or one diverged sample) does not wash out the image.
"""
from __future__ import annotations

import numpy as np

#: Percentiles of the finite values that set an image's colour levels.
ROBUST_PERCENTILES = (0.5, 99.5)


def robust_range(a: np.ndarray) -> tuple[float, float] | None:
    """The :data:`ROBUST_PERCENTILES` of the finite values of ``a``; None when there are none."""
    a = np.asarray(a)
    finite = a[np.isfinite(a)]
    if finite.size == 0:
        return None
    lo, hi = np.percentile(finite, ROBUST_PERCENTILES)
    return float(lo), float(hi)


def robust_levels(a: np.ndarray, symmetric: bool = False) -> tuple[float, float]:
    """Colour levels of ``a``: its robust range (0..1 without finite values), widened to a non-empty
    interval, or symmetric about 0 (``symmetric``, for signed errors)."""
    found = robust_range(a)
    if found is None:
        return 0.0, 1.0
    lo, hi = found
    if symmetric:
        m = max(abs(lo), abs(hi), 1e-12)
        return -m, m
    if hi <= lo:
        hi = lo + 1e-6 * max(abs(lo), 1.0)
    return lo, hi


def format_bytes(n: float | None) -> str:
    """A memory figure for a status line or table: ``512 B``, ``1.5 GiB`` (``?`` when unknown)."""
    if n is None:
        return "?"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"
