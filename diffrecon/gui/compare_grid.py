"""The side-by-side grid: one column per run, rows mean / std (seed spread for deterministic
solvers) / error when the ground truth is known. Every row shares its colour levels and has one
colour bar with units (one pyqtgraph ColorBarItem driving all the row's images); all panels pan
and zoom together."""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from ..compare import Comparison, grid_rows, shared_levels, std_title

#: pyqtgraph colour maps of the rows (the main window's choices: grey, inferno, diverging).
CMAPS = {"mean": "CET-L1", "std": "inferno", "error": "CET-D1"}


class CompareGrid(QtWidgets.QWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.graphics = pg.GraphicsLayoutWidget()
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.graphics)
        self.plots: dict[tuple[str, int], pg.PlotItem] = {}
        self.images: dict[tuple[str, int], pg.ImageItem] = {}
        self.bars: dict[str, pg.ColorBarItem] = {}
        self.columns: list[int] = []  # run index of each column
        self.outliers: list[int] = []  # runs left out of the shared levels (diverged)

    def clear(self) -> None:
        self.graphics.clear()
        self.plots.clear()
        self.images.clear()
        self.bars.clear()
        self.columns = []
        self.outliers = []

    def show_comparison(self, comparison: Comparison) -> None:
        """Rebuild the grid from the runs that have a result."""
        self.clear()
        shown, rows = grid_rows(comparison)
        self.columns = list(shown)
        if not shown:
            self.graphics.addLabel("No finished run yet.")
            return
        m = comparison.measurement
        truth = None if m.ground_truth is None else np.asarray(m.ground_truth, np.float32)[0]
        units = m.units or "a.u."
        anchor = None
        levels, outlier = shared_levels(rows, truth)
        self.outliers = [index for index, o in zip(shown, outlier) if o]
        for r, (row, maps) in enumerate(rows.items()):
            items = []
            # Row names sit in their own label column, so every image panel has the same size:
            # aspect-locked views of different sizes fight when their ranges are linked.
            self.graphics.addLabel("error" if row == "error" else row, angle=-90, row=r, col=0, size="9pt")
            for c, (index, image) in enumerate(zip(shown, maps)):
                plot = self.graphics.addPlot(row=r, col=c + 1)
                plot.setAspectLocked(True)
                plot.invertY(True)
                plot.hideButtons()
                plot.hideAxis("bottom")
                plot.hideAxis("left")
                result = comparison.results[index]
                spec = comparison.runs[index]
                if row == "mean":
                    state = "" if comparison.status[index] == "done" else f" ({comparison.status[index]})"
                    state += " (outside shared levels)" if index in self.outliers else ""
                    title = f"{spec.solver}{state} · {spec.steps} steps · seed {spec.seed}"
                elif row == "std":
                    title = std_title(result)
                else:
                    title = f"error · {spec.solver}"
                plot.setTitle(title, size="9pt")
                item = pg.ImageItem(image)
                plot.addItem(item)
                if anchor is None:
                    anchor = plot
                else:
                    plot.setXLink(anchor)
                    plot.setYLink(anchor)
                self.plots[(row, index)] = plot
                self.images[(row, index)] = item
                items.append(item)
            lo, hi = levels[row]
            bar = pg.ColorBarItem(values=(lo, hi), colorMap=CMAPS[row], interactive=True, width=12,
                                  label=f"{row} [{units}]")  # short: a vertical label sets the row height
            bar.getAxis("right").enableAutoSIPrefix(False)  # 1/cm must not become m1/cm
            bar.setImageItem(items)
            self.graphics.addItem(bar, row=r, col=len(shown) + 1)
            self.bars[row] = bar
        for r in range(len(rows)):
            self.graphics.ci.layout.setRowStretchFactor(r, 1)  # equal rows, whatever the labels
        self._full = rows["mean"][0].shape
        self.show_full()
        QtCore.QTimer.singleShot(0, self.show_full)  # again once the layout has its final size

    def show_full(self) -> None:
        """Zoom every panel (they are linked) to the whole image."""
        first = next(iter(self.plots.values()), None)
        if first is not None:
            h, w = self._full
            first.setRange(xRange=(0, w), yRange=(0, h), padding=0.02)

    def levels(self, row: str) -> tuple[float, float]:
        return tuple(float(v) for v in self.bars[row].levels())
