"""The Priors dock: the bundled and installed priors with the selected one's card; Add folder…,
Add checkpoint…, Remove; Fine-tune on a folder… with a progress bar, Stop, the time estimate and
the before/after denoising table. Selecting a prior makes it the run's prior (the Setup panel's
Prior field). The model is the Qt-free :class:`~diffrecon.session.priors.PriorLibrary`; adding and
fine-tuning run as :class:`~.jobs.Job`\\ s, so the window stays responsive."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from PySide6 import QtCore, QtWidgets

from ..session.priors import PriorEntry, PriorLibrary
from ..training.finetune import (DenoiseCheck, FineTuneEstimate, FineTuneProgress, FineTuneSettings,
                                 FineTuneStarted, format_duration)
from . import gc_guard
from .jobs import Job, JobSignals, Returned

CHECKPOINT_FILTER = "Checkpoints (*.safetensors *.pt *.pth);;All files (*)"
CHECK_COLUMNS = ("σ", "noisy", "before", "after", "after − before")


class AddSignals(JobSignals):
    added = QtCore.Signal(object)  # the new PriorEntry


class _AddJob(Job):
    SIGNALS = AddSignals

    def route(self, event) -> None:
        self.added.emit(event.value)


class FineTuneSignals(JobSignals):
    started_training = QtCore.Signal(object)  # FineTuneStarted
    progress = QtCore.Signal(object)  # FineTuneProgress
    estimate = QtCore.Signal(object)  # FineTuneEstimate
    done = QtCore.Signal(object, object)  # the new PriorEntry, FineTuned


class FineTuneJob(Job):
    """``library.fine_tune`` in the jobs' pool; its events arrive on this job's signals."""

    SIGNALS = FineTuneSignals

    def __init__(self, library: PriorLibrary, entry: PriorEntry, folder: Path, settings: FineTuneSettings, owner):
        super().__init__(lambda job: library.fine_tune(entry, folder, settings, job.route, job.stop_event),
                         owner=owner, pass_job=True)

    def route(self, event) -> None:
        if isinstance(event, FineTuneProgress):
            self.progress.emit(event)
        elif isinstance(event, FineTuneEstimate):
            self.estimate.emit(event)
        elif isinstance(event, FineTuneStarted):
            self.started_training.emit(event)
        elif isinstance(event, Returned):
            self.done.emit(*event.value)


class PriorsPanel(QtWidgets.QWidget):
    """``choose(value)`` makes a prior the run's prior (the window passes ``SolverPanel.set_prior``)."""

    def __init__(self, library: PriorLibrary | None = None, choose: Callable[[str], None] | None = None,
                 current: str | None = None, parent=None):
        super().__init__(parent)
        self.library = library or PriorLibrary()
        self.choose = choose or (lambda value: None)
        self.job: Job | None = None
        self.last_check: DenoiseCheck | None = None
        self._build()
        self.refresh(current)
        gc_guard.register_busy(self.is_running)

    # ------------------------------------------------------------------ layout
    def _build(self) -> None:
        self.list = QtWidgets.QListWidget()
        self.list.currentItemChanged.connect(self._on_current_changed)
        self.card = QtWidgets.QFormLayout()
        self.card_labels: dict[str, QtWidgets.QLabel] = {}
        for key, _ in PriorEntry("", "", "", None, "", "", "", None, None).card_rows():
            label = QtWidgets.QLabel("—", wordWrap=True)
            label.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
            # a long path or module name must not widen the dock: it wraps where it can, the tooltip has all
            label.setSizePolicy(QtWidgets.QSizePolicy.Policy.Ignored, QtWidgets.QSizePolicy.Policy.Preferred)
            self.card_labels[key] = label
            self.card.addRow(key, label)
        self.add_folder_button = QtWidgets.QPushButton("Add folder…")
        self.add_checkpoint_button = QtWidgets.QPushButton("Add checkpoint…")
        self.remove_button = QtWidgets.QPushButton("Remove")
        self.add_folder_button.clicked.connect(lambda: self._ask_path(folder=True))
        self.add_checkpoint_button.clicked.connect(lambda: self._ask_path(folder=False))
        self.remove_button.clicked.connect(lambda: self.remove_current())
        self.steps = QtWidgets.QSpinBox(minimum=1, maximum=1_000_000, value=FineTuneSettings.steps)
        self.batch = QtWidgets.QSpinBox(minimum=1, maximum=4096, value=FineTuneSettings.batch_size)
        self.steps.valueChanged.connect(lambda *_: self._show_stored_estimate())
        self.batch.valueChanged.connect(lambda *_: self._show_stored_estimate())
        self.fine_tune_button = QtWidgets.QPushButton("Fine-tune on a folder…")
        self.fine_tune_button.setToolTip("Train the selected prior further on a folder of PNG/TIFF images (diffrecon "
                                         "train --init-from); the last images are held out for the check.")
        self.fine_tune_button.clicked.connect(lambda: self._ask_fine_tune_folder())
        self.stop_button = QtWidgets.QPushButton("Stop")
        self.stop_button.setToolTip("End training after the current step; the prior trained so far is installed "
                                    "and checked.")
        self.stop_button.clicked.connect(lambda: self.stop())
        self.progress = QtWidgets.QProgressBar(minimum=0, maximum=1, value=0, textVisible=True)
        self.estimate_label = QtWidgets.QLabel(wordWrap=True)
        self.message = QtWidgets.QLabel(wordWrap=True)
        self.message.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        self.check_title = QtWidgets.QLabel("Before/after denoising check: none yet.", wordWrap=True)
        self.check_table = QtWidgets.QTableWidget(0, len(CHECK_COLUMNS))
        self.check_table.setHorizontalHeaderLabels(CHECK_COLUMNS)
        self.check_table.verticalHeader().hide()
        self.check_table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.check_table.horizontalHeader().setSectionResizeMode(QtWidgets.QHeaderView.ResizeMode.Stretch)
        self.check_table.setMaximumHeight(110)

        content = QtWidgets.QWidget()  # scrolled: a dock shorter than the card and the table keeps all in reach
        layout = QtWidgets.QVBoxLayout(content)
        self.list.setMinimumHeight(120)
        layout.addWidget(self.list, 2)
        card_box = QtWidgets.QGroupBox("Card")
        card_box.setLayout(self.card)
        layout.addWidget(card_box)
        buttons = QtWidgets.QGridLayout()  # two columns: the dock may be narrow
        buttons.addWidget(self.add_folder_button, 0, 0)
        buttons.addWidget(self.add_checkpoint_button, 0, 1)
        buttons.addWidget(self.remove_button, 1, 0)
        layout.addLayout(buttons)
        tune = QtWidgets.QGroupBox("Fine-tune")
        form = QtWidgets.QFormLayout(tune)
        form.addRow("Steps", self.steps)
        form.addRow("Batch size", self.batch)
        form.addRow(self.fine_tune_button)
        run = QtWidgets.QHBoxLayout()
        run.addWidget(self.progress, 3)
        run.addWidget(self.stop_button, 1)
        form.addRow(run)
        form.addRow(self.estimate_label)
        form.addRow(self.check_title)
        form.addRow(self.check_table)
        layout.addWidget(tune)
        layout.addWidget(self.message)
        scroll = QtWidgets.QScrollArea(widgetResizable=True, frameShape=QtWidgets.QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(QtCore.Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setWidget(content)
        outer = QtWidgets.QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)

    # ------------------------------------------------------------------ list and card
    def refresh(self, select: str | None = None) -> None:
        """Read the list again, selecting ``select`` (a prior's value) without choosing it for the run."""
        select = select if select is not None else (self.current().value if self.current() else None)
        with QtCore.QSignalBlocker(self.list):
            self.list.clear()
            for entry in self.library.entries():
                item = QtWidgets.QListWidgetItem(f"{entry.name}   ({entry.origin})")
                item.setData(QtCore.Qt.ItemDataRole.UserRole, entry)
                item.setToolTip(entry.value)
                self.list.addItem(item)
                if entry.value == select:
                    self.list.setCurrentItem(item)
        self._show_card(self.current())

    def entries(self) -> list[PriorEntry]:
        return [self.list.item(i).data(QtCore.Qt.ItemDataRole.UserRole) for i in range(self.list.count())]

    def current(self) -> PriorEntry | None:
        item = self.list.currentItem()
        return item.data(QtCore.Qt.ItemDataRole.UserRole) if item is not None else None

    def select(self, value: str) -> bool:
        """Select the prior whose value is ``value`` and make it the run's prior."""
        for i, entry in enumerate(self.entries()):
            if entry.value == value:
                self.list.setCurrentRow(i)
                return True
        return False

    def _on_current_changed(self, *_) -> None:
        entry = self.current()
        self._show_card(entry)
        if entry is not None:
            self.choose(entry.value)

    def _show_card(self, entry: PriorEntry | None) -> None:
        rows = dict(entry.card_rows()) if entry is not None else {}
        for key, label in self.card_labels.items():
            label.setText(rows.get(key, "—"))
            label.setToolTip(rows.get(key, ""))
        self._update_buttons()
        self._show_stored_estimate()

    # ------------------------------------------------------------------ add and remove
    def _ask_path(self, folder: bool) -> None:
        dialog = QtWidgets.QFileDialog
        path = (dialog.getExistingDirectory(self, "Prior folder (card.json, config.json, weights)") if folder
                else dialog.getOpenFileName(self, "Prior checkpoint", "", CHECKPOINT_FILTER)[0])
        if path:
            self.add_path(path)

    def add_path(self, path: str | Path) -> Job:
        """Check and install ``path`` in the background; the list selects it once added."""
        job = _AddJob(self.library.add, Path(path), owner=self)
        job.added.connect(self._on_added)
        job.failed.connect(self._on_failed)
        self._start(job, f"Checking {Path(path).name}…")
        return job

    def _on_added(self, entry: PriorEntry) -> None:
        self.refresh()
        self.select(entry.value)
        self.message.setText(f"Added {entry.name} to the priors folder.")

    def remove_current(self) -> None:
        entry = self.current()
        if entry is None:
            return
        try:
            self.library.remove(entry)
        except Exception as err:  # noqa: BLE001 - a file the system refuses to delete: one sentence
            self.message.setText(str(err))
            return
        self.refresh("default")
        if self.current() is not None and self.current().value == "default":
            self.choose("default")  # the removed prior must not stay the run's prior
        self.message.setText(f"Removed {entry.name}; the run's prior is default.")

    # ------------------------------------------------------------------ fine-tune
    def settings(self) -> FineTuneSettings:
        return FineTuneSettings(steps=self.steps.value(), batch_size=self.batch.value())

    def _show_stored_estimate(self) -> None:
        entry = self.current()
        if self.is_running() or entry is None or not entry.fine_tunable:
            if not self.is_running():
                self.estimate_label.setText("" if entry is None else "Only prior folders written by diffrecon train "
                                            "can be fine-tuned." if not entry.fine_tunable else "")
            return
        seconds = self.library.stored_estimate(entry, self.settings())
        self.estimate_label.setText(
            f"Estimated {format_duration(seconds)} for {self.steps.value()} steps, from the rate an earlier fine-tune "
            "of this network measured on this machine (an estimate)." if seconds is not None else
            "The time per step is measured on the first steps of the run; the estimate appears here.")

    def _ask_fine_tune_folder(self) -> None:
        folder = QtWidgets.QFileDialog.getExistingDirectory(self, "Folder of your images (PNG, TIFF)")
        if folder:
            self.start_fine_tune(folder)

    def start_fine_tune(self, folder: str | Path, settings: FineTuneSettings | None = None) -> Job | None:
        entry = self.current()
        if entry is None or self.is_running():
            return None
        settings = settings or self.settings()
        job = FineTuneJob(self.library, entry, Path(folder), settings, self)
        self.fine_tune_folder = Path(folder)
        job.started_training.connect(self._on_training_started)
        job.progress.connect(self._on_progress)
        job.estimate.connect(lambda e: self.estimate_label.setText(e.text()))
        job.done.connect(self._on_fine_tuned)
        job.failed.connect(self._on_failed)
        self.progress.setRange(0, settings.steps)
        self.progress.setValue(0)
        self.progress.setFormat(f"loading {Path(folder).name}…")
        self._start(job, f"Fine-tuning {entry.name} on {Path(folder).name}…")
        return job

    def _on_training_started(self, event: FineTuneStarted) -> None:
        self.message.setText(f"Training on {event.images} images at {event.size}x{event.size} on {event.device}; "
                             f"{event.held_out} held out for the check.")
        self.progress.setFormat("%v / %m steps")

    def _on_progress(self, event: FineTuneProgress) -> None:
        self.progress.setValue(event.done)
        left = f", {format_duration(event.eta_s)} left (estimate)" if event.eta_s else ""
        loss = f", loss {event.loss:.4f}" if event.loss is not None else ""
        self.progress.setFormat(f"%v / %m steps{left}{loss}")

    def _on_fine_tuned(self, entry: PriorEntry, done) -> None:
        self.show_check(done.check)
        stopped = f" (stopped after {done.steps} of {done.total} steps)" if done.stopped else ""
        self.progress.setValue(done.steps)
        self.progress.setFormat(("stopped at " if done.stopped else "done: ") + "%v / %m steps")
        self.message.setText(f"Installed {entry.name}{stopped}.")
        measured = self.estimate_label.text()
        self.refresh()
        self.estimate_label.setText(measured)  # this run's measurement, until another prior is selected

    def show_check(self, check: DenoiseCheck) -> None:
        self.last_check = check
        self.check_title.setText(f"PSNR (dB) of one-step denoising of {check.images} held-out image(s), old prior "
                                 "(before) and fine-tuned (after); σ in the prior's [-1, 1] units.")
        self.check_table.setRowCount(len(check.sigmas))
        for row, values in enumerate(zip(check.sigmas, check.noisy, check.before, check.after)):
            sigma, noisy, before, after = values
            for col, text in enumerate((f"{sigma:g}", f"{noisy:.2f}", f"{before:.2f}", f"{after:.2f}",
                                        f"{after - before:+.2f}")):
                self.check_table.setItem(row, col, QtWidgets.QTableWidgetItem(text))

    # ------------------------------------------------------------------ jobs
    def _start(self, job: Job, text: str) -> None:
        self.job = job
        job.finished.connect(self._update_buttons)
        self.message.setText(text)
        job.start()
        self._update_buttons()

    def _on_failed(self, text: str) -> None:
        self.message.setText(text)
        self.progress.setFormat("failed")

    def is_running(self) -> bool:
        return self.job is not None and self.job.running()

    def stop(self) -> None:
        if self.job is not None:
            self.job.request_stop()

    def wait(self, timeout_ms: int | None = None) -> bool:
        return self.job is None or self.job.wait(timeout_ms)

    def _update_buttons(self, *_) -> None:
        busy, entry = self.is_running(), self.current()
        for b in (self.add_folder_button, self.add_checkpoint_button):
            b.setEnabled(not busy)
        self.remove_button.setEnabled(not busy and entry is not None and entry.origin == "installed")
        self.fine_tune_button.setEnabled(not busy and entry is not None and entry.fine_tunable)
        self.stop_button.setEnabled(busy and isinstance(self.job, FineTuneJob))
