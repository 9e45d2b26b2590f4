"""The cost-quality plot: one point per run (network evaluations or seconds against PSNR, SSIM
or, without a ground truth, the residual against the noise), the Pareto frontier drawn through
the runs no other run beats on both."""
from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6 import QtWidgets

from ..compare import Comparison, metrics_rows, pareto_front

COSTS = {"Network evaluations": "nfe", "Seconds": "seconds"}
QUALITIES = {"PSNR [dB]": "psnr", "SSIM": "ssim", "|log residual / noise|": "residual_ratio"}


def quality_value(key: str, value: float) -> float:
    """Higher is better for the frontier: a residual ratio is best at 1 (consistent with the noise)."""
    if key == "residual_ratio":
        return -abs(math.log(value)) if value > 0 else math.nan
    return value


class ComparePlot(QtWidgets.QWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.cost = QtWidgets.QComboBox()
        self.cost.addItems(list(COSTS))
        self.quality = QtWidgets.QComboBox()
        self.quality.addItems(list(QUALITIES))
        self.plot = pg.PlotWidget()
        self.plot.showGrid(x=True, y=True, alpha=0.3)
        self.scatter = pg.ScatterPlotItem(size=10, brush=pg.mkBrush(80, 160, 255), pen=pg.mkPen("w"))
        self.front = pg.PlotDataItem(pen=pg.mkPen((255, 170, 0), width=2, style=pg.QtCore.Qt.PenStyle.DashLine))
        self.plot.addItem(self.front)
        self.plot.addItem(self.scatter)
        self.labels: list[pg.TextItem] = []
        top = QtWidgets.QHBoxLayout()
        top.addWidget(QtWidgets.QLabel("Cost"))
        top.addWidget(self.cost)
        top.addWidget(QtWidgets.QLabel("Quality"))
        top.addWidget(self.quality)
        top.addStretch(1)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(top)
        layout.addWidget(self.plot)
        self.comparison: Comparison | None = None
        self.points: list[tuple[float, float]] = []
        self.front_indices: list[int] = []
        self.cost.currentIndexChanged.connect(self._redraw)
        self.quality.currentIndexChanged.connect(self._redraw)

    def show_comparison(self, comparison: Comparison) -> None:
        self.comparison = comparison
        has_truth = comparison.measurement.ground_truth is not None
        wanted = "PSNR [dB]" if has_truth else "|log residual / noise|"
        if not has_truth or self.quality.currentText() == "|log residual / noise|":
            self.quality.setCurrentText(wanted)
        self._redraw()

    def _redraw(self, *_args) -> None:
        for label in self.labels:
            self.plot.removeItem(label)
        self.labels = []
        self.points, self.front_indices = [], []
        self.scatter.clear()
        self.front.setData([], [])
        if self.comparison is None:
            return
        cost_key, quality_key = COSTS[self.cost.currentText()], QUALITIES[self.quality.currentText()]
        rows = [r for r in metrics_rows(self.comparison) if not math.isnan(r[cost_key])]
        self.points = [(r[cost_key], quality_value(quality_key, r[quality_key])) for r in rows]
        ok = [i for i, (c, q) in enumerate(self.points) if math.isfinite(c) and math.isfinite(q)]
        self.scatter.setData([self.points[i][0] for i in ok], [self.points[i][1] for i in ok],
                             data=[rows[i]["run"] for i in ok])
        xs = [self.points[i][0] for i in ok]
        middle = (min(xs) + max(xs)) / 2 if xs else 0.0
        colour = pg.getConfigOption("foreground")  # the theme's text colour
        for i in ok:
            # labels point inwards, so those of the rightmost runs are not cut at the plot's edge
            anchor = (1, 1) if self.points[i][0] > middle else (0, 1)
            label = pg.TextItem(f"{rows[i]['solver']} {rows[i]['steps']}", anchor=anchor, color=colour)
            label.setPos(*self.points[i])
            self.plot.addItem(label)
            self.labels.append(label)
        self.front_indices = pareto_front(self.points)
        front = np.array([self.points[i] for i in self.front_indices], dtype=float).reshape(-1, 2)
        self.front.setData(front[:, 0], front[:, 1])
        self.plot.setLabel("bottom", self.cost.currentText())
        self.plot.setLabel("left", self.quality.currentText())
        self.plot.setTitle("Pareto frontier (dashed): no other run is cheaper and better", size="9pt")
        self.plot.autoRange(padding=0.15)
