"""The status bar: a message (errors in red), the pixel read-out, run progress and memory."""
from __future__ import annotations

from PySide6 import QtWidgets

ERROR_STYLE = "color: #e05050; font-weight: bold;"


class StatusArea:
    """Fills ``bar`` with its labels; the window talks to these methods only."""

    def __init__(self, bar: QtWidgets.QStatusBar):
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

    def show_message(self, text: str) -> None:
        self.message_label.setStyleSheet("")
        self.message_label.setText(text)

    def show_error(self, text: str) -> None:
        self.message_label.setStyleSheet(ERROR_STYLE)
        self.message_label.setText(text)

    def show_progress(self, p) -> None:
        """An engine Progress event: the bar over all samples, and step, NFE and ETA as text."""
        total = max(p.steps * p.samples_total, 1)
        self.progress_bar.setValue(int(100 * min((p.samples_done * p.steps + p.step) / total, 1.0)))
        eta = "?" if p.eta is None else f"{p.eta:.0f} s"
        self.progress_label.setText(f"step {p.step}/{p.steps} · samples {p.samples_done}/{p.samples_total}"
                                    f" · NFE {p.nfe} · ETA {eta}")
