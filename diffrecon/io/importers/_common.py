"""Small helpers shared by the importers: argument checks, picking a slice, cropping."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ...errors import InputError

#: Largest image side an importer builds (a 4096 x 4096 image is already far beyond any prior).
MAX_SIDE = 4096


def check_size_arg(size, path: Path | str) -> int | None:
    """``size`` as an int in [8, MAX_SIDE] or None."""
    if size is None:
        return None
    try:
        n = int(size)
    except (TypeError, ValueError):
        n = -1
    if n != size or not 8 <= n <= MAX_SIDE:
        raise InputError(f"Import of {path}: size is {size!r}; expected an integer from 8 to {MAX_SIDE} (or None).")
    return n


def pick_index(index, count: int, what: str, path: Path | str) -> int:
    """The slice/row ``index`` (None: the middle one), checked against ``count``."""
    if count < 1:
        raise InputError(f"File {path}: {what} has no entries to pick from.")
    if index is None:
        return count // 2
    try:
        i = int(index)
    except (TypeError, ValueError):
        i = None
    if i is None or i != index or not 0 <= i < count:
        raise InputError(f"Import of {path}: slice is {index!r}; expected an integer from 0 to {count - 1} ({what}).")
    return i


def finite_or_fail(arr: np.ndarray, path: Path | str, name: str) -> np.ndarray:
    if arr.dtype.kind in "fc" and not np.isfinite(arr).all():
        raise InputError(f"File {path}: dataset {name} contains NaN or Inf values; all values must be finite.")
    return arr


def centre_crop_or_pad(a: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Crop (or zero-pad) the last two axes to ``shape`` about the centre index ``n // 2``.

    Centring on ``n // 2`` keeps the DFT centre of fftshift-ed arrays in place.
    """
    out = a
    for axis, new in zip((-2, -1), shape):
        n = out.shape[axis]
        if new < n:
            start = n // 2 - new // 2
            out = np.take(out, np.arange(start, start + new), axis=axis)
        elif new > n:
            before = new // 2 - n // 2
            pad = [(0, 0)] * out.ndim
            pad[axis] = (before, new - n - before)
            out = np.pad(out, pad)
    return out


def value_range_of(image: np.ndarray | None, fallback: float | None = None) -> tuple[float, float] | None:
    """``(min(0, lo), hi)`` of an image, the range the engine maps onto the prior's."""
    if image is None:
        if fallback is not None and math.isfinite(fallback) and fallback > 0:
            return (0.0, float(fallback))
        return None
    lo, hi = float(np.min(image)), float(np.max(image))
    lo = min(lo, 0.0)
    return (lo, hi) if hi > lo else (lo, lo + 1.0)
