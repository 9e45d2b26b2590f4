"""The grid of image panels: measurement, direct reconstruction, live estimate, ground truth,
posterior mean, std (or seed spread), samples and error map, with linked pan/zoom over all
panels on the image grid and the value ± std read-out under the cursor."""
from __future__ import annotations

import numpy as np
from PySide6 import QtCore, QtWidgets

from ..calibration import status_text, std_title as std_panel_title
from ..measurement import Measurement, Result
from ..problems import display_of
from .image_panel import ImagePanel
from .ab_view import ABView
from .views import error_map, measurement_views, to_2d

NO_RESULT = "no result yet"
RESULT_PANELS = ("estimate", "mean", "std", "samples", "error")


class ResultView(QtWidgets.QWidget):
    """Model -> view only; it never starts work. ``hovered_text`` carries the read-out.

    Layout: a narrow column of inputs (measurement, direct, ground truth) beside tabs whose first
    page gives a 2 x 2 grid to the result (mean, std, live x̂₀, error or samples) and whose second
    holds the A/B comparison; a splitter lets users trade space between the two."""

    hovered_text = QtCore.Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.unit = ""
        self.previews_shown = 0
        self.panels = {
            "measurement": ImagePanel("Measurement", cmap="CET-L1", empty_text="no measurement open"),
            "direct": ImagePanel("Direct reconstruction", cmap="CET-L1", empty_text="no direct reconstruction"),
            "truth": ImagePanel("Ground truth", cmap="CET-L1"),
            # neutral until a run says what its spread is (a warm-started run's is a seed spread)
            "mean": ImagePanel("Mean", cmap="CET-L1", empty_text=NO_RESULT),
            "std": ImagePanel("Std over samples", cmap="inferno", empty_text=NO_RESULT),
            "estimate": ImagePanel("Current estimate x̂₀", cmap="CET-L1", empty_text=NO_RESULT),
            "samples": ImagePanel("Samples", cmap="CET-L1", stack=True, empty_text=NO_RESULT),
            "error": ImagePanel("Error: mean − truth", cmap="CET-D1", symmetric=True, empty_text=NO_RESULT),
        }
        inputs = QtWidgets.QWidget()
        column = QtWidgets.QVBoxLayout(inputs)
        column.setContentsMargins(0, 0, 0, 0)
        for key in ("measurement", "direct", "truth"):
            column.addWidget(self.panels[key], 1)
        self.corner = QtWidgets.QTabWidget()  # error when there is a ground truth, else samples
        self.corner.setDocumentMode(True)
        self.corner.addTab(self.panels["error"], "Error")
        self.corner.addTab(self.panels["samples"], "Samples")
        result = QtWidgets.QWidget()
        grid = QtWidgets.QGridLayout(result)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setSpacing(4)
        grid.addWidget(self.panels["mean"], 0, 0)
        grid.addWidget(self.panels["std"], 0, 1)
        grid.addWidget(self.panels["estimate"], 1, 0)
        grid.addWidget(self.corner, 1, 1)
        self.ab = ABView()
        self.tabs = QtWidgets.QTabWidget()
        self.tabs.addTab(result, "Result")
        self.tabs.addTab(self.ab, "A/B compare")
        self.splitter = QtWidgets.QSplitter(QtCore.Qt.Orientation.Horizontal)
        self.splitter.addWidget(inputs)
        self.splitter.addWidget(self.tabs)
        self.splitter.setStretchFactor(0, 1)
        self.splitter.setStretchFactor(1, 3)
        self.splitter.setSizes([260, 780])
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.splitter)
        anchor = self.panels["mean"]
        for key, panel in self.panels.items():
            if key != "measurement":  # a sinogram or k-space is not on the image grid
                panel.link_to(anchor)
            panel.hovered.connect(self._on_hovered)
        for panel in self.ab.panels():
            panel.link_to(anchor)
            panel.hovered.connect(self._on_hovered)
        self.clear()

    # ------------------------------------------------------------------ model -> view
    def clear(self) -> None:
        for key, panel in self.panels.items():
            panel.clear()
        self.panels["truth"].hide()
        self.corner.setTabEnabled(0, False)
        self.corner.setCurrentIndex(1)
        self.truth = None
        self.mean = self.std = None

    def show_measurement(self, m: Measurement, reconstruct=None) -> None:
        """``m`` and its direct reconstruction, from ``reconstruct()`` where given (the session's)."""
        self.clear()
        self.unit = m.units
        first, direct = measurement_views(m, reconstruct)
        meas = self.panels["measurement"]
        meas.set_title(first.title)
        meas.set_unit(first.unit)
        meas.set_image(first.image)
        # a sinogram's axes are angle and detector, not pixels; k-space is a grid like the image
        meas.plot.setAspectLocked(np.iscomplexobj(first.image))
        if np.iscomplexobj(first.image):
            meas.set_complex_mode(display_of(m).complex_view or "log magnitude")
        meas.show_full()
        if direct is not None:
            self.panels["direct"].set_title(direct.title)
            self.panels["direct"].set_unit(direct.unit)
            self.panels["direct"].set_image(direct.image)
        for key in ("estimate", "mean", "std", "samples", "error", "truth"):
            self.panels[key].set_unit(m.units)
        if m.ground_truth is not None:
            self.truth = to_2d(m.ground_truth)
            self.panels["truth"].set_image(self.truth)
            self.panels["truth"].show()
            self._levels_from = self.panels["truth"].colorbar.levels()
            self.corner.setTabEnabled(0, True)
        elif direct is not None:
            self._levels_from = self.panels["direct"].colorbar.levels()
        else:
            self._levels_from = None
        # empty result panels take the image's proportions, so the grid does not jump on the first result
        shape = (self.truth if self.truth is not None else direct.image if direct is not None else None)
        shape = np.shape(shape)[-2:] if shape is not None else tuple(m.image_shape[-2:])
        for key in RESULT_PANELS:
            self.panels[key].set_empty_shape(shape)
        self.corner.setCurrentIndex(0 if self.truth is not None else 1)  # the error map needs a truth
        self.panels["direct"].show_full()  # linked: every image-grid panel follows

    def begin_run(self, deterministic: bool) -> None:
        # the Planned event follows at once with the exact label (std_panel_title)
        """Fix the streaming levels once (from the truth or direct image) so previews don't flicker."""
        self.panels["std"].set_title("Seed spread (not posterior std)" if deterministic else "Posterior std")
        for key in RESULT_PANELS:
            self.panels[key].clear()
        self.mean = self.std = None
        if self._levels_from is not None:
            for key in ("estimate", "mean"):
                self.panels[key].colorbar.setLevels(self._levels_from)

    def show_preview(self, x0_hat: np.ndarray, step: int, sample_index: int) -> None:
        self.previews_shown += 1
        panel = self.panels["estimate"]
        first = panel.data is None
        panel.set_image(to_2d(x0_hat), auto_levels=first and self._levels_from is None)
        panel.set_title(f"x̂₀ · sample {sample_index + 1} · step {step}")

    def show_statistics(self, mean: np.ndarray, std: np.ndarray, samples_done: int) -> None:
        self.mean, self.std = to_2d(mean), to_2d(std)
        first = self.panels["mean"].data is None
        self.panels["mean"].set_image(self.mean, auto_levels=first and self._levels_from is None)
        self.panels["std"].set_image(self.std, auto_levels=True)
        self.panels["mean"].set_title(f"Mean · {samples_done} samples")

    def show_result(self, result: Result) -> None:
        self.show_statistics(result.mean, result.std, result.n_samples)
        kind = "Posterior mean" if result.std_is_posterior else "Mean"
        self.panels["mean"].set_title(f"{kind} · {result.n_samples}"
                                      f"{'' if result.complete else ' (stopped)'}")
        self.panels["std"].set_title(std_panel_title(result.spread, status_text(result.provenance)))
        self.panels["mean"].set_image(self.mean, auto_levels=self._levels_from is None)
        if self._levels_from is not None:
            self.panels["mean"].colorbar.setLevels(self._levels_from)
        if result.samples is not None and len(result.samples):
            self.panels["samples"].set_stack(np.stack([to_2d(s) for s in result.samples]))
        truth = self.truth
        if truth is None and result.measurement is not None and result.measurement.ground_truth is not None:
            truth = self.truth = to_2d(result.measurement.ground_truth)
            self.panels["truth"].set_image(truth)
            self.panels["truth"].show()
        err = error_map(self.mean, truth)
        if err is not None:
            self.panels["error"].set_image(err)
            self.corner.setTabEnabled(0, True)
            self.corner.setCurrentIndex(0)
        self.ab.set_b(self.mean, f"{result.provenance.get('solver', 'result')} (current)")

    # ------------------------------------------------------------------ slots
    def _on_hovered(self, panel: ImagePanel, row: int, col: int) -> None:
        value = float(panel.data[row, col])
        text = f"{panel.title().split(' (')[0]} [{row}, {col}] = {value:.4g}"
        if panel is not self.panels["measurement"] and self.mean is not None and self.mean.shape == panel.data.shape:
            text += f"   ·   mean ± std = {self.mean[row, col]:.4g} ± {self.std[row, col]:.3g} {self.unit}"
        self.hovered_text.emit(text)
