"""Colour levels shared by a row of the comparison grid, robust to one diverged run.

Each row (mean, std, error) shares one colour scale so runs compare at a glance. Levels taken over
all maps together let one diverged run, with values thousands of times the others', set the scale
and blank every other run's maps. So a run whose mean lies far outside the reference range (the
ground truth's when known, else that of a typical run) is an outlier: it is still drawn, saturated,
and named, but left out of the shared levels of every row.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .display import robust_range

#: A run's mean range beyond the reference range by this many reference spans makes it an outlier.
OUTLIER_SPANS = 10.0


def outlier_runs(means: Sequence[np.ndarray], truth: np.ndarray | None = None) -> list[bool]:
    """For each run's mean map: True when it lies far outside the reference range (or holds no
    finite value). The reference is the truth's range, else the run of the lower median span."""
    ranges = [robust_range(np.asarray(m)) for m in means]
    known = [r for r in ranges if r is not None]
    if not known:
        return [True] * len(ranges)
    if truth is not None and robust_range(np.asarray(truth)) is not None:
        ref = robust_range(np.asarray(truth))
    else:
        by_span = sorted(known, key=lambda r: r[1] - r[0])
        ref = by_span[(len(by_span) - 1) // 2]  # the lower median: with two runs, the tamer one
    span = max(ref[1] - ref[0], 1e-12 * max(abs(ref[0]), abs(ref[1]), 1.0))
    lo_ok, hi_ok = ref[0] - OUTLIER_SPANS * span, ref[1] + OUTLIER_SPANS * span
    return [r is None or r[0] < lo_ok or r[1] > hi_ok for r in ranges]


def row_levels(row: str, maps: Sequence[np.ndarray], truth: np.ndarray | None = None) -> tuple[float, float]:
    """Colour levels shared by a whole row: the truth's range for means when known, else robust
    0.5/99.5 percentiles, per run, the widest over the runs; std from 0; errors symmetric about 0."""
    finite = [m[np.isfinite(m)].ravel() for m in maps]
    finite = [f for f in finite if f.size] or [np.zeros(1)]
    if row == "mean" and truth is not None:
        lo, hi = float(np.min(truth)), float(np.max(truth))
    elif row == "std":
        lo, hi = 0.0, max(float(np.percentile(f, 99.5)) for f in finite)
    elif row == "error":
        hi = max(float(np.percentile(np.abs(f), 99.5)) for f in finite)
        lo = -hi
    else:
        lo = min(float(np.percentile(f, 0.5)) for f in finite)
        hi = max(float(np.percentile(f, 99.5)) for f in finite)
    if not hi > lo:
        hi = lo + 1e-6 * max(abs(lo), 1.0)
    return lo, hi


def shared_levels(rows: dict[str, list[np.ndarray]], truth: np.ndarray | None = None
                  ) -> tuple[dict[str, tuple[float, float]], list[bool]]:
    """(levels per row over the runs that are no outliers, outlier flag per run)."""
    outliers = outlier_runs(rows["mean"], truth)
    keep = [not o for o in outliers] if not all(outliers) else [True] * len(outliers)
    levels = {row: row_levels(row, [m for m, k in zip(maps, keep) if k], truth) for row, maps in rows.items()}
    return levels, outliers


def outlier_warning(label: str) -> str:
    """The one sentence the window and ``diffrecon compare`` show for an outlier run."""
    return (f"Run {label} lies far outside the other runs' range (diverged?); it is drawn saturated and "
            "left out of the grid's shared colour levels.")
