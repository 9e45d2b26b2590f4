"""The window's batch queue (File ▸ Batch…): many files reconstructed with the window's current
run settings, one table row per file with its state, progress, time, PSNR and residual.

The queue is the Qt-free :class:`~diffrecon.batch.queue.BatchQueue`; its blocking ``run`` goes
through a :class:`BatchJob` (the window's one background-job idiom, :mod:`.jobs`), which hands
every queue event to a signal; Qt queues it to this dock on the GUI thread. Results, skipping of
finished files and the summary table are those of ``diffrecon batch``. Double-clicking a finished
row opens its result in the window; closing the window cancels a running batch.
"""
from __future__ import annotations

import math
from pathlib import Path

from PySide6 import QtCore, QtGui, QtWidgets

from ..batch.job import DIVERGED, DONE, FAILED, SKIPPED
from ..batch.manifest import RESULT_SUFFIX, Item, read_manifest
from ..batch.queue import FINISHED, IDLE, PAUSED, QUEUED, RUNNING, BatchQueue, FileEvent, QueueEvent
from ..errors import DiffreconError
from . import gc_guard
from .jobs import Job, JobSignals, Returned
from .metrics_table import format_metric

INPUT_FILTER = "Measurements (*.h5 *.hdf5 *.nxs);;All files (*)"
COLUMNS = ("File", "State", "Progress", "Time", "PSNR", "Residual / noise")
STATE_COLOURS = {DONE: "#2e9d4a", SKIPPED: "#5a7fa8", FAILED: "#d04040", DIVERGED: "#d08020"}
OPENABLE = (DONE, SKIPPED, DIVERGED)  # states whose result file exists


class BatchSignals(JobSignals):
    event = QtCore.Signal(object)  # a queue FileEvent or QueueEvent
    summary = QtCore.Signal(object)  # the BatchSummary, once the queue has ended


def _run_queue(job: "BatchJob", queue: BatchQueue):
    unsubscribe = queue.subscribe(job.event.emit)  # called on this pool thread; Qt queues each to the dock
    try:
        return queue.run()
    finally:
        unsubscribe()


class BatchJob(Job):
    """Runs ``queue.run()`` in the jobs' pool; stopping it cancels the queue."""

    SIGNALS = BatchSignals

    def __init__(self, queue: BatchQueue, owner: QtCore.QObject | None = None):
        super().__init__(_run_queue, queue, owner=owner, pass_job=True)
        self.queue = queue

    def request_stop(self) -> None:
        self.stop_event.set()
        self.queue.cancel()

    def route(self, event) -> None:
        if isinstance(event, Returned):
            self.summary.emit(event.value)


