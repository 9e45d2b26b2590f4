"""Row and slice ranges: what the importers share when they read a stack of slices (a range of
detector rows of a tomography scan, a range of k-space slices) as measurements of one forward model."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from ...errors import InputError
from ...measurement import Measurement
from .noise import is_estimated

#: Most rows or slices one import reads as a stack.
MAX_RANGE = 4096


def parse_range(rows, count: int, least: int = 1, most: int | None = None) -> tuple[int, int] | None:
    """``rows`` = (first, end) as two integers with ``0 <= first``, ``first + least <= end <= count``
    and at most ``most`` entries; None when it is not."""
    try:
        a, b = (int(v) for v in rows)
        ok = tuple(rows) == (a, b) and 0 <= a and a + least <= b <= count and (most is None or b - a <= most)
    except (TypeError, ValueError):
        return None
    return (a, b) if ok else None


def check_range(rows, count: int, what: str, path: Path | str) -> tuple[int, int]:
    """``rows`` = (first, end), end excluded as in Python's slices (and tomopy's ``sino=(start, end)``),
    checked against ``count`` entries of ``what``; at least 2 of them."""
    found = parse_range(rows, count, 2, MAX_RANGE)
    if found is None:
        raise InputError(f"Import of {path}: rows is {rows!r}; expected (first, end) with 0 <= first, "
                         f"first + 2 <= end <= {count} (end excluded, at most {MAX_RANGE}) for {what}.")
    return found


def shared_noise(slices: list[Measurement]) -> list[Measurement]:
    """The slices with one noise level, the median of the levels estimated per slice (a volume has
    one noise level); those left unestimated stay so."""
    levels = [m.noise_sigma for m in slices if is_estimated(str(m.attrs.get("noise_source", "")))]
    if not levels:
        return slices
    sigma = float(np.median(levels))
    source = f"median over {len(levels)} of {len(slices)} slices of: {slices[0].attrs.get('noise_source', '')}"
    return [replace(m, noise_sigma=sigma, operator=replace(m.operator, noise_sigma=sigma),
                    attrs=dict(m.attrs, noise_source=source)) for m in slices]


def same_operator(slices: list[Measurement], path: Path | str, hint: str) -> list[Measurement]:
    """``slices`` if they share one forward model, else one sentence naming the first that does not."""
    first = slices[0].operator
    for z, m in enumerate(slices[1:], start=1):
        op = m.operator
        same = (op.kind == first.kind and op.image_shape == first.image_shape and op.params == first.params
                and op.arrays.keys() == first.arrays.keys()
                and all(np.array_equal(op.arrays[k], first.arrays[k]) for k in op.arrays))
        if not same:
            raise InputError(f"Import of {path}: {m.title} has another forward model than {slices[0].title}; a "
                             f"volume measurement holds one, so {hint}.")
    return slices
