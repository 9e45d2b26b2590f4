"""Figures of a comparison: the grid of maps (a column per finished run, rows mean / std / error)
drawn by matplotlib into a PNG, and the helpers the window's grid shares with it."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..grid_levels import shared_levels
from ..measurement import Result
from .atomic import atomic_write
from .comparison_file import Comparison

ROW_TITLES = {"mean": "mean", "std": "std", "error": "error (mean − truth)"}
ROW_CMAPS = {"mean": "gray", "std": "inferno", "error": "RdBu_r"}


def first_channel(a: np.ndarray) -> np.ndarray:
    """The first channel of a (C, H, W) map (complex as magnitude), float32."""
    a = np.asarray(a)
    a = a[0] if a.ndim == 3 else a
    return np.abs(a).astype(np.float32) if np.iscomplexobj(a) else a.astype(np.float32)


def grid_rows(comparison: Comparison) -> tuple[list[int], dict[str, list[np.ndarray]]]:
    """The runs with a result and, per row (mean, std, error when ground truth), one map per run."""
    shown = comparison.finished()
    rows: dict[str, list[np.ndarray]] = {"mean": [], "std": []}
    truth = comparison.measurement.ground_truth
    if truth is not None:
        rows["error"] = []
    for i in shown:
        r = comparison.results[i]
        rows["mean"].append(first_channel(r.mean))
        rows["std"].append(first_channel(r.std))
        if truth is not None:
            rows["error"].append(first_channel(r.mean) - first_channel(truth))
    return shown, rows


def std_title(result: Result) -> str:
    """What the std is: posterior std, seed spread, prior samples, ... (diffrecon.solvers.labels)."""
    from ..solvers.labels import TEXT

    return TEXT.get(result.spread, TEXT["unknown"])


def write_figure(path: str | os.PathLike, comparison: Comparison) -> Path:
    """The grid as one PNG: a column per finished run, rows mean / std / error, shared colour
    levels per row and one colour bar per row in the measurement's units."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    shown, rows = grid_rows(comparison)
    if not shown:
        raise InputError("No run of this comparison has finished; there is nothing to draw.")
    m = comparison.measurement
    truth = None if m.ground_truth is None else first_channel(m.ground_truth)
    units = m.units or "a.u."
    ncols, nrows = len(shown), len(rows)
    fig = Figure(figsize=(2.4 * ncols + 1.4, 2.4 * nrows + 0.6), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    levels, outliers = shared_levels(rows, truth)
    for r, (row, maps) in enumerate(rows.items()):
        lo, hi = levels[row]
        image = None
        for c, (i, a) in enumerate(zip(shown, maps)):
            ax = axes[r, c]
            image = ax.imshow(a, cmap=ROW_CMAPS[row], vmin=lo, vmax=hi, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            result = comparison.results[i]
            if r == 0:
                spec = comparison.runs[i]
                state = "" if comparison.status[i] == "done" else f" ({comparison.status[i]})"
                state += " (outside shared levels)" if outliers[c] else ""
                ax.set_title(f"{spec.solver}{state}\n{spec.steps} steps, seed {spec.seed}", fontsize=9)
            if row == "std":
                ax.set_xlabel(std_title(result), fontsize=8)
            if c == 0:
                ax.set_ylabel(ROW_TITLES[row], fontsize=9)
        bar = fig.colorbar(image, ax=axes[r, :].tolist(), shrink=0.9, pad=0.02)
        bar.set_label(f"{ROW_TITLES[row]} [{units}]", fontsize=8)
    fig.suptitle(m.title or "comparison", fontsize=10)
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"), action="export to")
