"""The cost-quality plot: one point per run (network evaluations or seconds against PSNR, SSIM
or, without a ground truth, the residual against the noise), the Pareto frontier drawn through
the runs no other run beats on both. The cost axis is a toggle of two buttons; evaluations are
counted in full-size equivalents (``metrics["equivalent_nfe"]``: a reduced-resolution level of
mlem counts its share), or as calls in comparisons saved before that was recorded."""
from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6 import QtWidgets

from ..compare import Comparison, metrics_rows, pareto_front

COSTS = {"Network evaluations": "equivalent_nfe", "Seconds": "seconds"}
FALLBACK = {"equivalent_nfe": "nfe"}  # comparisons saved before the equivalents were recorded
QUALITIES = {"PSNR [dB]": "psnr", "SSIM": "ssim", "|log residual / noise|": "residual_ratio"}


def quality_value(key: str, value: float) -> float:
    """Higher is better for the frontier: a residual ratio is best at 1 (consistent with the noise)."""
    if key == "residual_ratio":
        return -abs(math.log(value)) if value > 0 else math.nan
    return value


class ComparePlot(QtWidgets.QWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.cost = QtWidgets.QButtonGroup(self)  # the cost axis: a toggle
        self.cost_buttons = {}
        for i, name in enumerate(COSTS):
            button = QtWidgets.QToolButton(text=name, checkable=True, checked=i == 0)
            button.setToolTip("Cost axis: network evaluations of the run (full-size equivalents)" if i == 0 else
                              "Cost axis: wall seconds of the run on this machine")
            self.cost.addButton(button, i)
            self.cost_buttons[name] = button
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
        for button in self.cost_buttons.values():
            top.addWidget(button)
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
        self.cost.idToggled.connect(lambda _id, on: on and self._redraw())
        self.quality.currentIndexChanged.connect(self._redraw)

    def cost_axis(self) -> str:
        """The cost axis shown: a key of :data:`COSTS`."""
        return self.cost.checkedButton().text()

    def set_cost_axis(self, name: str) -> None:
        self.cost_buttons[name].setChecked(True)

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
        cost_key, quality_key = COSTS[self.cost_axis()], QUALITIES[self.quality.currentText()]
        rows = metrics_rows(self.comparison)
        if cost_key in FALLBACK and all(math.isnan(r[cost_key]) for r in rows):
            cost_key = FALLBACK[cost_key]
        rows = [r for r in rows if not math.isnan(r[cost_key])]
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
        self.plot.setLabel("bottom", "Seconds" if cost_key == "seconds" else
                           "Network evaluations" + (" (full-size equivalents)" if cost_key == "equivalent_nfe" else ""))
        self.plot.setLabel("left", self.quality.currentText())
        self.plot.setTitle("Pareto frontier (dashed): no other run is cheaper and better", size="9pt")
        self.plot.autoRange(padding=0.15)
