"""The volume window: a volume result or a stack of slice measurements in a :class:`VolumeView`,
Reconstruct volume (DiffPIR coupled along z, :func:`diffrecon.volume.reconstruct_volume`, off the
GUI thread with progress and Stop), and Export volume… (ImageJ hyperstack TIFF, HDF5 volume, or
the volume result file that reopens here). The main window opens one for each volume file."""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from PySide6 import QtCore, QtGui, QtWidgets

from ..engine import RunConfig
from ..errors import DiffreconError, InputError
from . import closing
from .jobs import describe_error
from .theme import apply_theme
from .volume_job import ExportJob, VolumeJob, VolumeSlices, direct_volume, read_volume_slices, slices_truth, volume_kind
from .volume_view import VolumeView

EXPORTS = {"ImageJ hyperstack TIFF, mean and std as channels (*.tif)": ".tif",
           "HDF5 volume, mean and std with units and voxel size (*.h5)": ".h5",
           "Volume result, reopens in diffrecon (*.h5)": "result"}


class VolumeWindow(QtWidgets.QMainWindow):
    run_finished = QtCore.Signal(object)  # the VolumeResult, or None after a failure or an empty stop
    CLOSE_WAIT_MS = 3000

    def __init__(self, config: RunConfig | None = None, parent=None):
        super().__init__(parent)
        self.setWindowTitle("diffrecon — volume")
        self.resize(1500, 980)
        self.config = config or RunConfig()
        self.volume: VolumeSlices | None = None  # the slices a reconstruction runs on
        self.result = None  # the VolumeResult shown
        self.job: VolumeJob | None = None
        self.export_job: ExportJob | None = None
        self.path: Path | None = None
        self.last_error = ""
        self.view = VolumeView()
        self.setCentralWidget(self.view)
        self._build_form()
        self.log_view = QtWidgets.QPlainTextEdit(readOnly=True)
        self.log_view.setMaximumBlockCount(2000)
        self.message_label = QtWidgets.QLabel("")
        self.pixel_label = QtWidgets.QLabel("")
        self.progress_bar = QtWidgets.QProgressBar(maximumWidth=260, visible=False)
        for w in (self.message_label, self.pixel_label):
            self.statusBar().addWidget(w, 1)
        self.statusBar().addPermanentWidget(self.progress_bar)
        self.view.hovered_text.connect(self.pixel_label.setText)
        log_dock = QtWidgets.QDockWidget("Log", self)
        log_dock.setObjectName("Log")
        log_dock.setWidget(self.log_view)
        self.addDockWidget(QtCore.Qt.DockWidgetArea.LeftDockWidgetArea, log_dock)
        style, sp = self.style(), QtWidgets.QStyle.StandardPixmap
        self.open_action = QtGui.QAction(style.standardIcon(sp.SP_DialogOpenButton), "&Open volume…", self)
        self.open_action.triggered.connect(lambda *_: self.open_dialog())
        self.reconstruct_action = QtGui.QAction(style.standardIcon(sp.SP_MediaPlay), "&Reconstruct volume", self)
        self.reconstruct_action.triggered.connect(lambda *_: self.start_run())
        self.stop_action = QtGui.QAction(style.standardIcon(sp.SP_MediaStop), "&Stop", self)
        self.stop_action.triggered.connect(lambda *_: self.stop_run())
        self.export_action = QtGui.QAction(style.standardIcon(sp.SP_DialogSaveButton), "&Export volume…", self)
        self.export_action.triggered.connect(lambda *_: self.export_dialog())
        menu = self.menuBar().addMenu("&Volume")
        actions = [self.open_action, self.reconstruct_action, self.stop_action, self.export_action]
        menu.addActions(actions)
        toolbar = self.addToolBar("Volume")
        toolbar.setObjectName("Volume")
        toolbar.setToolButtonStyle(QtCore.Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        toolbar.addActions(actions)
        self.dark = apply_theme(getattr(parent, "theme", "system"), self)
        self._update_enabled()

    def _build_form(self) -> None:
        form = QtWidgets.QFormLayout()
        self.steps_box = QtWidgets.QSpinBox(minimum=1, maximum=10000, value=self.config.steps)
        self.samples_box = QtWidgets.QSpinBox(minimum=1, maximum=1000, value=self.config.samples)
        self.seed_box = QtWidgets.QSpinBox(minimum=0, maximum=2**31 - 1, value=self.config.seed)
        self.lam_z_box = QtWidgets.QDoubleSpinBox(minimum=0.0, maximum=1000.0, value=1.0, decimals=3, singleStep=0.25)
        self.lam_z_box.setToolTip("Weight of the difference between neighbouring slices relative to the prior's "
                                  "term (0: slice by slice).")
        self.prior_edit = QtWidgets.QLineEdit(self.config.prior)
        self.prior_edit.setToolTip("default (bundled), gaussian, or a prior folder.")
        for label, w in (("steps", self.steps_box), ("samples", self.samples_box), ("seed", self.seed_box),
                         ("lam_z", self.lam_z_box), ("prior", self.prior_edit)):
            form.addRow(label, w)
        box = QtWidgets.QWidget()
        outer = QtWidgets.QVBoxLayout(box)
        group = QtWidgets.QGroupBox("DiffPIR, coupled along z")
        group.setLayout(form)
        outer.addWidget(group)
        self.run_button = QtWidgets.QPushButton("Reconstruct volume")
        self.run_button.setStyleSheet("font-weight: bold; padding: 6px;")
        self.run_button.clicked.connect(lambda: self.start_run())
        self.stop_button = QtWidgets.QPushButton("Stop")
        self.stop_button.clicked.connect(lambda: self.stop_run())
        outer.addWidget(self.run_button)
        outer.addWidget(self.stop_button)
        self.info_label = QtWidgets.QLabel("", wordWrap=True)
        outer.addWidget(self.info_label)
        outer.addStretch(1)
        dock = QtWidgets.QDockWidget("Reconstruct", self)
        dock.setObjectName("Reconstruct")
        dock.setWidget(box)
        self.addDockWidget(QtCore.Qt.DockWidgetArea.LeftDockWidgetArea, dock)

    # ------------------------------------------------------------------ opening
    def open_dialog(self) -> None:
        start = str(self.path.parent) if self.path else ""
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Open a volume result or volume measurement", start,
                                                        "HDF5 files (*.h5 *.hdf5);;All files (*)")
        if path:
            self.open_file(path)

    def open_file(self, path: str | Path) -> bool:
        """Show a volume result file, or the slices of a volume measurement file."""
        path = Path(path)
        if self.is_running():
            self.report_error(f"{path.name} was not opened; stop the running volume reconstruction first.")
            return False
        try:
            kind = volume_kind(path)
            if kind == "result":
                from ..volume.file import read_volume

                self.volume = None
                self.set_result(read_volume(path))
            elif kind == "measurement":
                self.set_volume_slices(read_volume_slices(path))
            else:
                raise InputError(f"File {path} is neither a volume result nor a volume measurement.")
        except (DiffreconError, OSError) as err:
            self.report_error(str(err) if isinstance(err, DiffreconError)
                              else f"{path.name} could not be opened ({err}).")
            return False
        self.path = path
        self.setWindowTitle(f"diffrecon — volume — {path.name}")
        self.show_message(f"Opened {path.name}.")
        return True

    def set_volume_slices(self, volume: VolumeSlices) -> None:
        """Show a stack of slice measurements (their direct reconstructions) ready to reconstruct."""
        from ..volume import check_slices, default_lam_z

        check_slices(volume.slices)
        self.volume, self.result = volume, None
        m = volume.slices[0]
        self.lam_z_box.setValue(default_lam_z(volume.z_spacing / m.pixel_size))  # 1 / (distance in pixels)^2
        direct = direct_volume(volume.slices)
        self.view.set_volume(direct, None, units=m.units, z_spacing=volume.z_spacing, pixel_size=m.pixel_size,
                             pixel_unit=m.pixel_unit, truth=slices_truth(volume), mean_title="direct")
        self.info_label.setText(f"{len(volume.slices)} slices of {m.operator.kind} "
                                f"{' × '.join(map(str, m.image_shape[-2:]))}, noise σ {m.noise_sigma:.3g}; "
                                f"slices {volume.z_spacing:g} {m.pixel_unit} apart.")
        self._update_enabled()

    def set_result(self, result) -> None:
        """Show a :class:`~diffrecon.volume.VolumeResult` (its geometry from its provenance)."""
        from ..volume.file import volume_geometry

        self.result = result
        g = volume_geometry(result)
        truth = slices_truth(self.volume) if self.volume is not None else None
        self.view.set_volume(result.mean, result.std, units=result.units, z_spacing=g.z_spacing,
                             pixel_size=g.pixel_size, pixel_unit=g.pixel_unit, truth=truth)
        metrics = ", ".join(f"{k} {v:.4g}" for k, v in result.metrics.items())
        state = "" if result.complete else " (stopped early)"
        self.info_label.setText(f"{result.n_samples} samples{state}; {metrics}.")
        self._update_enabled()

    # ------------------------------------------------------------------ running
    def run_config(self) -> RunConfig:
        return dataclasses.replace(self.config, solver="diffpir", params={}, steps=self.steps_box.value(),
                                   samples=self.samples_box.value(), seed=self.seed_box.value(),
                                   prior=self.prior_edit.text().strip() or "default")

    def set_config(self, config: RunConfig, lam_z: float | None = None) -> None:
        self.config = config
        self.steps_box.setValue(config.steps)
        self.samples_box.setValue(config.samples)
        self.seed_box.setValue(config.seed)
        self.prior_edit.setText(config.prior)
        if lam_z is not None:
            self.lam_z_box.setValue(lam_z)

    def is_running(self) -> bool:
        return self.job is not None and self.job.running()

    def start_run(self) -> bool:
        if self.volume is None or self.is_running():
            self.report_error("Open a volume measurement to reconstruct." if self.volume is None
                              else "A reconstruction is running; stop it first.")
            return False
        self.job = job = VolumeJob(self.volume.slices, self.run_config(), self.lam_z_box.value(), parent=self)
        job.progress.connect(self._on_progress)
        job.statistics.connect(self._on_statistics)
        job.finished_result.connect(self._on_finished)
        job.failed.connect(self._on_failed)
        job.stopped_empty.connect(lambda: self._end(None, "stopped before any sample finished"))
        job.log.connect(self.log)
        job.finished.connect(self._update_enabled)
        self._started = time.monotonic()
        self._done = False
        self.progress_bar.setValue(0)
        self.progress_bar.show()
        self.show_message("Reconstructing the volume…")
        job.start()
        self._update_enabled()
        return True

    def stop_run(self) -> None:
        if self.is_running():
            self.job.request_stop()
            self.show_message("Stopping at the next slice batch…")

    def wait_for_run(self, timeout_ms: int = 60000) -> bool:
        """Run a local event loop until the run has delivered its result or failure (scripts)."""
        if self.job is not None and not self._done:
            loop = QtCore.QEventLoop()
            self.run_finished.connect(loop.quit)
            QtCore.QTimer.singleShot(timeout_ms, loop.quit)
            loop.exec()
            self.run_finished.disconnect(loop.quit)
        return self.job is None or (self._done and self.job.wait(5000))

    def _on_progress(self, event) -> None:
        if event.work_total:
            self.progress_bar.setMaximum(event.work_total)
            self.progress_bar.setValue(event.work_done)
        eta = f", about {event.eta:.0f} s left" if event.eta is not None else ""
        self.show_message(f"Step {event.step}/{event.steps} of sample {event.samples_done + 1}/"
                          f"{event.samples_total}{eta}.")

    def _on_statistics(self, event) -> None:
        m = self.volume.slices[0]
        self.view.set_volume(event.mean, event.std, units=m.units, z_spacing=self.volume.z_spacing,
                             pixel_size=m.pixel_size, pixel_unit=m.pixel_unit, truth=slices_truth(self.volume))

    def _on_finished(self, result) -> None:
        from ..volume.file import with_geometry

        m = self.volume.slices[0]
        result = with_geometry(result, z_spacing=self.volume.z_spacing, pixel_size=m.pixel_size,
                               pixel_unit=m.pixel_unit)
        self.set_result(result)
        self._end(result, "finished" if result.complete else "stopped early")

    def _on_failed(self, text: str) -> None:
        self.report_error(text)
        self._end(None, "failed")

    def _end(self, result, outcome: str) -> None:
        self._done = True
        self.progress_bar.hide()
        seconds = time.monotonic() - self._started
        self.log(f"Volume reconstruction {outcome} after {seconds:.1f} s.")
        if result is not None:
            self.show_message(f"Volume reconstruction {outcome}: {result.n_samples} samples in {seconds:.1f} s.")
        self._update_enabled()
        self.run_finished.emit(result)

    # ------------------------------------------------------------------ export
    def export_dialog(self) -> None:
        if self.result is None:
            self.report_error("There is no volume result to export yet; reconstruct the volume first.")
            return
        start = str(self.path.with_suffix("")) + "_volume" if self.path else "volume"
        path, chosen = QtWidgets.QFileDialog.getSaveFileName(self, "Export volume", start, ";;".join(EXPORTS))
        if path:
            kind = EXPORTS.get(chosen, ".tif")
            suffix = ".h5" if kind == "result" else kind
            path = Path(path)
            self.export(path if path.suffix else path.with_suffix(suffix), result_file=kind == "result", wait=False)

    def export(self, path: str | Path, *, result_file: bool = False, wait: bool = True) -> bool:
        """Write the volume off the GUI thread, with progress: the result file (``result_file``),
        else TIFF or HDF5 by the suffix. With ``wait``, True once it is written (scripts, tests);
        without, True once it started (the dialog)."""
        if self.result is None or self.is_exporting():
            self.report_error("There is no volume result to export yet; reconstruct the volume first."
                              if self.result is None else "An export is being written; wait for it to end.")
            return False
        self.export_job = job = ExportJob(path, self.result, result_file, parent=self)
        outcome: list[bool] = []
        job.progress.connect(self._on_export_progress)
        job.written.connect(lambda p: (outcome.append(True), self.show_message(f"Exported the volume to {p}.")))
        job.failed.connect(lambda text: (outcome.append(False), self.report_error(text)))
        job.log.connect(self.log)
        job.finished.connect(self._on_export_ended)
        self.progress_bar.setValue(0)
        self.progress_bar.show()
        job.start()
        self._update_enabled()
        if not wait:
            return True
        job.wait()
        QtWidgets.QApplication.processEvents()  # the job's queued signals
        return outcome == [True]

    def is_exporting(self) -> bool:
        return self.export_job is not None and self.export_job.running()

    def _on_export_progress(self, done: int, total: int) -> None:
        self.progress_bar.setMaximum(total)
        self.progress_bar.setValue(done)

    def _on_export_ended(self) -> None:
        self.progress_bar.hide()
        self._update_enabled()

    # ------------------------------------------------------------------ messages and state
    def show_message(self, text: str) -> None:
        self.message_label.setText(text)

    def report_error(self, text: str) -> None:
        self.last_error = text
        self.message_label.setText(f"⚠ {text}")
        self.log(text, "error")

    def log(self, message: str, level: str = "info") -> None:
        self.log_view.appendPlainText(f"[{time.strftime('%H:%M:%S')}] {level}: {message}")
        if level in ("warning", "error"):
            self.info_label.setToolTip(message)

    def _update_enabled(self, *_) -> None:
        running = self.is_running() and not getattr(self, "_done", True)
        can_run = self.volume is not None and not running
        for w in (self.reconstruct_action, self.run_button):
            w.setEnabled(can_run)
        for w in (self.stop_action, self.stop_button):
            w.setEnabled(running)
        self.open_action.setEnabled(not running)
        self.export_action.setEnabled(self.result is not None and not running and not self.is_exporting())

    def eventFilter(self, watched, event) -> bool:
        """The main window closing stops this window's run first (its close waits for our jobs)."""
        if watched is self.parent() and event.type() == QtCore.QEvent.Type.Close:
            self.stop_run()
        return False

    def closeEvent(self, event: QtGui.QCloseEvent) -> None:
        if closing.stop_and_wait(self, [self.stop_run], self.CLOSE_WAIT_MS):
            self.log("Closing: a step still runs and ends in the background.")
        super().closeEvent(event)


