"""Run ▸ Calibrate std: ``diffrecon calibrate`` for the window's current settings, in the one
worker idiom (a :class:`~diffrecon.gui.worker.RunWorker` iterating a generator; Stop ends it
after the current solver step and nothing is stored)."""
from __future__ import annotations

import functools

from PySide6 import QtWidgets

from ..calibrate import DEFAULT_IMAGES, calibrate
from ..calibration import Calibration
from .worker import RunWorker

MAX_IMAGES = 64
TRUTHS_FILTER = "Image stacks (*.h5 *.hdf5 *.tif *.tiff *.png)"


class CalibrateDialog(QtWidgets.QDialog):
    """How many simulated measurements, and optionally the user's own images as their truths
    (left empty: held-out procedural phantoms, or draws of an exact prior)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Calibrate std")
        self.images = QtWidgets.QSpinBox(minimum=2, maximum=MAX_IMAGES, value=DEFAULT_IMAGES)
        self.truths = QtWidgets.QLineEdit(placeholderText="empty: held-out phantoms", minimumWidth=260)
        row = QtWidgets.QHBoxLayout()
        row.addWidget(self.truths, 1)
        row.addWidget(QtWidgets.QPushButton("File…", clicked=self._pick_file))
        row.addWidget(QtWidgets.QPushButton("Folder…", clicked=self._pick_folder))
        form = QtWidgets.QFormLayout(self)
        form.addRow(QtWidgets.QLabel("Truth images are measured with this file's forward model and noise, then\n"
                                     "reconstructed with the current solver settings, K samples each."))
        form.addRow("Simulated measurements:", self.images)
        form.addRow("Calibration images:", row)
        form.addRow(QtWidgets.QLabel("Your own images (a folder of PNG/TIFF, a TIFF or an HDF5 stack) make the\n"
                                     "factor hold for images like them."))
        buttons = QtWidgets.QDialogButtonBox(QtWidgets.QDialogButtonBox.StandardButton.Ok
                                             | QtWidgets.QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def _pick_file(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Calibration images", "", TRUTHS_FILTER)
        if path:
            self.truths.setText(path)

    def _pick_folder(self) -> None:
        path = QtWidgets.QFileDialog.getExistingDirectory(self, "Folder of calibration images (PNG, TIFF)")
        if path:
            self.truths.setText(path)


class CalibrationRunner:
    """Starts a calibration for ``window`` and reports it in the window's status and log."""

    def __init__(self, window):
        self.window = window
        self.last: Calibration | None = None
        self.calibrate_fn = calibrate  # tests substitute a cheaper one

    def ask_and_start(self) -> bool:
        dialog = CalibrateDialog(self.window)
        if dialog.exec() != QtWidgets.QDialog.DialogCode.Accepted:
            return False
        return self.start(dialog.images.value(), dialog.truths.text().strip() or None)

    def start(self, images: int = DEFAULT_IMAGES, truths: str | None = None) -> bool:
        """Calibrate on ``images`` phantoms (or prior draws), or on up to ``images`` of the images at
        ``truths`` (a folder, an image file or an HDF5 stack)."""
        w = self.window
        measurement = w.measurement_to_run("a calibration")
        if measurement is None:
            return False
        config = w.solver.config()
        run = functools.partial(self.calibrate_fn, images=images, truths=truths)
        w.worker = worker = RunWorker(measurement, config, run, w)
        worker.progress.connect(w.status.show_progress)
        worker.log.connect(w.log)
        worker.finished_result.connect(self._on_done)
        worker.failed.connect(self._on_failed)
        worker.finished.connect(w._update_enabled)
        w.status.start_progress(None)
        worker.start()
        w.show_message(f"Calibrating {config.solver} ({config.steps} steps) on {images} simulated measurements "
                       f"× {config.samples} samples{' of your images' if truths else ''}…")
        w._update_enabled()
        return True

    def _on_done(self, cal: Calibration | None) -> None:
        self.window.status.end_progress(cal is not None)
        if cal is None:
            self.window.show_message("Calibration stopped; nothing was stored.")
            return
        self.last = cal
        text = (f"Calibrated std × {cal.scale:.3g}: coverage {cal.coverage:.2f} before, {cal.status()}; "
                "reconstructions with these settings now apply it.")
        self.window.show_message(text)
        self.window.log(text)

    def _on_failed(self, message: str) -> None:
        self.window.status.end_progress(False)
        self.window.report_error(message)
