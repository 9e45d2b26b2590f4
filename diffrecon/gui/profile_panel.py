"""Line profile through the posterior mean ± std and the ground truth, along a draggable line
placed on the mean panel."""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from .image_panel import ImagePanel


class ProfilePanel(QtWidgets.QWidget):
    def __init__(self, source: ImagePanel, parent=None):
        super().__init__(parent)
        self.source = source
        self.mean = self.std = self.truth = None
        self.plot = pg.PlotWidget()
        self.plot.setLabel("bottom", "position along line", units="px")
        self.plot.addLegend(offset=(5, 5))
        self.plot.setMinimumHeight(120)
        self.plot.getAxis("left").enableAutoSIPrefix(False)
        self.plot.getAxis("bottom").enableAutoSIPrefix(False)  # "mpx" on an empty plot reads as nonsense
        self._show_values(False)  # an empty plot's -0.5..0.5 would read as a profile
        # curves with a transparent pen: FillBetweenItem needs their paths, which pen=None skips
        self.band_hi = pg.PlotCurveItem(pen=pg.mkPen((0, 0, 0, 0)))
        self.band_lo = pg.PlotCurveItem(pen=pg.mkPen((0, 0, 0, 0)))
        self.plot.addItem(self.band_hi)
        self.plot.addItem(self.band_lo)
        self.band = pg.FillBetweenItem(self.band_lo, self.band_hi, brush=(80, 140, 255, 90))
        self.plot.addItem(self.band)
        self.mean_curve = self.plot.plot(pen=pg.mkPen((80, 140, 255), width=2), name="mean ± std")
        self.truth_curve = self.plot.plot(pen=pg.mkPen((230, 160, 40), width=1.5, style=QtCore.Qt.PenStyle.DashLine), name="ground truth")
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.plot)
        self.line = pg.LineSegmentROI([[0, 0], [1, 1]], pen=pg.mkPen((255, 80, 80), width=2))
        self.line.hide()
        source.plot.addItem(self.line)
        self.line.sigRegionChanged.connect(self._on_line_moved)

    def set_data(self, mean: np.ndarray, std: np.ndarray | None, truth: np.ndarray | None, unit: str = "") -> None:
        first = self.mean is None or self.mean.shape != mean.shape
        self.mean, self.std, self.truth = mean, std, truth
        self.plot.setLabel("left", "value", units=unit or None)
        if first:
            h, w = mean.shape
            self.line.setPos(0, 0)
            handles = self.line.getHandles()
            handles[0].setPos(w * 0.1, h * 0.5)
            handles[1].setPos(w * 0.9, h * 0.5)
        self.line.show()
        self._show_values(True)
        self._on_line_moved()

    def clear(self) -> None:
        """Forget the data and empty the curves: a new measurement's grid may differ, and an old
        profile drawn over it would read as the new one's."""
        self.mean = self.std = self.truth = None
        for curve in (self.mean_curve, self.truth_curve, self.band_hi, self.band_lo):
            curve.setData([], [])
        self.line.hide()
        self._show_values(False)

    def _show_values(self, shown: bool) -> None:
        for axis in ("left", "bottom"):
            self.plot.getAxis(axis).setStyle(showValues=shown)

    def profiles(self) -> dict[str, np.ndarray]:
        """Values along the line for mean, std and truth (those present)."""
        out = {}
        for name, data in (("mean", self.mean), ("std", self.std), ("truth", self.truth)):
            if data is not None:
                region = self.line.getArrayRegion(np.asarray(data, np.float32), self.source.image)
                out[name] = np.asarray(region, np.float32)
        return out

    def _on_line_moved(self, *_):
        if self.mean is None:
            return
        p = self.profiles()
        t = np.arange(len(p["mean"]))
        self.mean_curve.setData(t, p["mean"])
        if "std" in p and len(p["std"]) == len(t):
            self.band_hi.setData(t, p["mean"] + p["std"])
            self.band_lo.setData(t, p["mean"] - p["std"])
        else:  # a band left from an earlier result would pass for this one's
            self.band_hi.setData([], [])
            self.band_lo.setData([], [])
        if "truth" in p:
            self.truth_curve.setData(t, p["truth"])
        else:
            self.truth_curve.setData([], [])
