"""A volume's mean and std as three orthogonal slices (axial, coronal, sagittal), side by side or
one at a time, with a slice slider per view, a crosshair cursor shared by all views (click a view,
drag its lines, or move a slider) and a profile of mean ± std (and ground truth) along z, y or x
through the cursor. Coronal and sagittal views are stretched along z by the slice distance over
the pixel size, so structures keep their proportions; colour levels hold for the whole volume,
so scrolling through slices keeps one colour scale."""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from ..display import robust_levels
from .image_panel import ImagePanel

#: view name -> (the axis it cuts, its row axis, its column axis); axes 0, 1, 2 are z, y, x.
VIEWS = {"axial": (0, 1, 2), "coronal": (1, 0, 2), "sagittal": (2, 0, 1)}
AXIS_NAMES = "zyx"
QUANTITIES = ("mean", "std")
SHOW = ("mean and std", "mean", "std")
LEVEL_VOXELS = 1 << 20
AXIS_WIDTH = 44  # pixels: the left axis of a slice view, its ticks and its name


def orthogonal_slice(volume: np.ndarray, view: str, index: int, channel: int = 0) -> np.ndarray:
    """The 2-D cut of ``volume`` (Z, C, H, W) in ``view`` at ``index`` along the axis it cuts:
    axial ``[z]`` (H, W), coronal ``[:, y, :]`` (Z, W), sagittal ``[:, :, x]`` (Z, H)."""
    v = np.asarray(volume)[:, channel]
    return v[index] if view == "axial" else v[:, index, :] if view == "coronal" else v[:, :, index]


def profile_along(volume: np.ndarray, axis: int, cursor: tuple[int, int, int], channel: int = 0) -> np.ndarray:
    """The values of ``volume`` (Z, C, H, W) along ``axis`` (0 z, 1 y, 2 x) through ``cursor`` (z, y, x)."""
    index: list = list(cursor)
    index[axis] = slice(None)
    return np.asarray(volume)[:, channel][tuple(index)]


class SliceView(ImagePanel):
    """An image panel whose rows may be taller than its columns are wide (``aspect``: the view's
    aspect lock, so the axes still count rows and columns), with a crosshair; ``clicked(row, col)``
    when the user clicks or drags the crosshair."""

    clicked = QtCore.Signal(int, int)

    def __init__(self, title: str, **kw):
        super().__init__(title, **kw)
        self.aspect = 1.0
        # a fixed width: with the aspect lock, tick labels of another width would resize the view,
        # which changes the range and the labels again, and the view would be re-laid out forever
        self.plot.getAxis("left").setWidth(AXIS_WIDTH)
        pen = pg.mkPen((255, 90, 90, 200), width=1)
        self.vline = pg.InfiniteLine(angle=90, movable=True, pen=pen)
        self.hline = pg.InfiniteLine(angle=0, movable=True, pen=pen)
        for line in (self.vline, self.hline):
            line.hide()
            self.plot.addItem(line, ignoreBounds=True)
            line.sigDragged.connect(self._on_line_dragged)
        self.plot.scene().sigMouseClicked.connect(self._on_click)

    def set_aspect(self, aspect: float) -> None:
        self.aspect = float(aspect)
        self.plot.setAspectLocked(True, ratio=1.0 / self.aspect)

    def set_cross(self, row: int, col: int) -> None:
        with QtCore.QSignalBlocker(self.vline), QtCore.QSignalBlocker(self.hline):
            self.vline.setValue(col + 0.5)
            self.hline.setValue(row + 0.5)
        self.vline.show()
        self.hline.show()

    def cross(self) -> tuple[int, int]:
        """(row, col) the crosshair marks."""
        return self._cell(self.hline.value(), self.vline.value())

    def _cell(self, y: float, x: float) -> tuple[int, int]:
        h, w = self.data.shape
        return (int(np.clip(np.floor(y), 0, h - 1)), int(np.clip(np.floor(x), 0, w - 1)))

    def _on_line_dragged(self, *_):
        if self.data is not None:
            self.clicked.emit(*self.cross())

    def _on_click(self, event) -> None:
        if self.data is None or event.button() != QtCore.Qt.MouseButton.LeftButton:
            return
        if not self.plot.sceneBoundingRect().contains(event.scenePos()):
            return
        p = self.plot.vb.mapSceneToView(event.scenePos())
        h, w = self.data.shape
        if 0 <= p.y() < h and 0 <= p.x() < w:
            self.clicked.emit(*self._cell(p.y(), p.x()))

    def _on_mouse_moved(self, pos) -> None:
        if self.data is None or not self.plot.sceneBoundingRect().contains(pos):
            return
        p = self.plot.vb.mapSceneToView(pos)
        h, w = self.data.shape
        if 0 <= p.y() < h and 0 <= p.x() < w:
            self.hovered.emit(self, *self._cell(p.y(), p.x()))


