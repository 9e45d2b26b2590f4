"""ROI statistics: a rectangle on the posterior-mean panel, mirrored on the std panel, and a
small table with the mean, std, min and max of both maps inside it (whole pixels only, so the
numbers are exactly those of the numpy slice ``map[r0:r1, c0:c1]``)."""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from .image_panel import ImagePanel

COLUMNS = ("mean", "std", "min", "max")


def region_stats(image: np.ndarray, bounds: tuple[int, int, int, int]) -> tuple[float, float, float, float]:
    """(mean, std, min, max) of ``image[r0:r1, c0:c1]``; NaN for an empty region."""
    r0, r1, c0, c1 = bounds
    region = np.asarray(image, dtype=np.float64)[r0:r1, c0:c1]
    if region.size == 0:
        return (float("nan"),) * 4
    return float(region.mean()), float(region.std()), float(region.min()), float(region.max())


class RoiStats(QtWidgets.QWidget):
    """Attach to the mean and std panels; ``set_maps`` gives it the arrays to measure."""

    def __init__(self, mean_panel: ImagePanel, std_panel: ImagePanel, parent=None):
        super().__init__(parent)
        self.maps: dict[str, np.ndarray] = {}
        pen = pg.mkPen((0, 220, 120), width=2)
        options = dict(pen=pen, snapSize=1.0, translateSnap=True, scaleSnap=True)
        self.roi = pg.RectROI([0, 0], [1, 1], **options)
        self.mirror = pg.RectROI([0, 0], [1, 1], **options)
        for roi, panel in ((self.roi, mean_panel), (self.mirror, std_panel)):
            roi.hide()
            panel.plot.addItem(roi)
        # statistics down, maps across: two value columns fit a narrow dock
        self.table = QtWidgets.QTableWidget(len(COLUMNS), 2)
        self.table.setVerticalHeaderLabels(list(COLUMNS))
        self.table.setHorizontalHeaderLabels(["mean map", "std map"])
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(QtWidgets.QHeaderView.ResizeMode.Stretch)
        self.table.setMaximumHeight(150)
        self.label = QtWidgets.QLabel("Drag the green rectangle on the mean (or std) panel.")
        self.label.setWordWrap(True)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.label)
        layout.addWidget(self.table)
        self.roi.sigRegionChanged.connect(lambda: self._on_roi_moved(self.roi, self.mirror))
        self.mirror.sigRegionChanged.connect(lambda: self._on_roi_moved(self.mirror, self.roi))

    # ------------------------------------------------------------------ model -> view
    def set_maps(self, mean: np.ndarray, std: np.ndarray | None) -> None:
        reshape = not self.maps or self.maps["mean"].shape != np.shape(mean)
        self.maps = {"mean": np.asarray(mean)}
        if std is not None and np.shape(std) == np.shape(mean):
            self.maps["std"] = np.asarray(std)
        if reshape:  # the central quarter of a new image
            h, w = self.maps["mean"].shape
            self.set_bounds((h // 4, h - h // 4, w // 4, w - w // 4))
        self.roi.show()
        self.mirror.show()
        self._update_table()

    def set_bounds(self, bounds: tuple[int, int, int, int]) -> None:
        """Place the rectangle on rows r0:r1 and columns c0:c1."""
        r0, r1, c0, c1 = bounds
        with QtCore.QSignalBlocker(self.mirror):
            self.mirror.setPos((c0, r0), update=False)
            self.mirror.setSize((c1 - c0, r1 - r0))
        self.roi.setPos((c0, r0), update=False)
        self.roi.setSize((c1 - c0, r1 - r0))  # emits sigRegionChanged: table follows

    def bounds(self) -> tuple[int, int, int, int]:
        """(r0, r1, c0, c1) of the rectangle, clipped to the image."""
        x, y = (float(v) for v in self.roi.pos())
        w, h = (float(v) for v in self.roi.size())
        rows, cols = self.maps["mean"].shape if self.maps else (0, 0)
        r0, c0 = int(np.clip(round(y), 0, rows)), int(np.clip(round(x), 0, cols))
        r1, c1 = int(np.clip(round(y + h), r0, rows)), int(np.clip(round(x + w), c0, cols))
        return r0, r1, c0, c1

    def stats(self) -> dict[str, tuple[float, float, float, float]]:
        """{"mean": (mean, std, min, max) of the mean map, "std": ... of the std map}."""
        b = self.bounds()
        return {name: region_stats(image, b) for name, image in self.maps.items()}

    def clear(self) -> None:
        self.maps = {}
        self.roi.hide()
        self.mirror.hide()
        self.table.clearContents()

    # ------------------------------------------------------------------ slots
    def _on_roi_moved(self, source, target) -> None:
        with QtCore.QSignalBlocker(target):
            target.setPos(source.pos(), update=False)
            target.setSize(source.size())
        if self.maps:
            self._update_table()

    def _update_table(self) -> None:
        r0, r1, c0, c1 = self.bounds()
        self.label.setText(f"ROI rows {r0}:{r1}, columns {c0}:{c1} ({(r1 - r0) * (c1 - c0)} pixels)")
        stats = self.stats()
        for col, name in enumerate(("mean", "std")):
            values = stats.get(name)
            for row in range(len(COLUMNS)):
                text = "–" if values is None else f"{values[row]:.4g}"
                self.table.setItem(row, col, QtWidgets.QTableWidgetItem(text))
