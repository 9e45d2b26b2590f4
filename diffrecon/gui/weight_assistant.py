"""The Auto weight button: the discrepancy-principle choice of the solver's data weight
(:mod:`diffrecon.weights`) on a short budget, off the GUI thread; the chosen value goes into the
solver form and the choice into the next run's provenance."""
from __future__ import annotations

from typing import Callable

from PySide6 import QtCore, QtWidgets

from ..weights import WEIGHTED, choose_weight
from .jobs import Job, JobSignals


class WeightSignals(JobSignals):
    progress = QtCore.Signal(str)
    chosen = QtCore.Signal(object)  # diffrecon.weights.WeightChoice


def _choose(job: "WeightWorker", measurement, config):
    return choose_weight(measurement, config, progress=lambda k, n, v, r: job.progress.emit(
        f"Auto weight: trial {k} of about {n}, value {v:.4g}, residual/noise {r:.3f}"))


class WeightWorker(Job):
    SIGNALS = WeightSignals

    def __init__(self, measurement, config, parent=None):
        super().__init__(_choose, measurement, config, owner=parent, pass_job=True)

    def route(self, event) -> None:
        self.chosen.emit(event.value)


class AutoWeightButton(QtWidgets.QPushButton):
    """``source()`` gives (measurement, RunConfig); ``apply(choice)`` takes the chosen weight."""

    status = QtCore.Signal(str, str)  # message, level

    def __init__(self, source: Callable, apply: Callable, parent=None):
        super().__init__("Auto weight", parent)
        self._source, self._apply, self._worker = source, apply, None
        self.setToolTip("Choose the solver's data weight by the discrepancy principle (residual at the noise "
                        f"level) in a few short runs; available for {', '.join(WEIGHTED)}.")
        self.clicked.connect(self._on_clicked)

    def set_solver(self, name: str | None) -> None:
        self.setEnabled(name in WEIGHTED and self._worker is None)

    def _on_clicked(self) -> None:
        measurement, config = self._source()
        if measurement is None:
            self.status.emit("Open a measurement before choosing the weight.", "warning")
            return
        self._worker = WeightWorker(measurement, config, self)
        self._worker.progress.connect(lambda text: self.status.emit(text, "info"))
        self._worker.chosen.connect(self._on_chosen)
        self._worker.failed.connect(lambda text: self.status.emit(text, "warning"))
        self._worker.finished.connect(self._on_finished)
        self.setEnabled(False)
        self._worker.start()

    def _on_chosen(self, choice) -> None:
        self._apply(choice)
        self.status.emit(f"Auto weight: {choice.param} = {choice.value:.4g} (residual/noise "
                         f"{choice.residual_ratio:.3f}).", "info")

    def _on_finished(self) -> None:
        self._worker = None
        self.setEnabled(True)