class VolumeView(QtWidgets.QWidget):
    """``set_volume(mean, std, ...)`` shows a volume; ``set_cursor((z, y, x))`` moves the cursor."""

    cursor_moved = QtCore.Signal(object)  # (z, y, x)
    hovered_text = QtCore.Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.volumes: dict[str, np.ndarray | None] = {"mean": None, "std": None}
        self.truth: np.ndarray | None = None
        self.cursor = (0, 0, 0)
        self.channel = 0
        self.mean_title = "mean"
        self._levels: dict[str, tuple[float, float]] = {}
        self._drawn: dict[str, int] = {}  # view -> the index it shows
        self.spacing = (1.0, 1.0, 1.0)  # z, y, x in ``length_unit``
        self.length_unit, self.units = "px", ""
        self.panels: dict[tuple[str, str], SliceView] = {}
        self.sliders: dict[str, QtWidgets.QSlider] = {}
        self.slider_labels: dict[str, QtWidgets.QLabel] = {}
        grid = QtWidgets.QGridLayout()
        grid.setSpacing(4)
        grid.setHorizontalSpacing(14)
        for col, view in enumerate(VIEWS):
            for row, q in enumerate(QUANTITIES):
                panel = SliceView(f"{q} · {view}", cmap="inferno" if q == "std" else "viridis",
                                  empty_text="no reconstruction yet" if q == "std" else "no volume yet")
                _axis, rows, cols = VIEWS[view]
                panel.plot.setLabel("left", AXIS_NAMES[rows])
                panel.plot.setLabel("bottom", AXIS_NAMES[cols])
                panel.clicked.connect(lambda r, c, v=view: self._on_clicked(v, r, c))
                panel.hovered.connect(lambda _p, r, c, v=view, q=q: self._on_hovered(v, q, r, c))
                grid.addWidget(panel, row, col)
                self.panels[q, view] = panel
            self.panels["mean", view].link_to(self.panels["std", view])
            slider = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal, enabled=False)
            slider.valueChanged.connect(lambda i, v=view: self._on_slider(v, i))
            label = QtWidgets.QLabel("–", minimumWidth=110)
            row_box = QtWidgets.QHBoxLayout()
            row_box.addWidget(QtWidgets.QLabel(f"{view} {AXIS_NAMES[VIEWS[view][0]]}"))
            row_box.addWidget(slider, 1)
            row_box.addWidget(label)
            grid.addLayout(row_box, len(QUANTITIES), col)
            self.sliders[view], self.slider_labels[view] = slider, label
        self.show_box = QtWidgets.QComboBox()
        self.show_box.addItems(SHOW)
        self.show_box.setToolTip("Show the mean and the std side by side, or one of them.")
        self.show_box.currentTextChanged.connect(self.set_shown)
        self.channel_box = QtWidgets.QSpinBox(minimum=0, maximum=0, prefix="channel ")
        self.channel_box.valueChanged.connect(self.set_channel)
        self.channel_box.hide()
        self.axis_box = QtWidgets.QComboBox()
        self.axis_box.addItems([f"profile along {a}" for a in AXIS_NAMES])
        self.axis_box.currentIndexChanged.connect(lambda *_: self._update_profile())
        self.cursor_label = QtWidgets.QLabel("")
        controls = QtWidgets.QHBoxLayout()
        for w in (self.show_box, self.channel_box, self.axis_box):
            controls.addWidget(w)
        controls.addWidget(self.cursor_label, 1)
        self.profile = pg.PlotWidget()
        self.profile.setMinimumHeight(150)
        self.profile.addLegend(offset=(5, 5))
        for axis in ("left", "bottom"):
            self.profile.getAxis(axis).enableAutoSIPrefix(False)
        self.band_hi, self.band_lo = (pg.PlotCurveItem(pen=pg.mkPen((0, 0, 0, 0))) for _ in range(2))
        for item in (self.band_hi, self.band_lo):
            self.profile.addItem(item)
        self.profile.addItem(pg.FillBetweenItem(self.band_lo, self.band_hi, brush=(80, 140, 255, 90)))
        self.mean_curve = self.profile.plot(pen=pg.mkPen((80, 140, 255), width=2), name="mean ± std")
        self.truth_curve = self.profile.plot(pen=pg.mkPen((230, 160, 40), width=1.5,
                                                          style=QtCore.Qt.PenStyle.DashLine), name="ground truth")
        self.cursor_line = pg.InfiniteLine(angle=90, pen=pg.mkPen((255, 90, 90), width=1))
        self.profile.addItem(self.cursor_line, ignoreBounds=True)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(controls)
        layout.addLayout(grid, 4)
        layout.addWidget(self.profile, 1)

    # ------------------------------------------------------------------ model -> view
    def set_volume(self, mean: np.ndarray, std: np.ndarray | None = None, *, units: str = "",
                   z_spacing: float = 1.0, pixel_size: float = 1.0, pixel_unit: str = "px",
                   truth: np.ndarray | None = None, mean_title: str = "mean") -> None:
        """Show ``mean`` and ``std`` (Z, C, H, W; std None before a reconstruction) with ``truth``
        (Z, C, H, W or None) in the profile; the cursor stays where it was if it still fits."""
        mean = np.asarray(mean, np.float32)
        if mean.ndim != 4:
            raise ValueError(f"a volume is (Z, C, H, W); got shape {mean.shape}")
        self.volumes = {"mean": mean, "std": None if std is None else np.asarray(std, np.float32)}
        self.truth = None if truth is None else np.asarray(truth, np.float32).reshape(mean.shape)
        self.units, self.length_unit = units, pixel_unit
        self.spacing = (float(z_spacing), float(pixel_size), float(pixel_size))
        self.mean_title = mean_title
        self.channel_box.setMaximum(mean.shape[1] - 1)
        self.channel_box.setVisible(mean.shape[1] > 1)
        self.channel = min(self.channel, mean.shape[1] - 1)
        for view, (axis, _r, _c) in VIEWS.items():
            for q in QUANTITIES:
                self.panels[q, view].set_aspect(self.spacing[0] / self.spacing[1] if view != "axial" else 1.0)
                self.panels[q, view].set_unit(units)
            with QtCore.QSignalBlocker(self.sliders[view]):
                self.sliders[view].setRange(0, mean.shape[axis + 1 if axis else 0] - 1)
            self.sliders[view].setEnabled(True)
        shape = (mean.shape[0], mean.shape[2], mean.shape[3])
        old = self.cursor
        fits = all(0 <= c < n for c, n in zip(old, shape))
        self._levels, self._drawn = {}, {}
        self.set_cursor(old if fits and any(old) else tuple(n // 2 for n in shape), refit=True)

    def clear(self) -> None:
        self.volumes, self.truth = {"mean": None, "std": None}, None
        for panel in self.panels.values():
            panel.clear()
        for slider in self.sliders.values():
            slider.setEnabled(False)
        for curve in (self.mean_curve, self.truth_curve, self.band_hi, self.band_lo):
            curve.setData([], [])

    def set_cursor(self, cursor: tuple[int, int, int], *, refit: bool = False) -> None:
        """Move the cursor to voxel ``(z, y, x)``: every view, slider and the profile follow."""
        mean = self.volumes["mean"]
        if mean is None:
            return
        shape = (mean.shape[0], mean.shape[2], mean.shape[3])
        self.cursor = tuple(int(np.clip(c, 0, n - 1)) for c, n in zip(cursor, shape))
        for view, (axis, r, c) in VIEWS.items():
            with QtCore.QSignalBlocker(self.sliders[view]):
                self.sliders[view].setValue(self.cursor[axis])
            self.slider_labels[view].setText(f"{self.cursor[axis]} of 0–{shape[axis] - 1} "
                                             f"({self.cursor[axis] * self.spacing[axis]:.4g} {self.length_unit})")
            redraw = refit or self._drawn.get(view) != self.cursor[axis]  # a view cut elsewhere is re-cut
            self._drawn[view] = self.cursor[axis]
            for q in QUANTITIES:
                if redraw:
                    self._show_cut(q, view, refit)
                if self.volumes[q] is not None:
                    self.panels[q, view].set_cross(self.cursor[r], self.cursor[c])
        self._update_profile()
        self._update_cursor_label()
        self.cursor_moved.emit(self.cursor)

    def set_shown(self, which: str) -> None:
        """``mean and std`` side by side, or only ``mean`` or ``std``."""
        if which not in SHOW:
            raise ValueError(f"unknown choice {which!r}; valid are {', '.join(SHOW)}")
        if self.show_box.currentText() != which:
            self.show_box.setCurrentText(which)  # comes back here through the signal
            return
        for (q, _view), panel in self.panels.items():
            panel.setVisible(which == "mean and std" or which == q)

    def set_channel(self, channel: int) -> None:
        self.channel = int(channel)
        self._levels, self._drawn = {}, {}
        self.set_cursor(self.cursor)

    def set_profile_axis(self, axis: str) -> None:
        self.axis_box.setCurrentIndex(AXIS_NAMES.index(axis))

    def profile_data(self) -> dict[str, np.ndarray]:
        """Positions (in the length unit) and the mean, std and truth along the profile axis."""
        axis = self.axis_box.currentIndex()
        out = {}
        for name, vol in (("mean", self.volumes["mean"]), ("std", self.volumes["std"]), ("truth", self.truth)):
            if vol is not None:
                out[name] = profile_along(vol, axis, self.cursor, self.channel)
        if out:
            out["position"] = np.arange(len(out["mean"])) * self.spacing[axis]
        return out

    # ------------------------------------------------------------------ internals
    def _show_cut(self, q: str, view: str, refit: bool) -> None:
        vol, panel = self.volumes[q], self.panels[q, view]
        if vol is None:
            panel.clear()
            return
        if q not in self._levels:  # from at most about a million voxels: whole slices, evenly spaced in z
            step = max(1, vol[:, self.channel].size // LEVEL_VOXELS)
            self._levels[q] = robust_levels(vol[::step, self.channel])
        first = panel.data is None or refit
        panel.set_image(orthogonal_slice(vol, view, self.cursor[VIEWS[view][0]], self.channel), auto_levels=False)
        panel.colorbar.setLevels(self._levels[q])
        axis = AXIS_NAMES[VIEWS[view][0]]
        title = self.mean_title if q == "mean" else "std"
        panel.set_title(f"{title} · {view} ({axis} = {self.cursor[VIEWS[view][0]]})")
        if first:
            panel.fit()

    def _update_profile(self) -> None:
        p = self.profile_data()
        if not p:
            return
        index = self.axis_box.currentIndex()
        axis = AXIS_NAMES[index]
        t = p["position"]
        self.mean_curve.setData(t, p["mean"])
        if "std" in p:
            self.band_hi.setData(t, p["mean"] + p["std"])
            self.band_lo.setData(t, p["mean"] - p["std"])
        else:
            self.band_hi.setData([], [])
            self.band_lo.setData([], [])
        self.truth_curve.setData(*((t, p["truth"]) if "truth" in p else ([], [])))
        self.cursor_line.setValue(self.cursor[index] * self.spacing[index])
        self.profile.setLabel("bottom", f"{axis}", units=self.length_unit)
        self.profile.setLabel("left", "value", units=self.units or None)

    def _value_text(self, voxel: tuple[int, int, int]) -> str:
        z, y, x = voxel
        mean, std = self.volumes["mean"], self.volumes["std"]
        text = f"z {z}, y {y}, x {x}: {self.mean_title} {mean[z, self.channel, y, x]:.4g}"
        if std is not None:
            text += f" ± {std[z, self.channel, y, x]:.3g}"
        return f"{text} {self.units}".rstrip()

    def _update_cursor_label(self) -> None:
        self.cursor_label.setText("cursor " + self._value_text(self.cursor))

    def _voxel(self, view: str, row: int, col: int) -> tuple[int, int, int]:
        axis, r, c = VIEWS[view]
        voxel = list(self.cursor)
        voxel[r], voxel[c] = row, col
        return tuple(voxel)

    def _on_clicked(self, view: str, row: int, col: int) -> None:
        self.set_cursor(self._voxel(view, row, col))

    def _on_hovered(self, view: str, _q: str, row: int, col: int) -> None:
        self.hovered_text.emit(self._value_text(self._voxel(view, row, col)))

    def _on_slider(self, view: str, index: int) -> None:
        voxel = list(self.cursor)
        voxel[VIEWS[view][0]] = index
        self.set_cursor(tuple(voxel))
