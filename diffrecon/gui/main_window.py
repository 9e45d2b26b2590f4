"""The main window: open a measurement, set up the forward model and solver, run, read the
result, export. Widgets live in their own files; this file wires them together."""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
from PySide6 import QtCore, QtGui, QtWidgets

from ..engine import RunConfig
from ..errors import DiffreconError, InputError
from ..measurement import Measurement, Result
from . import export as exporting
from .forward_panel import ForwardPanel
from .hdf5_tree import HDF5Tree
from .memory import format_memory, memory_snapshot
from .metrics_table import MetricsTable
from .profile_panel import ProfilePanel
from .result_view import ResultView
from .solver_panel import SolverPanel
from .views import default_measurement, load_measurement, to_2d
from .worker import RunWorker, describe_error

MAX_RECENT = 8
EXPORTS = {  # dialog filter -> (what, kind)
    "HDF5 result (*.h5)": ("result", "hdf5"),
    "Posterior mean, float32 TIFF (*.tif)": ("mean", "tiff"),
    "Posterior std, float32 TIFF (*.tif)": ("std", "tiff"),
    "Samples, float32 TIFF stack (*.tif)": ("samples", "tiff"),
    "Error map, float32 TIFF (*.tif)": ("error", "tiff"),
    "Posterior mean, PNG with colour bar (*.png)": ("mean", "png"),
    "Posterior std, PNG with colour bar (*.png)": ("std", "png"),
    "Error map, PNG with colour bar (*.png)": ("error", "png"),
}