def format_seconds(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "—"
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 \
        else f"{seconds // 60}:{seconds % 60:02d}"


def items_for(paths: list[Path], out_dir: Path) -> list[Item]:
    """One batch item per input file, its result ``<stem>.result.h5`` in ``out_dir``."""
    return [Item(i, p.stem, p, out_dir / (p.stem + RESULT_SUFFIX)) for i, p in enumerate(paths)]


class BatchDock(QtWidgets.QDockWidget):
    """``window`` gives the run settings (``window.solver.config()``), opens results
    (``window.open_file``) and shows messages (``show_message``, ``report_error``, ``log``)."""

    def __init__(self, window: QtWidgets.QMainWindow):
        super().__init__("Batch", window)
        self.setObjectName("Batch")
        self.main_window = window
        self.paths: list[Path] = []
        self.out_dir: Path | None = None
        self.queue: BatchQueue | None = None
        self.job: BatchJob | None = None
        self.summary = None
        self._rows: dict[int, int] = {}  # queue index -> table row
        self._outputs: dict[int, Path] = {}
        self._build()
        gc_guard.register_busy(self.is_running)
        self._update_buttons()

    # ------------------------------------------------------------------ layout
    def _build(self) -> None:
        self.add_files_button = QtWidgets.QPushButton("Add files…")
        self.add_folder_button = QtWidgets.QPushButton("Add folder…")
        self.clear_button = QtWidgets.QPushButton("Clear")
        self.out_button = QtWidgets.QPushButton("Output folder…")
        self.out_label = QtWidgets.QLabel("no output folder")
        self.out_label.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        self.header = QtWidgets.QLabel("Add files or a folder, choose an output folder, then Start. "
                                       "The window's current run settings are used.")
        self.header.setWordWrap(True)
        self.table = QtWidgets.QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().hide()
        self.table.verticalHeader().setDefaultSectionSize(24)
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.horizontalHeader().setSectionResizeMode(0, QtWidgets.QHeaderView.ResizeMode.Stretch)
        self.table.cellDoubleClicked.connect(lambda row, _col: self.open_row(row))
        self.start_button = QtWidgets.QPushButton("Start")
        self.start_button.setStyleSheet("font-weight: bold;")
        self.pause_button = QtWidgets.QPushButton("Pause after this file")
        self.cancel_button = QtWidgets.QPushButton("Cancel")
        self.summary_button = QtWidgets.QPushButton("Open summary")
        self.add_files_button.clicked.connect(lambda: self.add_files_dialog())
        self.add_folder_button.clicked.connect(lambda: self.add_folder_dialog())
        self.clear_button.clicked.connect(lambda: self.clear())
        self.out_button.clicked.connect(lambda: self.choose_output_dialog())
        self.start_button.clicked.connect(lambda: self.start())
        self.pause_button.clicked.connect(lambda: self.toggle_pause())
        self.cancel_button.clicked.connect(lambda: self.cancel())
        self.summary_button.clicked.connect(lambda: self.open_summary())

        inputs = QtWidgets.QHBoxLayout()
        for w in (self.add_files_button, self.add_folder_button, self.clear_button):
            inputs.addWidget(w)
        inputs.addStretch(1)
        output = QtWidgets.QHBoxLayout()
        output.addWidget(self.out_button)
        output.addWidget(self.out_label, 1)
        buttons = QtWidgets.QHBoxLayout()
        for w in (self.start_button, self.pause_button, self.cancel_button):
            buttons.addWidget(w)
        buttons.addStretch(1)
        buttons.addWidget(self.summary_button)
        box = QtWidgets.QWidget()
        layout = QtWidgets.QVBoxLayout(box)
        layout.addLayout(inputs)
        layout.addLayout(output)
        layout.addWidget(self.header)
        layout.addWidget(self.table, 1)
        layout.addLayout(buttons)
        self.setWidget(box)

    # ------------------------------------------------------------------ inputs
    def add_files_dialog(self) -> None:
        paths, _ = QtWidgets.QFileDialog.getOpenFileNames(self, "Measurements for the batch", "", INPUT_FILTER)
        if paths:
            self.add_files(paths)

    def add_folder_dialog(self) -> None:
        folder = QtWidgets.QFileDialog.getExistingDirectory(self, "Folder of measurements for the batch")
        if folder:
            self.add_folder(folder)

    def choose_output_dialog(self) -> None:
        folder = QtWidgets.QFileDialog.getExistingDirectory(self, "Output folder for the results")
        if folder:
            self.set_output(folder)

    def add_folder(self, folder: str | Path) -> bool:
        """Queue the folder's measurement files (sorted by name, as ``diffrecon batch`` does)."""
        try:
            items = read_manifest(Path(folder), Path(folder))
        except DiffreconError as err:
            self.main_window.report_error(str(err))
            return False
        return self.add_files([item.input for item in items])

    def add_files(self, paths) -> bool:
        """Queue ``paths``; while a batch runs they join it (the queue refuses a file whose result
        name is taken, in one sentence)."""
        new = list(dict.fromkeys(Path(p) for p in paths if Path(p) not in self.paths))
        if self.is_running():
            try:
                added = self.queue.add(items_for(new, self.out_dir))
            except DiffreconError as err:
                self.main_window.report_error(str(err))
                return False
            self._outputs.update({item.index: item.output for item in added})
            self.paths.extend(new)  # their rows appear with the queue's first event for them
        else:
            for path in new:  # numbered as the queue will number them
                self.paths.append(path)
                self._rows[len(self.paths) - 1] = self._append_row(len(self.paths) - 1, path.stem, QUEUED)
        self._update_buttons()
        return True

    def clear(self) -> None:
        if not self.is_running():
            self.paths, self._rows, self._outputs, self.summary = [], {}, {}, None
            self.table.setRowCount(0)
            self._update_buttons()

    def set_output(self, folder: str | Path) -> None:
        self.out_dir = Path(folder)
        self.out_label.setText(str(self.out_dir))
        self.out_label.setToolTip(str(self.out_dir))
        self._update_buttons()

    # ------------------------------------------------------------------ commands
    def is_running(self) -> bool:
        return self.job is not None and self.job.running()

    def start(self) -> bool:
        """Run every listed file with the window's current settings; finished results of the same
        settings and input are skipped, so Start after a cancel resumes."""
        if self.is_running() or not self.paths or self.out_dir is None:
            return False
        config = self.main_window.solver.config()
        try:
            queue = BatchQueue([], config, self.out_dir)
            items = queue.add(items_for(self.paths, self.out_dir))
        except DiffreconError as err:
            self.main_window.report_error(str(err))
            return False
        self.queue, self.summary = queue, None
        self._outputs = {item.index: item.output for item in items}
        self.table.setRowCount(0)
        self._rows = {}
        for event in queue.files():
            self._rows[event.index] = self._append_row(event.index, event.name, event.state)
        self.job = BatchJob(queue, owner=self)
        self.job.event.connect(self._on_event, QtCore.Qt.ConnectionType.QueuedConnection)
        self.job.summary.connect(self._on_summary, QtCore.Qt.ConnectionType.QueuedConnection)
        self.job.failed.connect(self.main_window.report_error)
        self.job.log.connect(self.main_window.log)
        self.job.finished.connect(self._update_buttons)
        self.job.start()
        self.main_window.log(f"Batch: {len(items)} files → {self.out_dir}; solver={config.solver} steps={config.steps} "
                         f"samples={config.samples} seed={config.seed} prior={config.prior}")
        self._set_header(IDLE, None)
        self._update_buttons()
        return True

    def toggle_pause(self) -> None:
        if self.queue is None or not self.is_running():
            return
        if self.queue.state == PAUSED:
            self.queue.resume()
        else:
            self.queue.pause()
        self._update_buttons()

    def cancel(self) -> None:
        """Stop the file in progress within one solver step and start no other (nothing is written
        for them); also what closing the window calls."""
        if self.is_running():
            self.job.request_stop()

    def open_row(self, row: int) -> bool:
        index = next((i for i, r in self._rows.items() if r == row), None)
        state = self.table.item(row, 1).text() if self.table.item(row, 1) else ""
        output = self._outputs.get(index)
        if state not in OPENABLE or output is None or not output.exists():
            return False
        return bool(self.main_window.open_file(output))

    def open_summary(self) -> None:
        if self.summary is not None and self.summary.csv.exists():
            QtGui.QDesktopServices.openUrl(QtCore.QUrl.fromLocalFile(str(self.summary.csv)))

    # ------------------------------------------------------------------ the queue's events
    def _on_event(self, event) -> None:
        if isinstance(event, FileEvent):
            self._show_file(event)
        elif isinstance(event, QueueEvent):
            self._set_header(event.state, event.progress)
            self._update_buttons()

    def _on_summary(self, summary) -> None:
        self.summary = summary
        counts = ", ".join(f"{n} {state}" for state, n in sorted(summary.counts.items()))
        self.main_window.show_message(f"Batch ended in {format_seconds(summary.seconds)}: {counts}. "
                                  f"Summary: {summary.csv}")
        self.main_window.log(f"Batch ended: {counts}; summary {summary.csv}")
        self._update_buttons()

    def _show_file(self, event: FileEvent) -> None:
        row = self._rows.get(event.index)
        if row is None:  # added while running
            row = self._rows[event.index] = self._append_row(event.index, event.name, event.state)
        self._set_text(row, 1, event.state)
        bar = self.table.cellWidget(row, 2)
        bar.setValue(0 if event.state == FAILED else int(round(100 * event.fraction)))  # no bar full of failure
        bar.setTextVisible(event.state != FAILED)
        record = event.record
        if record is None:
            return
        self._set_text(row, 3, f"{record.seconds:.1f} s" if record.seconds else "")
        self._set_text(row, 4, format_metric("psnr", record.metrics["psnr"])[1] if "psnr" in record.metrics else "")
        ratio = record.metrics.get("residual_ratio")
        self._set_text(row, 5, format_metric("residual_ratio", ratio)[1] if ratio is not None else
                       format_metric("residual", record.metrics["residual"])[1] if "residual" in record.metrics else "")
        tip = record.error or f"{record.output}{' (double-click to open)' if record.status in OPENABLE else ''}"
        colour = STATE_COLOURS.get(record.status)
        for col in range(len(COLUMNS)):
            item = self.table.item(row, col)
            if item is not None:
                item.setToolTip(tip)
                if colour and col == 1:
                    item.setForeground(QtGui.QColor(colour))
        bar.setToolTip(tip)

    # ------------------------------------------------------------------ helpers
    def _append_row(self, index: int, name: str, state: str) -> int:
        row = self.table.rowCount()
        self.table.insertRow(row)
        self._set_text(row, 0, name)
        self._set_text(row, 1, state)
        bar = QtWidgets.QProgressBar()
        bar.setRange(0, 100)
        bar.setValue(0)
        self.table.setCellWidget(row, 2, bar)
        for col in (3, 4, 5):
            self._set_text(row, col, "")
        if index < len(self.paths):
            self.table.item(row, 0).setToolTip(str(self.paths[index]))
        return row

    def _set_text(self, row: int, col: int, text: str) -> None:
        item = self.table.item(row, col)
        if item is None:
            self.table.setItem(row, col, QtWidgets.QTableWidgetItem(text))
        else:
            item.setText(text)

    def _set_header(self, state: str, progress) -> None:
        if progress is None:
            self.header.setText(f"Starting {len(self._rows)} files…")
            return
        running = any(self.table.item(r, 1).text() == RUNNING for r in range(self.table.rowCount()))
        what = {PAUSED: "paused after the file in progress" if running else "paused",
                FINISHED: "finished"}.get(state, state)
        self.header.setText(f"<b>{progress.done}/{progress.total} ended</b> · {progress.failed} failed · "
                            f"{progress.skipped} skipped · ETA {format_seconds(progress.eta)} · {what}")

    def _update_buttons(self, *_) -> None:
        running = self.is_running()
        self.start_button.setEnabled(not running and bool(self.paths) and self.out_dir is not None)
        self.out_button.setEnabled(not running)
        self.clear_button.setEnabled(not running)
        self.pause_button.setEnabled(running)
        self.cancel_button.setEnabled(running)
        paused = running and self.queue is not None and self.queue.state == PAUSED
        self.pause_button.setText("Resume" if paused else "Pause after this file")
        self.summary_button.setEnabled(self.summary is not None and self.summary.csv.exists())
