"""The main window: open a measurement, set up the forward model and solver, run, read the
result, export. Widgets live in their own files; this file wires them together."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from PySide6 import QtCore, QtGui, QtWidgets

from ..calibration import std_title as std_panel_title
from ..engine import RunConfig
from ..errors import DiffreconError, InputError
from ..guard import metric_notes, summary
from ..measurement import Measurement, Result
from . import export as exporting
from . import closing, gc_guard, run_owner
from .ab_actions import ABActions
from .calibrate_action import CalibrationRunner
from .forward_panel import ForwardPanel
from .hdf5_tree import HDF5Tree
from ..runtime import memory_snapshot, resolve_device
from .memory import format_memory
from .menus import build_menus, compare_window_class
from .metrics_table import MetricsTable
from .divergence_banner import DivergenceBanner, label_panels
from .weight_assistant import AutoWeightButton
from .plan_panel import PlanPanel
from .profile_panel import ProfilePanel
from .result_view import ResultView
from .roi_stats import RoiStats
from .run_control import FINISH, RunRecord, finish_button
from .solver_panel import SolverPanel
from .status_bar import StatusArea
from .theme import SETTINGS_KEY as THEME_KEY
from .theme import THEMES, apply_theme
from .wheel_guard import guard_fields
from .views import config_from_provenance, default_measurement, load_measurement, read_if_result
from .worker import RunWorker, describe_error

MAX_RECENT = 8


def _memory_device(name: str) -> str:
    """The device whose memory the status bar shows during a run of ``config.device`` ``name``
    (``auto`` resolved as the engine resolves it; a name the engine will refuse shows the CPU)."""
    try:
        return str(resolve_device(name))
    except DiffreconError:
        return "cpu"


class MainWindow(ABActions, QtWidgets.QMainWindow):
    run_finished = QtCore.Signal(object)  # the Result, or None after a failure
    CLOSE_WAIT_MS = 3000  # closing waits this long for threads to end their step, then leaves them to end

    def __init__(self, settings: QtCore.QSettings | None = None, engine_run=None, plan_fn=None, parent=None):
        super().__init__(parent)
        gc_guard.install()  # Qt objects in garbage cycles must not be deleted by a worker thread
        gc_guard.register_busy(self.is_running)
        self.settings = settings or QtCore.QSettings("diffrecon", "diffrecon")
        self.engine_run = engine_run  # None: diffrecon.engine.run; tests inject fakes
        self.measurement: Measurement | None = None
        self.result: Result | None = None
        self.worker: RunWorker | None = None
        self.compare_window = None
        self.last_error = ""
        self.run_record = RunRecord()
        self._device = "cpu"
        self._run_done = True
        self._shown = False
        self.setWindowTitle("diffrecon")
        self.setAcceptDrops(True)
        self.resize(1600, 1000)

        self.view = ResultView()
        self.banner = DivergenceBanner()  # over the result: a run that went wrong says so
        self.view.layout().insertWidget(0, self.banner)
        self.setCentralWidget(self.view)
        self.forward = ForwardPanel()
        self.solver = SolverPanel()
        self.solver.restore_settings(self.settings)
        self.auto_weight = AutoWeightButton(lambda: (self.forward.edited_measurement(), self.solver.config()),
                                            self.solver.apply_weight)
        self.auto_weight.status.connect(self.log)
        self.solver.tools.addWidget(self.auto_weight)
        self.solver.changed.connect(lambda: self.auto_weight.set_solver(self.solver.solver_name()))
        self.plan_panel = PlanPanel(plan_fn)
        self.tree = HDF5Tree()
        self.metrics = MetricsTable()
        self.roi = RoiStats(self.view.panels["mean"], self.view.panels["std"])
        self.profile = ProfilePanel(self.view.panels["mean"])
        self.log_view = QtWidgets.QPlainTextEdit(readOnly=True)
        self.log_view.setMaximumBlockCount(5000)
        self._build_setup_dock()
        metrics_dock = self._dock("Metrics", self.metrics, QtCore.Qt.DockWidgetArea.RightDockWidgetArea)
        roi_dock = self._dock("ROI statistics", self.roi, QtCore.Qt.DockWidgetArea.RightDockWidgetArea)
        self.resizeDocks([metrics_dock, roi_dock], [470, 240], QtCore.Qt.Orientation.Vertical)
        self.resizeDocks([metrics_dock], [270], QtCore.Qt.Orientation.Horizontal)
        profile_dock = self._dock("Line profile", self.profile, QtCore.Qt.DockWidgetArea.BottomDockWidgetArea)
        log_dock = self._dock("Log", self.log_view, QtCore.Qt.DockWidgetArea.BottomDockWidgetArea)
        tree_dock = self._dock("File", self.tree, QtCore.Qt.DockWidgetArea.BottomDockWidgetArea)
        self.tabifyDockWidget(profile_dock, log_dock)
        self.tabifyDockWidget(profile_dock, tree_dock)
        profile_dock.raise_()
        self.resizeDocks([profile_dock], [150], QtCore.Qt.Orientation.Vertical)
        self.status = StatusArea(self.statusBar())
        s = self.status  # the labels are window attributes too: scripts and tests read them
        self.message_label, self.pixel_label, self.progress_bar = s.message_label, s.pixel_label, s.progress_bar
        self.progress_label, self.memory_label = s.progress_label, s.memory_label
        self.calibration = CalibrationRunner(self)
        build_menus(self)
        self._fill_recent()
        self.theme = str(self.settings.value(THEME_KEY, "system"))
        self.set_theme(self.theme if self.theme in THEMES else "system")
        hints = QtGui.QGuiApplication.styleHints()
        if hasattr(hints, "colorSchemeChanged"):
            hints.colorSchemeChanged.connect(self._on_system_scheme_changed)

        self.view.hovered_text.connect(self.pixel_label.setText)
        self.forward.changed.connect(self._on_settings_changed)
        self.forward.replaced.connect(self._on_measurement_replaced)
        self.forward.sampling.failed.connect(self.report_error)
        self.solver.changed.connect(self._on_settings_changed)
        self.memory_timer = QtCore.QTimer(self, interval=400, timeout=self._on_memory_tick)
        self.memory_timer.start()
        self._update_enabled()

    # ------------------------------------------------------------------ layout
    def _dock(self, title: str, widget: QtWidgets.QWidget, area) -> QtWidgets.QDockWidget:
        dock = QtWidgets.QDockWidget(title, self)
        dock.setObjectName(title)
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        return dock

    def _build_setup_dock(self) -> None:
        self.run_button = QtWidgets.QPushButton("Reconstruct")
        self.run_button.setStyleSheet("font-weight: bold; padding: 6px;")
        self.stop_button = QtWidgets.QPushButton("Stop")
        self.run_button.clicked.connect(lambda: self.start_run())
        self.stop_button.clicked.connect(lambda: self.stop_run())
        self.finish_button = finish_button(lambda: self.stop_run(FINISH))
        buttons = QtWidgets.QHBoxLayout()
        buttons.addWidget(self.run_button, 2)
        buttons.addWidget(self.stop_button, 1)
        buttons.addWidget(self.finish_button, 1)
        box = QtWidgets.QWidget()
        layout = QtWidgets.QVBoxLayout(box)
        groups = {}
        for title, widget in (("Forward model", self.forward), ("Solver", self.solver),
                              ("Prediction", self.plan_panel)):
            groups[title] = QtWidgets.QGroupBox(title)
            QtWidgets.QVBoxLayout(groups[title]).addWidget(widget)
        layout.addWidget(groups["Forward model"])
        layout.addWidget(groups["Solver"])
        layout.addStretch(1)
        scroll = QtWidgets.QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(box)
        scroll.setHorizontalScrollBarPolicy(QtCore.Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setFrameShape(QtWidgets.QFrame.Shape.NoFrame)
        self._wheel_guard = guard_fields(scroll)
        # the prediction and the buttons stay below the scrolled settings: the predicted time and
        # Reconstruct are never scrolled away
        outer = QtWidgets.QWidget()
        outer.setMinimumWidth(340)
        outer_layout = QtWidgets.QVBoxLayout(outer)
        outer_layout.setContentsMargins(0, 0, 0, 4)
        outer_layout.addWidget(scroll, 1)
        below = QtWidgets.QVBoxLayout()
        below.setContentsMargins(9, 0, 9, 0)
        below.addWidget(groups["Prediction"])
        outer_layout.addLayout(below)
        buttons.setContentsMargins(9, 0, 9, 0)
        outer_layout.addLayout(buttons)
        self.setup_dock = self._dock("Setup", outer, QtCore.Qt.DockWidgetArea.LeftDockWidgetArea)

    # ------------------------------------------------------------------ files
    def recent_files(self) -> list[str]:
        value = self.settings.value("recent", [])
        return [value] if isinstance(value, str) else list(value or [])

    def _remember(self, path: str) -> None:
        path = str(Path(path).resolve())  # a relative name means nothing from another folder
        recent = [path] + [p for p in self.recent_files() if p != path]
        self.settings.setValue("recent", recent[:MAX_RECENT])
        self._fill_recent()

    def _fill_recent(self) -> None:
        self.recent_menu.clear()
        for path in self.recent_files():
            self.recent_menu.addAction(Path(path).name, lambda p=path: self.open_file(p)).setToolTip(path)
        self.recent_menu.setEnabled(bool(self.recent_files()))

    def open_dialog(self) -> None:
        start = str(Path(self.recent_files()[0]).parent) if self.recent_files() else ""
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Open measurement or result", start,
                                                        "HDF5 files (*.h5 *.hdf5 *.nxs);;All files (*)")
        if path:
            self.open_file(path)

    def open_file(self, path: str | Path) -> bool:
        """Open a measurement, or a result (which also restores the settings that made it)."""
        path = str(path)
        if self.is_running() and not run_owner.ask_to_stop(self, self.windowTitle().removeprefix("diffrecon — "),
                                                          Path(path).name):
            self.show_message(f"{Path(path).name} was not opened; the running reconstruction goes on.")
            return False
        try:
            result = read_if_result(path)
            measurement = result.measurement if result is not None else load_measurement(path)
        except (DiffreconError, OSError) as err:
            self.report_error(str(err) if isinstance(err, DiffreconError) else
                              f"{Path(path).name} could not be opened ({err}).")
            return False
        if measurement is None:
            self.report_error(f"{Path(path).name} holds a result without its measurement; open the measurement file.")
            return False
        self.set_measurement(measurement, path)
        self._remember(path)
        if result is not None:
            self.solver.set_config(config_from_provenance(result.provenance))
            self._on_finished(result)
        return True

    def open_default(self) -> bool:
        try:
            self.set_measurement(default_measurement())
            return True
        except Exception as err:  # noqa: BLE001 - no demo yet must not kill the window
            self.report_error(f"The bundled CT demo could not be loaded ({describe_error(err)}); open a file with Ctrl+O.")
            return False

    def set_measurement(self, m: Measurement, path: str | None = None) -> None:
        self.measurement = m
        self.forward.set_measurement(m)
        self._show_measurement(m)
        if path is not None and path.lower().endswith((".h5", ".hdf5", ".nxs")):
            self.tree.load(path)
        elif m.source is not None and Path(m.source).exists():
            self.tree.load(m.source)
        name = Path(path).name if path else (m.title or "demo")
        self.setWindowTitle(f"diffrecon — {name}")
        self.show_message(f"Opened {name}: {m.operator.kind}, image {' × '.join(map(str, m.image_shape))}.")
        self._update_enabled()

    def _show_measurement(self, m: Measurement) -> None:
        if self.is_running():  # its result belongs to the measurement it started on
            run_owner.abandon(self.worker)
            self.worker, self._run_done = None, True
            self.status.end_progress(False)
            self.log("Stopped the running reconstruction: another measurement is shown now.")
        self.measurement, self.result = m, None
        self.banner.clear()
        self.view.show_measurement(m)
        self.metrics.set_metrics({})
        self.roi.clear()
        self.pixel_label.clear()
        self.profile.clear()  # the old result's profile would read as the new measurement's
        if self.view.ab.reset_for_image(tuple(self.view.panels["mean"].empty_shape or m.image_shape[-2:])):
            self.log("Unpinned A: it is not on the new measurement's pixel grid.")
        try:
            from ..operators import build_operator

            self.solver.set_operator(build_operator(m.operator))
        except DiffreconError as err:
            self.report_error(str(err))

    def _on_measurement_replaced(self, m: Measurement) -> None:
        """A re-simulated measurement from the forward panel, or the file's own one again."""
        self._show_measurement(m)
        self.show_message(f"Using {m.title}." if "derivation" in m.attrs else "Using the file's measurement again.")
        self.log(f"Measurement: {m.title}")
        self._update_enabled()

    def dragEnterEvent(self, event: QtGui.QDragEnterEvent) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QtGui.QDropEvent) -> None:
        for url in event.mimeData().urls():
            if url.isLocalFile():
                self.open_file(url.toLocalFile())
                break

    # ------------------------------------------------------------------ running
    def is_running(self) -> bool:
        return self.worker is not None and self.worker.isRunning()

    def measurement_to_run(self, what: str = "a run") -> Measurement | None:
        """The edited measurement, or None when nothing can start now (a bad noise σ is reported)."""
        if self.is_running() or self.measurement is None:
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
        self.solver.save_settings(self.settings)
        self.plan_panel.cancel()  # a probe beside the run would slow it and skew its time and memory
        self._device = _memory_device(config.device)
        self.result = None
        self.metrics.set_metrics({})  # a previous run's numbers never stand beside the new (empty) result
        self.roi.clear()
        self.pixel_label.clear()
        self.run_record.start()
        self.banner.clear()
        self.view.begin_run(self.solver.is_deterministic())
        self.status.start_progress(self.plan_panel.predicted_seconds(measurement, config))
        run_owner.retire(self.worker)
        self.worker = worker = RunWorker(measurement, config, self.engine_run, self)
        worker.planned.connect(self._on_planned)
        worker.progress.connect(self.status.show_progress)
        worker.preparing.connect(self.status.show_preparing)
        worker.preview.connect(self._on_preview)
        worker.statistics.connect(self._on_statistics)
        worker.diverged.connect(self._on_diverged)
        worker.log.connect(self.log)
        worker.log.connect(self.run_record.note)
        worker.stopped_empty.connect(self._on_stopped_empty)
        worker.finished_result.connect(self._on_finished)
        worker.failed.connect(self._on_failed)
        worker.finished.connect(self._on_worker_ended)
        self._run_done = False
        worker.start()
        self.show_message(f"Running {config.solver}: {config.steps} steps × {config.samples} samples…")
        self.log(f"Run: solver={config.solver} steps={config.steps} samples={config.samples} "
                 f"seed={config.seed} device={config.device} prior={config.prior}")
        self._update_enabled()
        return True

    def calibrate_dialog(self) -> None:
        """Run ▸ Calibrate std: how far these settings' std is off, stored for later runs."""
        self.calibration.ask_and_start()

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
        if self.measurement is not None and not self.is_running():
            self.plan_panel.predict_now(self.forward.edited_measurement(), self.solver.config())

    def showEvent(self, event: QtGui.QShowEvent) -> None:
        super().showEvent(event)
        if not self._shown:
            # a first run on a laptop CPU takes minutes: its predicted time is shown before the
            # first click, probed off the GUI thread once the window is up
            self._shown = True
            QtCore.QTimer.singleShot(0, self._predict_if_unknown)

    def _predict_if_unknown(self) -> None:
        if self.plan_panel.planned is None and not self.plan_panel.is_busy():
            self.predict()

    def _on_settings_changed(self) -> None:
        self._update_enabled()
        measurement = self.forward.edited_measurement()
        if measurement is not None and not self.is_running():
            self.plan_panel.request(measurement, self.solver.config())
        elif measurement is not None:  # no probe beside a run, but no prediction of other settings either
            self.plan_panel.forget(measurement, self.solver.config())

    def _on_planned(self, planned) -> None:
        self.status.set_batches(planned.batches)
        self.view.panels["std"].set_title(std_panel_title(planned.spread, planned.calibration))

    def _on_preview(self, event) -> None:
        self.view.show_preview(event.x0_hat, event.step, event.sample_index)

    def _on_statistics(self, event) -> None:
        self.view.show_statistics(event.mean, event.std, event.samples_done)
        self.roi.set_maps(self.view.mean, self.view.std)

    def _on_diverged(self, event) -> None:
        self.banner.show_text(event.message)
        self.log(event.message, "warning")

    def _on_finished(self, result: Result) -> None:
        from_run, self._run_done = not self._run_done, True
        self.result = result
        self.view.show_result(result)
        self.roi.set_maps(self.view.mean, self.view.std)
        self.profile.set_data(self.view.mean, self.view.std, self.view.truth, result.units)
        self.metrics.set_metrics(dict(result.metrics), {"samples": result.n_samples}, metric_notes(result))
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
        if from_run:  # a result opened from a file is no run of this window
            self.log(self.run_record.end_line("finished" if result.complete else "stopped", result))
        self._update_enabled()
        self.run_finished.emit(result)

    def _on_worker_ended(self) -> None:
        run_owner.release_inputs(self.worker)
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

    # ------------------------------------------------------------------ compare
    def open_compare_solvers(self) -> bool:
        cls, reason = compare_window_class()
        if cls is None or self.measurement is None:
            self.report_error(reason or "Open a measurement before comparing solvers.")
            return False
        self.compare_window = cls(self.forward.edited_measurement() or self.measurement, self.solver.config(), parent=self)
        self.compare_window.show()
        return True

    # ------------------------------------------------------------------ view
    def set_theme(self, theme: str) -> None:
        """light, dark or system (follows the desktop); remembered in the settings."""
        self.theme = theme
        self.settings.setValue(THEME_KEY, theme)
        self.theme_actions[theme].setChecked(True)  # emits toggled, not triggered: no loop; group stays exclusive
        self.dark = apply_theme(theme, self)

    def _on_system_scheme_changed(self, *_) -> None:
        if self.theme == "system":
            self.dark = apply_theme("system", self)

    def fit_images(self) -> None:
        self.view.panels["mean"].show_full()
        self.view.panels["measurement"].show_full()

    # ------------------------------------------------------------------ export
    def export_dialog(self) -> None:
        if self.result is None:
            self.report_error("There is no result to export yet; run a reconstruction first.")
            return
        start = str(Path(self.recent_files()[0]).with_suffix("")) + "_result" if self.recent_files() else "result"
        path, chosen = QtWidgets.QFileDialog.getSaveFileName(self, "Export", start, ";;".join(exporting.EXPORTS))
        if path:
            try:
                target, what = exporting.resolve_target(path, chosen)
            except InputError as err:
                self.report_error(str(err))
                return
            self.export(target, what)

    def export(self, path: str | Path, what: str = "mean") -> bool:
        """Write ``what`` (mean, std, samples, error or result) to ``path``; the kind follows the suffix."""
        try:
            if self.result is None:
                raise InputError("There is no result to export yet; run a reconstruction first.")
            panel = self.view.panels[what if what in ("mean", "std", "error") else "mean"]
            exporting.export_result(path, self.result, what, truth=self.view.truth, title=panel.title(),
                                    levels=tuple(panel.colorbar.levels()))
        except Exception as err:  # noqa: BLE001 - an export failure is shown in the window, never only on a terminal
            self.report_error(str(err) if isinstance(err, DiffreconError) else f"Export to {path} failed ({err}).")
            return False
        self.show_message(f"Exported {what} to {path}.")
        return True

    # ------------------------------------------------------------------ messages and state
    def show_message(self, text: str) -> None:
        self.status.show_message(text)

    def report_error(self, text: str) -> None:
        self.last_error = text
        self.status.show_error(text)
        self.log(text, "error")

    def log(self, message: str, level: str = "info") -> None:
        self.log_view.appendPlainText(f"[{time.strftime('%H:%M:%S')}] {level}: {message}")

    def _on_memory_tick(self) -> None:
        self.memory_label.setText(format_memory(memory_snapshot(self._device)))

    def _update_enabled(self, *_) -> None:
        running = self.is_running()
        can_run = not running and self.measurement is not None and self.forward.is_valid() \
            and self.solver.solver_name() is not None
        for w in (self.run_button, self.run_action):
            w.setEnabled(can_run)
        for w in (self.stop_button, self.stop_action, self.finish_button):
            w.setEnabled(running)
        self.export_action.setEnabled(self.result is not None and not running)
        self.pin_action.setEnabled(self.view.mean is not None)
        self.predict_action.setEnabled(can_run)
        self.calibrate_action.setEnabled(can_run)
        self.plan_panel.button.setEnabled(can_run)

    def closeEvent(self, event: QtGui.QCloseEvent) -> None:
        self.solver.save_settings(self.settings)
        stops = [self.stop_run, self.plan_panel.cancel]
        if self.compare_window is not None:
            stops.append(self.compare_window.stop)
        if closing.stop_and_wait(self, stops, self.CLOSE_WAIT_MS):  # the window may go; these may not
            self.log("Closing: a step still runs and ends in the background before the program exits.")
        super().closeEvent(event)
