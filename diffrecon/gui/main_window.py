"""The main window: open a measurement, set up the forward model and solver, run, read the
result, export. The state is the Qt-free :class:`~diffrecon.session.Session`; widgets live in
their own files and subscribe to it (:mod:`.session_signals`); this file lays them out."""
from __future__ import annotations

import time

from PySide6 import QtCore, QtGui, QtWidgets

from ..runtime import memory_snapshot
from ..session import Session
from . import closing, gc_guard
from .ab_actions import ABActions
from .batch_dock import BatchDock
from .calibrate_action import CalibrationRunner
from .divergence_banner import DivergenceBanner
from .file_actions import FileActions
from .forward_panel import ForwardPanel
from .hdf5_tree import HDF5Tree
from .memory import format_memory
from .menus import build_menus, compare_window_class
from .metrics_table import MetricsTable
from .plan_panel import PlanPanel
from .priors_panel import PriorsPanel
from .profile_panel import ProfilePanel
from .result_view import ResultView
from .roi_stats import RoiStats
from .run_actions import RunActions
from .run_control import FINISH, RunRecord, finish_button
from .session_signals import SessionSignals, connect_panels
from .solver_panel import SolverPanel
from .status_bar import StatusArea
from .theme import SETTINGS_KEY as THEME_KEY
from .theme import THEMES, apply_theme
from .weight_assistant import AutoWeightButton
from .wheel_guard import guard_fields


class MainWindow(FileActions, RunActions, ABActions, QtWidgets.QMainWindow):
    run_finished = QtCore.Signal(object)  # the Result, or None after a failure
    CLOSE_WAIT_MS = 3000  # closing waits this long for threads to end their step, then leaves them to end

    def __init__(self, settings: QtCore.QSettings | None = None, engine_run=None, plan_fn=None, parent=None):
        super().__init__(parent)
        gc_guard.install()  # Qt objects in garbage cycles must not be deleted by a worker thread
        gc_guard.register_busy(self.is_running)
        self.settings = settings or QtCore.QSettings("diffrecon", "diffrecon")
        self.engine_run = engine_run  # None: diffrecon.engine.run; tests inject fakes
        self.session = Session()
        self.events = SessionSignals(self.session, self)
        self.worker = None  # the latest run job (RunWorker)
        self.compare_window = None
        self.batch_dock: BatchDock | None = None  # File ▸ Batch…, made when first opened
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
        self.priors_panel = PriorsPanel(choose=self.solver.set_prior, current=self.solver.config().prior)
        priors_dock = self._dock("Priors", self.priors_panel, QtCore.Qt.DockWidgetArea.RightDockWidgetArea)
        # Two tab groups made before the window is shown leave a stray tab bar over the status bar
        # (Qt 6.11); the right-hand group is made once the window is up.
        self._tabify_later = (metrics_dock, priors_dock)
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
        self.forward.replaced.connect(self.session.use)
        self.plan_panel.predicted.connect(self.session.set_planned)
        connect_panels(self)
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
        buttons.addWidget(self.solver.full_quality)  # the quality preset, one click from Reconstruct
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

    @property
    def measurement(self):
        """The session's current measurement (the file's, or one derived from it)."""
        return self.session.measurement

    @property
    def result(self):
        return self.session.result

    def showEvent(self, event: QtGui.QShowEvent) -> None:
        super().showEvent(event)
        if self._tabify_later:
            metrics_dock, priors_dock = self._tabify_later
            self._tabify_later = None
            self.tabifyDockWidget(metrics_dock, priors_dock)
            metrics_dock.raise_()
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

    # ------------------------------------------------------------------ compare
    def open_compare_solvers(self) -> bool:
        cls, reason = compare_window_class()
        if cls is None or self.session.measurement is None:
            self.report_error(reason or "Open a measurement before comparing solvers.")
            return False
        measurement = self.forward.edited_measurement() or self.session.measurement
        self.compare_window = cls(measurement, self.solver.config(), parent=self)
        self.compare_window.show()
        return True

    def open_batch(self) -> BatchDock:
        if self.batch_dock is None:
            self.batch_dock = BatchDock(self)
            self.addDockWidget(QtCore.Qt.DockWidgetArea.BottomDockWidgetArea, self.batch_dock)
        self.batch_dock.show()
        self.batch_dock.raise_()
        return self.batch_dock

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
        can_run = not running and self.session.measurement is not None and self.forward.is_valid() \
            and self.solver.solver_name() is not None
        for w in (self.run_button, self.run_action):
            w.setEnabled(can_run)
        for w in (self.stop_button, self.stop_action, self.finish_button):
            w.setEnabled(running)
        self.export_action.setEnabled(self.session.result is not None and not running)
        self.pin_action.setEnabled(self.view.mean is not None)
        self.predict_action.setEnabled(can_run)
        self.calibrate_action.setEnabled(can_run)
        self.plan_panel.button.setEnabled(can_run)

    def closeEvent(self, event: QtGui.QCloseEvent) -> None:
        self.solver.save_settings(self.settings)
        stops = [self.stop_run, self.plan_panel.cancel, self.priors_panel.stop]
        if self.compare_window is not None:
            stops.append(self.compare_window.stop)
        if self.batch_dock is not None:
            stops.append(self.batch_dock.cancel)  # a running batch stops within one solver step
        if closing.stop_and_wait(self, stops, self.CLOSE_WAIT_MS):  # the window may go; these may not
            self.log("Closing: a step still runs and ends in the background before the program exits.")
        super().closeEvent(event)
