"""The comparison window: pick solvers, step budgets, seeds and an equal budget; run the queue
in one background worker with a shared progress view and a per-run cancel; read the runs side
by side (grid), in a sortable metrics table and on a cost-quality plot with the Pareto frontier;
export the grid (PNG), the table (CSV) and all runs (HDF5), or open a saved comparison.

``CompareWindow(measurement, base_config, parent=None)``: ``base_config`` supplies the prior,
device, precision and schedule; the window chooses solver, steps, samples and seed per run.
"""
from __future__ import annotations

from pathlib import Path

from PySide6 import QtCore, QtGui, QtWidgets

from ..compare import (CompareSpec, Comparison, read_comparison, write_comparison, write_figure,
                       write_table)
from ..engine import RunConfig
from ..errors import DiffreconError
from ..grid_levels import outlier_warning
from ..measurement import Measurement
from .compare_grid import CompareGrid
from .compare_plot import ComparePlot
from .compare_queue import QueueView
from .compare_setup import CompareSetup
from .compare_table import CompareTable
from . import closing, gc_guard
from .compare_worker import CompareWorker


class CompareWindow(QtWidgets.QMainWindow):
    comparison_done = QtCore.Signal(object)  # the Comparison, or None after a failure

    def __init__(self, measurement: Measurement, base_config: RunConfig | None = None, parent=None, *,
                 denoiser=None):
        super().__init__(parent)
        self.measurement = measurement
        self.base_config = base_config or RunConfig()
        self.denoiser = denoiser  # tests and scripts may pass a prior built once
        self.comparison: Comparison | None = None
        self.worker: CompareWorker | None = None
        gc_guard.install()
        gc_guard.register_busy(self.is_running)
        self.last_error = ""
        self.setWindowTitle(f"Compare solvers — {measurement.title or 'measurement'}")
        self.resize(1500, 950)

        self.setup = CompareSetup()
        self.setup.set_measurement(measurement)
        self.queue = QueueView()
        self.grid = CompareGrid()
        self.table = CompareTable()
        self.plot = ComparePlot()
        self.log_view = QtWidgets.QPlainTextEdit(readOnly=True)
        self.log_view.setMaximumBlockCount(2000)

        side = QtWidgets.QWidget()
        side_layout = QtWidgets.QVBoxLayout(side)
        side_layout.setContentsMargins(0, 0, 0, 0)
        side_layout.addWidget(self.setup)
        buttons = QtWidgets.QHBoxLayout()
        self.run_button = QtWidgets.QPushButton("Run comparison")
        self.stop_button = QtWidgets.QPushButton("Stop all")
        self.stop_button.setEnabled(False)
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.stop_button)
        side_layout.addLayout(buttons)
        side_layout.addWidget(self.queue, 1)
        dock = QtWidgets.QDockWidget("Queue", self)
        dock.setObjectName("compare_queue")
        dock.setWidget(side)
        side.setMinimumWidth(400)
        self.addDockWidget(QtCore.Qt.DockWidgetArea.LeftDockWidgetArea, dock)

        bottom = QtWidgets.QTabWidget()
        bottom.addTab(self.table, "Metrics")
        bottom.addTab(self.log_view, "Log")
        lower = QtWidgets.QSplitter(QtCore.Qt.Orientation.Horizontal)
        lower.addWidget(bottom)
        lower.addWidget(self.plot)
        lower.setSizes([700, 500])
        main = QtWidgets.QSplitter(QtCore.Qt.Orientation.Vertical)
        main.addWidget(self.grid)
        main.addWidget(lower)
        main.setSizes([620, 330])
        self.setCentralWidget(main)
        self.status_label = QtWidgets.QLabel("Choose solvers and run.")
        self.statusBar().addWidget(self.status_label, 1)
        self._build_actions()

        self.run_button.clicked.connect(self._on_run)
        self.stop_button.clicked.connect(self.stop)
        self.queue.cancel_requested.connect(self.cancel_run)
        self.setup.changed.connect(self._update_enabled)
        self._update_enabled()

    def is_running(self) -> bool:
        return self.worker is not None and self.worker.running()

    def _build_actions(self) -> None:
        bar = self.addToolBar("Comparison")
        bar.setObjectName("compare_toolbar")

        def action(text, slot, shortcut=None):
            a = QtGui.QAction(text, self)
            if shortcut:
                a.setShortcut(QtGui.QKeySequence(shortcut))
            a.triggered.connect(slot)
            bar.addAction(a)
            return a

        self.open_action = action("Open comparison…", self._on_open, QtGui.QKeySequence.StandardKey.Open)
        bar.addSeparator()
        self.figure_action = action("Save grid PNG…", lambda: self._on_save("png"))
        self.table_action = action("Save table CSV…", lambda: self._on_save("csv"))
        self.h5_action = action("Save all runs HDF5…", lambda: self._on_save("h5"), QtGui.QKeySequence.StandardKey.Save)

    # ------------------------------------------------------------------ commands
    def start(self, spec: CompareSpec | None = None) -> bool:
        """Run ``spec`` (default: the form's) in the background; False with a message if refused."""
        if self.worker is not None:
            return False
        try:
            if spec is not None:
                self.setup.set_spec(spec)
            spec = self.setup.spec()
            spec.runs({name: 1 for name in spec.solvers})  # refuse an empty or bad selection now
        except DiffreconError as err:
            self._error(str(err))
            return False
        self.comparison = None
        self.last_error = ""
        self.worker = CompareWorker(self.measurement, spec, self.base_config, denoiser=self.denoiser, parent=self)
        w = self.worker
        w.queued.connect(self._on_queued)
        w.run_started.connect(lambda i: self.queue.set_state(i, "running"))
        w.progress.connect(self.queue.set_progress)
        w.log.connect(self._on_log)
        w.run_ended.connect(self._on_run_ended)
        w.done.connect(self._on_done)
        w.failed.connect(self._on_failed)
        w.finished.connect(self._on_thread_finished)
        self.status_label.setText("Preparing the queue…")
        w.start(defer=True)  # a cancel connected right after start() still sees the first run start
        self._update_enabled()
        return True

    def stop(self) -> None:
        if self.worker is not None:
            self.worker.request_stop()
            self.status_label.setText("Stopping after the current step…")

    def cancel_run(self, index: int) -> None:
        if self.worker is not None:
            self.worker.cancel_run(index)
            self._on_log(f"Cancelling run {index + 1}.", "info")

    def wait_until_done(self, timeout_ms: int = 60_000) -> bool:
        """Process events until the worker has ended (tests and scripted screenshots)."""
        timer = QtCore.QElapsedTimer()
        timer.start()
        while self.worker is not None and timer.elapsed() < timeout_ms:
            QtWidgets.QApplication.processEvents(QtCore.QEventLoop.ProcessEventsFlag.AllEvents, 50)
            QtCore.QThread.msleep(10)
        QtWidgets.QApplication.processEvents()
        return self.worker is None

    def show_comparison(self, comparison: Comparison) -> None:
        self.comparison = comparison
        self.grid.show_comparison(comparison)
        self.table.show_comparison(comparison)
        self.plot.show_comparison(comparison)
        self._update_enabled()

    def open_comparison(self, path: str | Path) -> bool:
        try:
            comparison = read_comparison(path)
        except DiffreconError as err:
            self._error(str(err))
            return False
        self.measurement = comparison.measurement
        self.setup.set_measurement(self.measurement)
        self.queue.set_runs(comparison.runs, comparison.status)
        self.show_comparison(comparison)
        self.status_label.setText(f"Opened {path}.")
        return True

    def save(self, kind: str, path: str | Path) -> bool:
        """Write the grid ("png"), the table ("csv") or all runs ("h5") to ``path``."""
        writers = {"png": write_figure, "csv": write_table, "h5": write_comparison}
        if self.comparison is None:
            self._error("Nothing to save yet; run a comparison or open one first.")
            return False
        try:
            writers[kind](path, self.comparison)
        except (DiffreconError, OSError) as err:
            self._error(f"Could not write {path}: {err}")
            return False
        self.status_label.setText(f"Wrote {path}.")
        return True

    # ------------------------------------------------------------------ slots
    def _on_run(self) -> None:
        self.start()

    def _on_queued(self, runs) -> None:
        self.comparison = Comparison.empty(self.measurement, runs)
        self.queue.set_runs(runs)
        self.status_label.setText(f"Running {len(runs)} run(s)…")

    def _on_run_ended(self, index: int, status: str, result, message: str) -> None:
        self.queue.set_state(index, status)
        if message:
            self._on_log(f"Run {index + 1} {status}: {message}", "warning")
        if self.comparison is not None:
            self.comparison.results[index], self.comparison.status[index] = result, status
            self.comparison.messages[index] = message
            if result is not None:
                self.show_comparison(self.comparison)

    def _on_done(self, comparison) -> None:
        self.show_comparison(comparison)
        for index in self.grid.outliers:
            self._on_log(outlier_warning(comparison.runs[index].label), "warning")
        counts = {s: comparison.status.count(s) for s in dict.fromkeys(comparison.status)}
        self.status_label.setText("Comparison finished: " + ", ".join(f"{n} {s}" for s, n in counts.items()) + ".")
        self.comparison_done.emit(comparison)

    def _on_failed(self, message: str) -> None:
        self._error(message)
        self.comparison_done.emit(None)

    def _on_thread_finished(self) -> None:
        self.worker = None
        self._update_enabled()

    def _on_log(self, message: str, level: str) -> None:
        self.log_view.appendPlainText(f"[{level}] {message}")

    def _on_open(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Open comparison", "", "Comparison (*.h5)")
        if path:
            self.open_comparison(path)

    def _on_save(self, kind: str) -> None:
        filters = {"png": "Grid figure (*.png)", "csv": "Metrics table (*.csv)", "h5": "All runs (*.h5)"}
        path, _ = QtWidgets.QFileDialog.getSaveFileName(self, "Save", f"compare.{kind}", filters[kind])
        if path:
            self.save(kind, path)

    def _error(self, message: str) -> None:
        self.last_error = message
        self.status_label.setText(message)
        self._on_log(message, "error")

    def _update_enabled(self) -> None:
        running = self.worker is not None
        self.run_button.setEnabled(not running and bool(self.setup.checked()))
        self.stop_button.setEnabled(running)
        self.setup.setEnabled(not running)
        has = self.comparison is not None and bool(self.comparison.finished())
        for a in (self.figure_action, self.table_action, self.h5_action):
            a.setEnabled(has and not running)
        self.open_action.setEnabled(not running)

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        # a step longer than the wait ends in the background: destroying a running thread aborts
        closing.stop_and_wait(self, [self.stop], 3000)
        super().closeEvent(event)
