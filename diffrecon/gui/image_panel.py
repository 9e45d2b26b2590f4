"""One image panel: a titled pyqtgraph plot with an image, a colour bar with units, a
magnitude/phase/real/imaginary selector when it holds complex data, and (optionally) a slider to
browse a stack such as the posterior samples. The image fills the panel: the view is fitted to
the image on load and on every resize until the user pans or zooms (see ``LinkGroup``). An empty
panel hides its axes (pyqtgraph's default -0.5..0.5 would look like data) and says why it is empty."""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from ..display import robust_levels
from .link_group import LinkGroup
from .views import COMPLEX_MODES, complex_part


class ImagePanel(QtWidgets.QWidget):
    """A titled image with a colour bar; ``set_image`` keeps the levels when ``auto_levels`` is off."""

    hovered = QtCore.Signal(object, int, int)  # panel, row, column under the cursor

    def __init__(self, title: str, *, cmap: str = "viridis", unit: str = "", symmetric: bool = False,
                 stack: bool = False, empty_text: str = "no image yet", parent=None):
        super().__init__(parent)
        self.symmetric = symmetric
        self.data: np.ndarray | None = None  # what is shown: always real float32
        self.source: np.ndarray | None = None  # what was given: complex stays complex
        self.stack: np.ndarray | None = None
        self.empty_shape: tuple[int, int] | None = None  # (H, W) the empty view spans, if known
        self.group = LinkGroup()
        self.group.add(self)
        self._title = title
        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.setMinimumSize(120, 100)
        self.plot = self.graphics.addPlot()
        self.plot.setTitle(title, size="10pt")
        self.plot.setAspectLocked(True)
        self.plot.invertY(True)
        self.plot.hideButtons()
        for axis in ("left", "bottom"):
            self.plot.getAxis(axis).setStyle(tickFont=_small_font())
        self.image = pg.ImageItem()
        self.plot.addItem(self.image)
        self.colorbar = pg.ColorBarItem(values=(0, 1), colorMap=cmap, interactive=True, width=12,
                                        label=unit)
        self.colorbar.setImageItem(self.image, insert_in=self.plot)
        self.colorbar.getAxis("right").setStyle(tickFont=_small_font())
        # physical units like 1/cm must not get SI prefixes ("m1/cm") or a hidden x0.001 factor
        self.colorbar.getAxis("right").enableAutoSIPrefix(False)
        self.placeholder = pg.TextItem(empty_text, color=(128, 128, 128), anchor=(0.5, 0.5))
        self.plot.addItem(self.placeholder, ignoreBounds=True)
        self.mode_box = QtWidgets.QComboBox()
        self.mode_box.addItems(COMPLEX_MODES)
        self.mode_box.setToolTip("Which real view of the complex data to show.")
        self.mode_box.hide()
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addWidget(self.graphics, 1)
        layout.addWidget(self.mode_box)
        self.slider = None
        if stack:
            row = QtWidgets.QHBoxLayout()
            self.slider = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal)
            self.slider.setEnabled(False)
            self.slider_label = QtWidgets.QLabel("–")
            self.slider_label.setMinimumWidth(50)
            row.addWidget(QtWidgets.QLabel("sample"))
            row.addWidget(self.slider, 1)
            row.addWidget(self.slider_label)
            layout.addLayout(row)
            self.slider.valueChanged.connect(self._on_slider)
        self.mode_box.currentTextChanged.connect(self._on_mode_changed)
        self.plot.scene().sigMouseMoved.connect(self._on_mouse_moved)
        self.plot.vb.sigRangeChangedManually.connect(lambda *_: self.group.moved_by_user(self))
        self.plot.vb.sigResized.connect(lambda *_: self.group.resized(self))
        self._set_empty_look(True)

    # ------------------------------------------------------------------ model -> view
    def set_title(self, title: str) -> None:
        self._title = title
        if len(title) > 40 and " · " in title:  # a long title (std map + calibration): a smaller second line
            head, rest = title.split(" · ", 1)
            title = f"{head}<br><span style='font-size:7.5pt'>{rest}</span>"
        self.plot.setTitle(title, size="10pt")

    def title(self) -> str:
        return self._title

    def set_unit(self, unit: str) -> None:
        self.colorbar.setLabel("right", unit)

    def set_image(self, image: np.ndarray, *, auto_levels: bool = True) -> None:
        """Show a 2-D array (real or complex). Streaming callers pass ``auto_levels=False`` so
        levels don't flicker."""
        first = self.data is None or self.data.shape != np.shape(image)
        self.source = np.asarray(image)
        is_complex = np.iscomplexobj(self.source)
        self.mode_box.setVisible(is_complex)
        self._show(auto_levels)
        if first:
            self.group.panel_loaded(self)

    def complex_mode(self) -> str:
        return self.mode_box.currentText()

    def set_complex_mode(self, mode: str) -> None:
        """Choose the view of complex data (one of COMPLEX_MODES); levels follow the new view."""
        if mode not in COMPLEX_MODES:
            raise ValueError(f"unknown complex view {mode!r}; valid views are {', '.join(COMPLEX_MODES)}")
        self.mode_box.setCurrentText(mode)  # the slot redraws

    def set_stack(self, stack: np.ndarray) -> None:
        """A (k, H, W) stack browsed with the slider (the posterior samples)."""
        self.stack = np.asarray(stack, dtype=np.float32)
        if self.slider is None:
            return
        k = len(self.stack)
        with QtCore.QSignalBlocker(self.slider):
            self.slider.setRange(0, max(k - 1, 0))
            self.slider.setValue(0)
        self.slider.setEnabled(k > 1)
        self._on_slider(0)

    def clear(self) -> None:
        self.data = self.source = self.stack = None
        self.image.clear()
        self.mode_box.hide()
        if self.slider is not None:
            self.slider.setEnabled(False)
            self.slider_label.setText("–")
        self._set_empty_look(True)
        self.fit()

    def set_empty_shape(self, shape: tuple[int, int] | None, text: str | None = None) -> None:
        """While empty, span an image of ``shape`` (H, W), so the panel already has the proportions
        of the result to come, and say ``text`` in its middle."""
        self.empty_shape = None if shape is None else (int(shape[0]), int(shape[1]))
        if text is not None:
            self.placeholder.setText(text)
        if self.data is None:
            self.fit()

    def fit(self) -> None:
        """Fit this view to the image (or, while empty, to ``empty_shape``); the aspect lock keeps
        pixels square."""
        h, w = self.data.shape if self.data is not None else (self.empty_shape or (1, 1))
        self.plot.vb.setRange(xRange=(0, w), yRange=(0, h), padding=0)
        if self.data is None:
            self.placeholder.setPos(w / 2, h / 2)

    def show_full(self) -> None:
        """Zoom every panel of this panel's link group to its whole image."""
        self.group.fit_all()

    def link_to(self, other: "ImagePanel") -> None:
        """Pan and zoom together with ``other`` (same pixel grid)."""
        other.group.merge(self.group)

    def apply_theme(self, background, foreground) -> None:
        self.graphics.setBackground(background)
        for axis in ("left", "bottom"):
            self.plot.getAxis(axis).setPen(foreground)
            self.plot.getAxis(axis).setTextPen(foreground)
        bar_axis = self.colorbar.getAxis("right")
        bar_axis.setPen(foreground)
        bar_axis.setTextPen(foreground)
        self.plot.titleLabel.setAttr("color", foreground)
        self.placeholder.setColor(foreground)
        self.plot.titleLabel.setText(self._title)

    # ------------------------------------------------------------------ internals and slots
    def _set_empty_look(self, empty: bool) -> None:
        for axis in ("left", "bottom"):
            self.plot.showAxis(axis, not empty)
        self.colorbar.setVisible(not empty)  # a bar from 0 to 1 over nothing would be read as data
        self.placeholder.setVisible(empty)

    def _show(self, auto_levels: bool) -> None:
        if self.placeholder.isVisible():
            self._set_empty_look(False)
        mode = self.complex_mode() if np.iscomplexobj(self.source) else "magnitude"
        self.data = complex_part(self.source, mode)
        if auto_levels:
            lo, hi = (-np.pi, np.pi) if mode == "phase" else robust_levels(self.data, self.symmetric)
            self.image.setImage(self.data, autoLevels=False, levels=(lo, hi))
            self.colorbar.setLevels((lo, hi))
        else:
            self.image.setImage(self.data, autoLevels=False)

    def _on_mode_changed(self, _mode: str) -> None:
        if self.source is not None:
            self._show(auto_levels=True)

    def _on_slider(self, index: int) -> None:
        if self.stack is None or not len(self.stack):
            return
        self.slider_label.setText(f"{index + 1} / {len(self.stack)}")
        self.set_image(self.stack[index], auto_levels=self.data is None)

    def _on_mouse_moved(self, pos) -> None:
        if self.data is None or not self.plot.sceneBoundingRect().contains(pos):
            return
        p = self.plot.vb.mapSceneToView(pos)
        row, col = int(np.floor(p.y())), int(np.floor(p.x()))
        if 0 <= row < self.data.shape[0] and 0 <= col < self.data.shape[1]:
            self.hovered.emit(self, row, col)


def _small_font():
    from PySide6 import QtGui

    font = QtGui.QFont()
    font.setPointSize(8)
    return font
