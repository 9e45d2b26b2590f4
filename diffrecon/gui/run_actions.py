"""The window's run commands and the run job's events: start, stop, finish now, predict, wait;
previews, statistics and the outcome. A mixin so main_window.py stays a wiring file."""
from __future__ import annotations

import time

import numpy as np
from PySide6 import QtCore, QtWidgets

from ..calibration import std_title as std_panel_title
from ..engine import RunConfig
from ..errors import DiffreconError
from ..guard import summary
from ..measurement import Measurement, Result
from ..runtime import resolve_device
from . import run_owner
from .divergence_banner import label_panels
from .run_control import FINISH
from .worker import RunWorker


def _memory_device(name: str) -> str:
    """The device whose memory the status bar shows during a run of ``config.device`` ``name``
    (``auto`` resolved as the engine resolves it; a name the engine will refuse shows the CPU)."""
    try:
        return str(resolve_device(name))
    except DiffreconError:
        return "cpu"


class RunActions:
    """Needs the window's panels, ``self.session``, ``self.status`` and ``self.run_record``."""

    def is_running(self) -> bool:
        return self.worker is not None and self.worker.running()

    def measurement_to_run(self, what: str = "a run") -> Measurement | None:
        """The edited measurement, or None when nothing can start now (a bad noise σ is reported)."""
        if self.is_running() or self.session.measurement is None:
            return None
        measurement = self.forward.edited_measurement()
        if measurement is None:
            self.report_error(f"Noise σ must be a finite number ≥ 0 before {what} can start.")
        return measurement

    def start_run(self, config: RunConfig | None = None) -> bool:
        measurement = self.measurement_to_run()
        if measurement is None:
            return False
        config = config or self.solver.config()
        self.session.remember_config(config)
        self.solver.save_settings(self.settings)
        self.plan_panel.cancel()  # a probe beside the run would slow it and skew its time and memory
        self._device = _memory_device(config.device)
        self.session.set_result(None)  # a previous run's numbers never stand beside the new (empty) result
        self.run_record.start()
        self.banner.clear()
        self.view.begin_run(self.solver.is_deterministic())
        self.status.start_progress(self.plan_panel.predicted_seconds(measurement, config))
        self.worker = worker = RunWorker(measurement, config, self.engine_run, self)
        worker.planned.connect(self._on_planned)
        worker.replanned.connect(self._on_replanned)
        worker.progress.connect(self.status.show_progress)
        worker.preparing.connect(self.status.show_preparing)
        worker.preview.connect(self._on_preview)
        worker.statistics.connect(self._on_statistics)
        worker.diverged.connect(self._on_diverged)
        worker.log.connect(self.log)
        worker.log.connect(self.run_record.note)
        worker.warned.connect(self._on_warned)
        worker.stopped_empty.connect(self._on_stopped_empty)
        worker.finished_result.connect(self._on_finished)
        worker.failed.connect(self._on_failed)
        worker.finished.connect(self._update_enabled)
        self._run_done = False
        worker.start()
        self.show_message(f"Running {config.solver}: {config.steps} steps × {config.samples} samples…")
        self.log(f"Run: solver={config.solver} steps={config.steps} samples={config.samples} "
                 f"seed={config.seed} device={config.device} prior={config.prior}")
        self._update_enabled()
        return True

    def stop_run(self, how: str | None = None) -> None:
        """Stop at the next step, keeping the finished samples; ``how`` FINISH (the Finish now
        button) also keeps the batch in progress, finished by a final denoising step."""
        if not self.is_running():
            return
        self.worker.request_stop(finish=how == FINISH)
        self.show_message("Stopping: finishing the samples in progress with a final denoising step…" if how == FINISH
                          else "Stopping after the current step; finished samples are kept…")

    def wait_for_run(self, timeout_ms: int = 60000) -> bool:
        """Process events until the run has delivered its result or failure (scripts, screenshots)."""
        deadline = time.monotonic() + timeout_ms / 1000
        while not self._run_done:
            QtWidgets.QApplication.processEvents(QtCore.QEventLoop.ProcessEventsFlag.AllEvents, 50)
            if time.monotonic() > deadline:
                return False
        if self.worker is not None:
            self.worker.wait(5000)
        QtWidgets.QApplication.processEvents()
        return True

    def predict(self) -> None:
        """Predict time and memory of the current settings now (off the GUI thread)."""
        if self.session.measurement is not None and not self.is_running():
            self.plan_panel.predict_now(self.forward.edited_measurement(), self.solver.config())

    def calibrate_dialog(self) -> None:
        """Run ▸ Calibrate std: how far these settings' std is off, stored for later runs."""
        self.calibration.ask_and_start()

    def _stop_run_of_other_measurement(self, _event=None) -> None:
        if self.is_running():  # its result belongs to the measurement it started on
            run_owner.abandon(self.worker)
            self.worker, self._run_done = None, True
            self.status.end_progress(False)
            self.log("Stopped the running reconstruction: another measurement is shown now.")

    # ------------------------------------------------------------------ the run job's events
    def _on_planned(self, planned) -> None:
        self.status.set_batches(planned.batches)
        self.view.panels["std"].set_title(std_panel_title(planned.spread, planned.calibration))

    def _on_replanned(self, event) -> None:
        self.status.set_batches(list(event.batches))
        self.log(f"Re-planned into batches {list(event.batches)}: {event.reason}", "warning")

    def _on_warned(self, args) -> None:
        """A Python warning raised during the run (superqt hands over showwarning's arguments)."""
        self.log(f"{args[1].__name__}: {args[0]}", "warning")

    def _on_preview(self, event) -> None:
        self.view.show_preview(event.x0_hat, event.step, event.sample_index)

    def _on_statistics(self, event) -> None:
        self.view.show_statistics(event.mean, event.std, event.samples_done)
        self.roi.set_maps(self.view.mean, self.view.std)

    def _on_diverged(self, event) -> None:
        self.banner.show_text(event.message)
        self.log(event.message, "warning")

    def _on_finished(self, result: Result) -> None:
        self._run_done = True
        self.session.set_result(result)
        self.run_finished.emit(result)

    def _show_outcome(self, result: Result, from_file: bool) -> None:
        """The status, banner and log lines of a result now shown (the panels show it themselves)."""
        self.status.end_progress(result.complete)
        self.progress_label.setText(f"samples {result.n_samples}/{result.provenance.get('samples', result.n_samples)}"
                                    f" · NFE {result.metrics.get('nfe', 0):.0f}")
        if not (np.isfinite(result.mean).all() and np.isfinite(result.std).all()):
            self.report_error("The result contains NaN or infinite values; try fewer steps, a smaller "
                              "step size or fp32 precision.")
        elif self.banner.show_result(result):
            label_panels(self.view, result)
            self.report_error(summary(result))
        else:
            done = "finished" if result.complete else f"stopped early with {result.n_samples} finished samples"
            final = result.provenance.get("final_denoising_step")
            if final:
                done = f"stopped at step {final}: {result.n_samples} samples finished by a final denoising step"
                self.view.panels["mean"].set_title(f"Mean · {result.n_samples} (final denoising step at {final})")
                self.view.panels["std"].set_title("Spread (early finish, not posterior std)")
            self.show_message(f"Reconstruction {done}.")
        if not from_file:  # a result opened from a file is no run of this window
            self.log(self.run_record.end_line("finished" if result.complete else "stopped", result))
        self._update_enabled()

    def _on_stopped_empty(self) -> None:
        self._run_done = True
        self.show_message("Stopped before any sample finished; there is nothing to show (Finish now keeps the "
                          "samples in progress, by a final denoising step).")
        self.progress_label.setText("stopped")
        self.status.end_progress(False)
        self.log(self.run_record.end_line("stopped before any sample finished"))
        self._update_enabled()
        self.run_finished.emit(None)

    def _on_failed(self, message: str) -> None:
        self._run_done = True
        self.report_error(message)
        self.log(self.run_record.end_line("failed"))
        self.progress_label.setText("failed")
        self.status.end_progress(False)
        self._update_enabled()
        self.run_finished.emit(None)