class MainWindow(QtWidgets.QMainWindow):
    run_finished = QtCore.Signal(object)  # the Result, or None after a failure

    def __init__(self, settings: QtCore.QSettings | None = None, engine_run=None, parent=None):
        super().__init__(parent)
        self.settings = settings or QtCore.QSettings("diffrecon", "diffrecon")
        self.engine_run = engine_run  # None: diffrecon.engine.run; tests inject fakes
        self.measurement: Measurement | None = None
        self.result: Result | None = None
        self.worker: RunWorker | None = None
        self.last_error = ""
        self._device = "cpu"
        self._run_done = True
        self.setWindowTitle("diffrecon")
        self.setAcceptDrops(True)
        self.resize(1600, 1000)

        self.view = ResultView()
        self.setCentralWidget(self.view)
        self.forward = ForwardPanel()
        self.solver = SolverPanel()
        self.solver.restore_settings(self.settings)
        self.tree = HDF5Tree()
        self.metrics = MetricsTable()
        self.profile = ProfilePanel(self.view.panels["mean"])
        self.log_view = QtWidgets.QPlainTextEdit(readOnly=True)
        self.log_view.setMaximumBlockCount(5000)
        self._build_setup_dock()
        tree_dock = self._dock("File", self.tree, QtCore.Qt.DockWidgetArea.LeftDockWidgetArea)
        self.resizeDocks([self.setup_dock, tree_dock], [640, 260], QtCore.Qt.Orientation.Vertical)
        self._dock("Metrics", self.metrics, QtCore.Qt.DockWidgetArea.RightDockWidgetArea)
        profile_dock = self._dock("Line profile", self.profile, QtCore.Qt.DockWidgetArea.BottomDockWidgetArea)
        log_dock = self._dock("Log", self.log_view, QtCore.Qt.DockWidgetArea.BottomDockWidgetArea)
        self.tabifyDockWidget(profile_dock, log_dock)
        profile_dock.raise_()
        self.resizeDocks([profile_dock], [170], QtCore.Qt.Orientation.Vertical)
        self._build_status_bar()
        self._build_actions()

        self.view.hovered_text.connect(self.pixel_label.setText)
        self.forward.changed.connect(self._update_enabled)
        self.solver.changed.connect(self._update_enabled)
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
        self.run_button.clicked.connect(self.start_run)
        self.stop_button.clicked.connect(self.stop_run)
        buttons = QtWidgets.QHBoxLayout()
        buttons.addWidget(self.run_button, 2)
        buttons.addWidget(self.stop_button, 1)
        box = QtWidgets.QWidget()
        layout = QtWidgets.QVBoxLayout(box)
        for title, widget in (("Forward model", self.forward), ("Solver", self.solver)):
            group = QtWidgets.QGroupBox(title)
            QtWidgets.QVBoxLayout(group).addWidget(widget)
            layout.addWidget(group)
        layout.addLayout(buttons)
        layout.addStretch(1)
        scroll = QtWidgets.QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(box)
        scroll.setHorizontalScrollBarPolicy(QtCore.Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setMinimumWidth(360)
        self.setup_dock = self._dock("Setup", scroll, QtCore.Qt.DockWidgetArea.LeftDockWidgetArea)

    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        self.message_label = QtWidgets.QLabel("Ready.")
        self.pixel_label = QtWidgets.QLabel()
        self.progress_bar = QtWidgets.QProgressBar()
        self.progress_bar.setMaximumWidth(220)
        self.progress_bar.setFormat("%p%")
        self.progress_label = QtWidgets.QLabel()
        self.memory_label = QtWidgets.QLabel()
        bar.addWidget(self.message_label, 2)
        bar.addWidget(self.pixel_label, 3)
        bar.addPermanentWidget(self.progress_label)
        bar.addPermanentWidget(self.progress_bar)
        bar.addPermanentWidget(self.memory_label)

    def _action(self, text: str, slot, shortcut=None, icon=None) -> QtGui.QAction:
        action = QtGui.QAction(text, self)
        if shortcut is not None:
            action.setShortcut(QtGui.QKeySequence(shortcut))
        if icon is not None:
            action.setIcon(self.style().standardIcon(icon))
        action.triggered.connect(slot)
        return action

    def _build_actions(self) -> None:
        sp = QtWidgets.QStyle.StandardPixmap
        self.open_action = self._action("&Open…", self.open_dialog, QtGui.QKeySequence.StandardKey.Open, sp.SP_DialogOpenButton)
        self.demo_action = self._action("Open CT &demo", self.open_default)
        self.run_action = self._action("&Reconstruct", self.start_run, "Ctrl+R", sp.SP_MediaPlay)
        self.stop_action = self._action("&Stop", self.stop_run, "Esc", sp.SP_MediaStop)
        self.export_action = self._action("&Export…", self.export_dialog, "Ctrl+E", sp.SP_DialogSaveButton)
        quit_action = self._action("&Quit", self.close, QtGui.QKeySequence.StandardKey.Quit)
        menu = self.menuBar().addMenu("&File")
        menu.addActions([self.open_action, self.demo_action])
        self.recent_menu = menu.addMenu("Open &recent")
        menu.addSeparator()
        menu.addActions([self.export_action, quit_action])
        self.menuBar().addMenu("&Run").addActions([self.run_action, self.stop_action])
        view_menu = self.menuBar().addMenu("&View")
        for dock in self.findChildren(QtWidgets.QDockWidget):
            view_menu.addAction(dock.toggleViewAction())
        toolbar = self.addToolBar("Main")
        toolbar.setObjectName("Main")
        toolbar.addActions([self.open_action, self.run_action, self.stop_action, self.export_action])
        self._fill_recent()

    # ------------------------------------------------------------------ files
    def recent_files(self) -> list[str]:
        value = self.settings.value("recent", [])
        return [value] if isinstance(value, str) else list(value or [])

    def _remember(self, path: str) -> None:
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
        try:
            result = _read_if_result(path)
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
            self.solver.set_config(_config_from_provenance(result.provenance))
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
        self.measurement, self.result = m, None
        self.forward.set_measurement(m)
        self.view.show_measurement(m)
        self.metrics.set_metrics({})
        try:
            from ..operators import build_operator

            self.solver.set_operator(build_operator(m.operator))
        except DiffreconError as err:
            self.report_error(str(err))
        if path is not None and path.lower().endswith((".h5", ".hdf5", ".nxs")):
            self.tree.load(path)
        elif m.source is not None and Path(m.source).exists():
            self.tree.load(m.source)
        name = Path(path).name if path else (m.title or "demo")
        self.setWindowTitle(f"diffrecon — {name}")
        self.show_message(f"Opened {name}: {m.operator.kind}, image {' × '.join(map(str, m.image_shape))}.")
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

    def start_run(self, config: RunConfig | None = None) -> bool:
        if self.is_running() or self.measurement is None:
            return False
        measurement = self.forward.edited_measurement()
        if measurement is None:
            self.report_error("Noise σ must be a finite number ≥ 0 before a run can start.")
            return False
        config = config or self.solver.config()
        self.solver.save_settings(self.settings)
        self._device = config.device
        self.result = None
        self.view.begin_run(self.solver.is_deterministic())
        self.progress_bar.setValue(0)
        self.progress_label.setText("starting…")
        self.worker = worker = RunWorker(measurement, config, self.engine_run, self)
        worker.planned.connect(self._on_planned)
        worker.progress.connect(self._on_progress)
        worker.preview.connect(lambda e: self.view.show_preview(e.x0_hat, e.step, e.sample_index))
        worker.statistics.connect(lambda e: self.view.show_statistics(e.mean, e.std, e.samples_done))
        worker.log.connect(self.log)
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

    def stop_run(self) -> None:
        if self.is_running():
            self.worker.request_stop()
            self.show_message("Stopping after the current step; finished samples are kept…")

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

    def _on_planned(self, planned) -> None:
        self._device = planned.device
        self.solver.show_plan(planned)
        if not planned.std_is_posterior:
            self.view.panels["std"].set_title("Seed spread (not a posterior std)")

    def _on_progress(self, p) -> None:
        total = max(p.steps * p.samples_total, 1)
        self.progress_bar.setValue(int(100 * min((p.samples_done * p.steps + p.step) / total, 1.0)))
        eta = "?" if p.eta is None else f"{p.eta:.0f} s"
        self.progress_label.setText(f"step {p.step}/{p.steps} · samples {p.samples_done}/{p.samples_total}"
                                    f" · NFE {p.nfe} · ETA {eta}")

    def _on_finished(self, result: Result) -> None:
        self._run_done = True
        self.result = result
        self.view.show_result(result)
        self.profile.set_data(self.view.mean, self.view.std, self.view.truth, result.units)
        self.metrics.set_metrics(dict(result.metrics), {"samples": result.n_samples})
        self.progress_bar.setValue(100 if result.complete else self.progress_bar.value())
        self.progress_label.setText(f"samples {result.n_samples}/{result.provenance.get('samples', result.n_samples)}"
                                    f" · NFE {result.metrics.get('nfe', 0):.0f}")
        if not (np.isfinite(result.mean).all() and np.isfinite(result.std).all()):
            self.report_error("The result contains NaN or infinite values; try fewer steps, a smaller "
                              "step size or fp32 precision.")
        else:
            done = "finished" if result.complete else f"stopped early with {result.n_samples} finished samples"
            self.show_message(f"Reconstruction {done}.")
        self._update_enabled()
        self.run_finished.emit(result)

    def _on_failed(self, message: str) -> None:
        self._run_done = True
        self.report_error(message)
        self.progress_label.setText("failed")
        self._update_enabled()
        self.run_finished.emit(None)

    # ------------------------------------------------------------------ export
    def export_dialog(self) -> None:
        if self.result is None:
            self.report_error("There is no result to export yet; run a reconstruction first.")
            return
        start = str(Path(self.recent_files()[0]).with_suffix("")) + "_result" if self.recent_files() else "result"
        path, chosen = QtWidgets.QFileDialog.getSaveFileName(self, "Export", start, ";;".join(EXPORTS))
        if path:
            what, kind = EXPORTS.get(chosen, ("result", "hdf5"))
            self.export(path, what if exporting.export_kind(path) == kind else "mean")

    def export(self, path: str | Path, what: str = "mean") -> bool:
        """Write ``what`` (mean, std, samples, error or result) to ``path``; the kind follows the suffix."""
        try:
            if self.result is None:
                raise InputError("There is no result to export yet; run a reconstruction first.")
            kind = exporting.export_kind(path)
            r = self.result
            if kind == "hdf5":
                exporting.write_result_file(path, r)
            else:
                data = self._export_array(what)
                if kind == "tiff":
                    pixel = r.measurement.pixel_size if r.measurement is not None else 1.0
                    exporting.write_tiff(path, data, unit=r.units, pixel_size=pixel)
                else:
                    panel = self.view.panels["error" if what == "error" else what if what in ("mean", "std") else "mean"]
                    exporting.write_png(path, data, title=panel.title(), unit=r.units,
                                        cmap="inferno" if what == "std" else "RdBu_r" if what == "error" else "gray",
                                        levels=tuple(panel.colorbar.levels()))
        except (DiffreconError, OSError) as err:
            self.report_error(str(err) if isinstance(err, DiffreconError) else f"Export to {path} failed ({err}).")
            return False
        self.show_message(f"Exported {what} to {path}.")
        return True

    def _export_array(self, what: str) -> np.ndarray:
        r = self.result
        if what == "samples":
            if r.samples is None:
                raise InputError("This result holds no samples; raise keep_samples to export them.")
            return r.samples
        if what == "error":
            if self.view.truth is None:
                raise InputError("The error map needs a ground truth, which this measurement lacks.")
            return to_2d(r.mean) - self.view.truth
        if what not in ("mean", "std"):
            raise InputError(f"Cannot export {what!r}; valid choices are mean, std, samples, error and result.")
        return getattr(r, what)

    # ------------------------------------------------------------------ messages and state
    def show_message(self, text: str) -> None:
        self.message_label.setStyleSheet("")
        self.message_label.setText(text)

    def report_error(self, text: str) -> None:
        self.last_error = text
        self.message_label.setStyleSheet("color: #e05050; font-weight: bold;")
        self.message_label.setText(text)
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
        for w in (self.stop_button, self.stop_action):
            w.setEnabled(running)
        self.export_action.setEnabled(self.result is not None and not running)

    def closeEvent(self, event: QtGui.QCloseEvent) -> None:
        self.solver.save_settings(self.settings)
        if self.is_running():
            self.worker.request_stop()
            self.worker.wait(10000)
        self.tree.wait(2000)
        super().closeEvent(event)


def _read_if_result(path: str) -> Result | None:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            is_result = str(f.attrs.get("diffrecon_format", b"")).strip("b'") == "result"
    except OSError:
        return None  # not HDF5: the measurement reader gives the sentence
    if not is_result:
        return None
    from ..io import read_result

    return read_result(path)


def _config_from_provenance(prov: dict) -> RunConfig:
    fields = RunConfig.__dataclass_fields__
    kw = {k: prov[k] for k in ("solver", "params", "steps", "samples", "seed", "prior", "device", "precision")
          if k in prov and k in fields}
    try:
        return dataclasses.replace(RunConfig(), **kw)
    except TypeError:
        return RunConfig()
