"""A/B comparison of two results, as silx's CompareImages does it: a swipe view (a draggable
divider with A on its left and the current result B on its right) and the difference A − B on a
symmetric colour map, so that zero is the neutral colour and the sign reads at a glance."""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from .image_panel import ImagePanel

HINT = "Pin a result as A (Compare menu, Ctrl+Shift+P) or open a result file as A; the current result is B."


def swipe_composite(a: np.ndarray, b: np.ndarray, divider: float) -> np.ndarray:
    """Columns left of ``divider`` from ``a``, the rest from ``b`` (same shape)."""
    out = np.array(b, dtype=np.float32, copy=True)
    cut = int(np.clip(round(divider), 0, a.shape[1]))
    out[:, :cut] = a[:, :cut]
    return out


class ABView(QtWidgets.QWidget):
    """``set_a`` pins a reference, ``set_b`` follows the current result; both 2-D, same shape."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.a: np.ndarray | None = None
        self.b: np.ndarray | None = None
        self.a_label = self.b_label = ""
        self.a_panel = ImagePanel("A", cmap="CET-L1")
        self.b_panel = ImagePanel("B", cmap="CET-L1")
        self.swipe = ImagePanel("Swipe: A | B", cmap="CET-L1")
        self.difference = ImagePanel("A − B", cmap="CET-D1", symmetric=True)
        self.divider = pg.InfiniteLine(pos=0, angle=90, movable=True,
                                       pen=pg.mkPen((255, 200, 0), width=2), hoverPen=pg.mkPen((255, 255, 0), width=3))
        self.divider.hide()
        self.swipe.plot.addItem(self.divider)
        self.hint = QtWidgets.QLabel(HINT)
        self.hint.setWordWrap(True)
        grid = QtWidgets.QGridLayout(self)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.addWidget(self.swipe, 0, 0)
        grid.addWidget(self.difference, 0, 1)
        grid.addWidget(self.a_panel, 1, 0)
        grid.addWidget(self.b_panel, 1, 1)
        grid.addWidget(self.hint, 2, 0, 1, 2)
        self.divider.sigPositionChanged.connect(self._on_divider_moved)

    def panels(self) -> tuple[ImagePanel, ...]:
        return self.swipe, self.difference, self.a_panel, self.b_panel

    # ------------------------------------------------------------------ model -> view
    def set_a(self, image: np.ndarray, label: str = "A") -> None:
        self.a, self.a_label = np.asarray(image, dtype=np.float32), label
        self.a_panel.set_image(self.a)
        self.a_panel.set_title(f"A: {label}")
        self._refresh(recentre=True)

    def set_b(self, image: np.ndarray | None, label: str = "B") -> None:
        self.b = None if image is None else np.asarray(image, dtype=np.float32)
        self.b_label = label
        if self.b is not None:
            self.b_panel.set_image(self.b)
            self.b_panel.set_title(f"B: {label}")
            if self.a is not None:  # one scale for both, or a level shift would look like a difference
                self.b_panel.colorbar.setLevels(self.a_panel.colorbar.levels())
        self._refresh(recentre=False)

    def reset_for_image(self, shape: tuple[int, int]) -> bool:
        """A new measurement: B (the old current result) and A − B go; A stays only if it lies on
        the new ``shape`` (H, W) pixel grid. Returns True when A was dropped for its shape."""
        self.b, self.b_label = None, "B"
        for panel in (self.b_panel, self.swipe, self.difference):
            panel.clear()
        self.b_panel.set_title("B")
        self.swipe.set_title("Swipe: A | B")
        self.difference.set_title("A − B")
        self.divider.hide()
        dropped = self.a is not None and self.a.shape != tuple(shape)
        if dropped:
            self.a, self.a_label = None, ""
            self.a_panel.clear()
            self.a_panel.set_title("A")
        self.hint.setText(HINT)
        self._refresh(recentre=True)
        return dropped

    def set_divider(self, column: float) -> None:
        self.divider.setValue(column)  # the slot redraws

    def divider_column(self) -> int:
        return int(np.clip(round(self.divider.value()), 0, self.a.shape[1] if self.a is not None else 0))

    def comparable(self) -> bool:
        return self.a is not None and self.b is not None and self.a.shape == self.b.shape

    # ------------------------------------------------------------------ internals
    def _refresh(self, recentre: bool) -> None:
        if self.a is not None and self.b is not None and self.a.shape != self.b.shape:
            self.hint.setText(f"A is {self.a.shape[0]}×{self.a.shape[1]} but B is {self.b.shape[0]}×{self.b.shape[1]};"
                              " only results on the same pixel grid can be compared.")
            # a swipe or difference of an earlier pair would pass for this one
            self.divider.hide()
            self.swipe.clear()
            self.difference.clear()
            return
        if not self.comparable():
            if self.a is not None:
                self.swipe.set_image(self.a)
                self.swipe.set_title(f"A: {self.a_label} (waiting for a result B)")
            return
        self.hint.setText(f"A (left of the divider) = {self.a_label};  B (right) = {self.b_label}.  Drag the divider.")
        self.divider.show()
        if recentre or not 0 < self.divider.value() < self.a.shape[1]:
            with QtCore.QSignalBlocker(self.divider):
                self.divider.setValue(self.a.shape[1] / 2)
        self.swipe.set_title("Swipe: A | B")
        self._on_divider_moved()
        self.difference.set_image(self.a - self.b)

    def _on_divider_moved(self, *_):
        if self.comparable():
            levels = self.swipe.colorbar.levels() if self.swipe.data is not None else None
            self.swipe.set_image(swipe_composite(self.a, self.b, self.divider.value()), auto_levels=levels is None)
