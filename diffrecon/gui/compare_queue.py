"""The shared progress view of a comparison queue: one line per run with its state, an overall
bar over every run's sample-steps, and a Cancel button for the selected run."""
from __future__ import annotations

from PySide6 import QtCore, QtWidgets

from ..compare import RunSpec


class QueueView(QtWidgets.QWidget):
    cancel_requested = QtCore.Signal(int)  # run index

    def __init__(self, parent=None):
        super().__init__(parent)
        self.list = QtWidgets.QListWidget()
        self.bar = QtWidgets.QProgressBar()
        self.bar.setFormat("%p % of the queue")
        self.cancel_button = QtWidgets.QPushButton("Cancel selected run")
        self.cancel_button.setEnabled(False)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.list, 1)
        layout.addWidget(self.bar)
        layout.addWidget(self.cancel_button)
        self.runs: list[RunSpec] = []
        self.status: list[str] = []
        self._done_work = 0
        self.cancel_button.clicked.connect(self._on_cancel)
        self.list.currentRowChanged.connect(self._on_selection)

    # ------------------------------------------------------------------ model -> view
    def set_runs(self, runs: list[RunSpec], status: list[str] | None = None) -> None:
        self.runs = list(runs)
        self.status = list(status) if status is not None else ["waiting"] * len(runs)
        self._done_work = 0
        self.list.clear()
        for i, spec in enumerate(self.runs):
            self.list.addItem(self._text(i))
        self.bar.setRange(0, max(1, sum(r.steps * r.samples for r in runs)))
        self.bar.setValue(0 if status is None else self.bar.maximum())
        self._on_selection(self.list.currentRow())

    def set_state(self, index: int, state: str) -> None:
        self.status[index] = state
        self.list.item(index).setText(self._text(index))
        if state not in ("waiting", "running"):
            self._done_work += self.runs[index].steps * self.runs[index].samples
            self.bar.setValue(self._done_work)
        self._on_selection(self.list.currentRow())

    def set_progress(self, index: int, progress) -> None:
        spec = self.runs[index]
        batch = min(spec.samples - progress.samples_done, spec.samples)
        within = progress.samples_done * progress.steps + progress.step * max(batch, 1)
        self.bar.setValue(self._done_work + min(within, spec.steps * spec.samples))
        self.list.item(index).setText(self._text(index) + f"  ·  step {progress.step}/{progress.steps}, "
                                      f"{progress.samples_done}/{progress.samples_total} samples")

    def _text(self, index: int) -> str:
        return f"{index + 1}. {self.runs[index].label}  —  {self.status[index]}"

    # ------------------------------------------------------------------ slots
    def _on_selection(self, row: int) -> None:
        self.cancel_button.setEnabled(0 <= row < len(self.status) and self.status[row] in ("waiting", "running"))

    def _on_cancel(self) -> None:
        row = self.list.currentRow()
        if 0 <= row < len(self.status):
            self.cancel_requested.emit(row)