def open_volume_window(main, path: str | Path) -> VolumeWindow | None:
    """A volume window beside ``main`` (the main window) showing ``path``, with ``main``'s
    run settings; None (and the error in ``main``) when the file cannot be shown."""
    window = _beside(main)
    if not window.open_file(path):
        main.report_error(window.last_error)
        window.deleteLater()
        return None
    return _shown(main, window)


def _beside(main) -> VolumeWindow:
    """A volume window with ``main``'s run settings (its own defaults while the form is invalid)."""
    try:
        config = main.solver.config()
    except Exception:  # noqa: BLE001 - a form being edited
        config = None
    window = VolumeWindow(config, parent=main)
    window.setWindowFlag(QtCore.Qt.WindowType.Window)
    main.installEventFilter(window)
    return window


def _shown(main, window: VolumeWindow) -> VolumeWindow:
    main.volume_windows = [w for w in getattr(main, "volume_windows", []) if w.isVisible()] + [window]
    window.show()
    return window


def open_volume_demo(main, n_slices: int = 16, size: int = 64) -> VolumeWindow | None:
    """A volume window beside ``main`` on the phantom volume (:func:`diffrecon.volume.volume_demo`,
    12-view CT per slice, slices two pixels apart), ready to reconstruct."""
    from ..volume import volume_demo

    window = _beside(main)
    try:
        slices = volume_demo(n_slices, size, options={"n_views": 12}, z_spacing=2.0)
        window.set_volume_slices(VolumeSlices(slices, z_spacing=2 * slices[0].pixel_size))
    except Exception as err:  # noqa: BLE001 - no CT operator in this build must not kill the window
        main.report_error(f"The volume demo could not be made ({describe_error(err)}).")
        window.deleteLater()
        return None
    window.setWindowTitle("diffrecon — volume — phantom volume demo")
    return _shown(main, window)


def is_volume_file(path: str | Path) -> bool:
    return volume_kind(path) is not None
