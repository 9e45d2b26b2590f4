"""The status bar: a message (errors in red), the pixel read-out, run progress with the time
left (predicted until the first step, then measured), and memory."""
from __future__ import annotations

from PySide6 import QtWidgets

ERROR_STYLE = "color: #e05050; font-weight: bold;"


class StatusArea:
    """Fills ``bar`` with its labels; the window talks to these methods only."""

    def __init__(self, bar: QtWidgets.QStatusBar):
        self.message_label = QtWidgets.QLabel("Ready.")
        self.pixel_label = QtWidgets.QLabel()
        self.progress_bar = QtWidgets.QProgressBar()
        self.progress_bar.setMinimumWidth(200)
        self.progress_bar.setMaximumWidth(260)
        self.progress_bar.setFormat("%p%")
        self.progress_label = QtWidgets.QLabel()
        self.memory_label = QtWidgets.QLabel()
        self.batch_sizes: dict[int, int] = {}  # first sample index -> batch size
        self.last_progress = None  # the run's latest engine Progress event (Stop asks about its batch)
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

    def set_batches(self, batches: list[int]) -> None:
        """The engine's plan: samples per batch, so progress within a batch counts all its samples."""
        starts = [sum(batches[:i]) for i in range(len(batches))]
        self.batch_sizes = dict(zip(starts, batches))

    def start_progress(self, predicted_seconds: float | None = None) -> None:
        """A run begins: until the engine's first step (loading the prior, warming up) the ETA
        is the prediction, when there is one for these settings."""
        self.progress_bar.setValue(0)
        self.batch_sizes = {}
        self.last_progress = None
        eta = "?" if predicted_seconds is None else f"≈ {format_duration(predicted_seconds)} (predicted)"
        self.progress_bar.setFormat(f"%p% · ETA {eta}")
        self.progress_bar.setToolTip("Time left: predicted before the first step, then measured.")
        self.progress_label.setText("starting…")

    def show_preparing(self, p) -> None:
        """An engine Preparing event (a prior being fitted before the first step): its own bar."""
        self.progress_bar.setValue(int(100 * p.done / max(p.total, 1)))
        self.progress_bar.setFormat("%p% · preparing")
        self.progress_bar.setToolTip(p.what)
        self.progress_label.setText(f"{p.what}: {p.done}/{p.total}")

    def show_progress(self, p) -> None:
        """An engine Progress event: the bar over all samples with the ETA, step and NFE as text."""
        # samples of one batch advance together: step 5 of 50 in a batch of 4 of 4 samples is 10 %
        self.last_progress = p
        if self.progress_bar.format().endswith("preparing"):
            self.progress_bar.setFormat("%p% · ETA ?")
            self.progress_bar.setToolTip("Time left: measured.")
        self.progress_bar.setValue(int(100 * min(self.fraction_done(p), 1.0)))
        if p.eta is not None:
            self.progress_bar.setFormat(f"%p% · ETA {format_duration(p.eta)}")
        self.progress_label.setText(f"step {p.step}/{p.steps} · samples {p.samples_done}/{p.samples_total}"
                                    f" · NFE {p.nfe}")

    def fraction_done(self, p) -> float:
        """The engine's own ``work_done / work_total`` where its Progress carries them (they stay
        true after an out-of-memory re-plan), else counted from steps and the planned batches."""
        done, total = getattr(p, "work_done", None), getattr(p, "work_total", None)
        if done is not None and total:
            return done / total
        batch = self.batch_sizes.get(p.samples_done, 1)
        return (p.samples_done * p.steps + p.step * batch) / max(p.steps * p.samples_total, 1)

    def end_progress(self, complete: bool) -> None:
        if complete:
            self.progress_bar.setValue(100)
        self.progress_bar.setFormat("%p%" if complete else "%p% · stopped")


def format_duration(seconds: float) -> str:
    """'42 s', '3 min 05 s', '1 h 02 min': an ETA a person reads at a glance."""
    s = max(int(round(seconds)), 0)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"
