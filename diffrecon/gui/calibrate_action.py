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


class CalibrationRunner:
    """Starts a calibration for ``window`` and reports it in the window's status and log."""

    def __init__(self, window):
        self.window = window
        self.last: Calibration | None = None
        self.calibrate_fn = calibrate  # tests substitute a cheaper one

    def ask_and_start(self) -> bool:
        images, ok = QtWidgets.QInputDialog.getInt(
            self.window, "Calibrate std",
            "Simulated measurements (held-out images, measured with this file's forward model and noise)\n"
            "to run the current solver settings on, K samples each:", DEFAULT_IMAGES, 2, MAX_IMAGES)
        return self.start(images) if ok else False

    def start(self, images: int = DEFAULT_IMAGES) -> bool:
        w = self.window
        measurement = w.measurement_to_run("a calibration")
        if measurement is None:
            return False
        config = w.solver.config()
        run = functools.partial(self.calibrate_fn, images=images)
        w.worker = worker = RunWorker(measurement, config, run, w)
        worker.progress.connect(w.status.show_progress)
        worker.log.connect(w.log)
        worker.finished_result.connect(self._on_done)
        worker.failed.connect(self._on_failed)
        worker.finished.connect(w._update_enabled)
        w.status.start_progress(None)
        worker.start()
        w.show_message(f"Calibrating {config.solver} ({config.steps} steps) on {images} simulated measurements "
                       f"× {config.samples} samples…")
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
