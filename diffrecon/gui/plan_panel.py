"""Prediction before a run: network evaluations, time and peak memory from
:func:`diffrecon.engine.plan`, which probes the solver's first steps. The probe runs in a
background thread, on demand (Predict) and, debounced, after every settings change; a newer
request supersedes an older one, whose answer is then dropped. The window never waits for it,
and a run cancels it (``cancel``): a probe beside a run competes for the same CPU or GPU. The
prediction shown always belongs to the current settings: a change clears it at once (``request``,
or ``forget`` while a run needs the processor) until the new one arrives.
"""
from __future__ import annotations

import functools
import inspect
import weakref
from typing import Callable

from PySide6 import QtCore, QtWidgets

from .jobs import Job, JobSignals
from .memory import format_bytes

DEBOUNCE_MS = 700


class PlanSignals(JobSignals):
    planned = QtCore.Signal(int, object)  # request id, Planned


def _probe(job: "PlanWorker", plan_fn: Callable, measurement, config):
    kwargs = {"stop": job.stop_event} if _takes_stop(plan_fn) else {}
    return plan_fn(measurement, config, **kwargs)


class PlanWorker(Job):
    """Calls ``plan_fn(measurement, config)`` once, off the GUI thread; with ``stop=`` too when
    ``plan_fn`` takes it, so that :meth:`cancel` ends the probe at its next solver step."""

    SIGNALS = PlanSignals

    def __init__(self, request_id: int, measurement, config, plan_fn: Callable, parent=None):
        super().__init__(_probe, plan_fn, measurement, config, owner=parent, pass_job=True)
        self.request_id = request_id
        # what the answer is for, weakly: a prediction keeps no measurement alive
        self.planned_for = (weakref.ref(measurement.y), measurement.noise_sigma, config)

    def cancel(self) -> None:
        self.stop_event.set()

    def route(self, event) -> None:
        self.planned.emit(self.request_id, event.value)


def _takes_stop(fn: Callable) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # some builtins have no signature
        return False
    return any(p.name == "stop" or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def describe_plan(planned, samples: int) -> str:
    """The prediction in one paragraph, e.g. '≈ 2.3 s on cpu · 200 network evaluations ...'."""
    nfe = planned.nfe_per_sample * samples
    seconds = planned.predicted_seconds
    time_text = "?" if seconds is None else (f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min")
    peak = planned.predicted_peak_bytes
    memory = format_bytes(peak) if peak is not None else "not measured on the CPU"
    return (f"≈ {time_text} on {planned.device}\n{nfe} network evaluations "
            f"({planned.nfe_per_sample} per sample) in {len(planned.batches)} batch(es) {planned.batches}\n"
            f"peak GPU memory: {memory}")


class PlanPanel(QtWidgets.QWidget):
    """``request(measurement, config)`` after edits (debounced); ``predict_now`` for the button."""

    predicted = QtCore.Signal(object)  # Planned, after it is shown

    def __init__(self, plan_fn: Callable | None = None, parent=None):
        super().__init__(parent)
        if plan_fn is None:
            from ..engine import plan

            plan_fn = functools.partial(plan, fit_prior=False)  # the run fits a new size, with progress
        self.plan_fn = plan_fn
        self.planned = None
        # (weak reference to the measurement's y, its noise level, config) the shown prediction is for:
        # weak, so that a prediction does not keep a closed file's data alive
        self.planned_for = None
        self.auto = True
        self._pending = None  # (measurement, config) of the newest request
        self._request_id = 0
        self._worker: PlanWorker | None = None
        self._old_workers: list[PlanWorker] = []
        self.button = QtWidgets.QPushButton("Predict")
        self.button.setToolTip("Probe the solver's first steps to predict time and peak memory.")
        self.text = QtWidgets.QLabel("Time and memory are predicted after the settings settle.")
        self.text.setWordWrap(True)
        self.text.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.text)
        layout.addWidget(self.button)
        self.timer = QtCore.QTimer(self, singleShot=True, interval=DEBOUNCE_MS, timeout=self._on_timer)
        self.button.clicked.connect(self._on_button)

    def request(self, measurement, config) -> None:
        """Remember the newest settings; predict when they have not changed for a moment."""
        self.forget(measurement, config)
        if self.auto:
            self.timer.start()

    def forget(self, measurement, config) -> None:
        """The settings are now these: a shown prediction for others is cleared, not left standing."""
        self._pending = (measurement, config)
        if self.planned is not None and not self.is_for(measurement, config):
            self.text.setStyleSheet("color: gray;")
            self.text.setText("Settings changed: no prediction for them yet (Predict, or wait a moment "
                              "when no run is going).")

    def is_for(self, measurement, config) -> bool:
        """Whether the shown prediction is for exactly these (same data, noise level and settings)."""
        if self.planned is None or self.planned_for is None or measurement is None:
            return False
        y, noise_sigma, c = self.planned_for  # a weak reference: a prediction keeps no measurement alive
        return y() is measurement.y and noise_sigma == measurement.noise_sigma and c == config

    def predict_now(self, measurement=None, config=None) -> None:
        if measurement is not None:
            self._pending = (measurement, config)
        self.timer.stop()
        if self._pending is None or self._pending[0] is None:
            return
        self._request_id += 1
        measurement, config = self._pending
        self.text.setText("Predicting… (timing the solver's first steps in the background)")
        self.text.setStyleSheet("color: gray;")
        if self._worker is not None and self._worker.running():
            self._old_workers.append(self._worker)  # finishes on its own; its answer is stale
        worker = self._worker = PlanWorker(self._request_id, measurement, config, self.plan_fn, self)
        request_id, ended = self._request_id, weakref.ref(worker)
        worker.planned.connect(self._on_planned)
        worker.failed.connect(lambda message: self._on_failed(request_id, message))
        worker.finished.connect(lambda: self._on_worker_finished(ended()))
        worker.start()

    def is_busy(self) -> bool:
        return any(w.running() for w in [self._worker, *self._old_workers] if w is not None)

    def cancel(self) -> bool:
        """End probes in flight at their next solver step and drop their answers (a run starts).
        The shown prediction, if any, stays. Returns whether a probe was in flight."""
        self.timer.stop()
        busy = self.is_busy()
        if busy:
            self._request_id += 1  # whatever the cancelled probes still send is stale
            for w in [self._worker, *self._old_workers]:
                if w is not None:
                    w.cancel()
            if self.planned is None or self._pending is None or not self.is_for(*self._pending):
                self.text.setStyleSheet("color: gray;")
                self.text.setText("Prediction cancelled: the run needs the processor.")
            else:  # back to the last prediction that finished
                self.text.setStyleSheet("")
                self.text.setText(describe_plan(self.planned, sum(self.planned.batches)))
        return busy

    def wait(self, ms: int = 10000) -> None:
        """Wait for probes in flight (closing the window must not destroy a running thread)."""
        self.timer.stop()
        for w in [self._worker, *self._old_workers]:
            if w is not None:
                w.wait(ms)

    def predicted_seconds(self, measurement, config) -> float | None:
        """The predicted time of a run of ``config`` on ``measurement``, if the shown prediction is
        for exactly those (same data, noise level and settings)."""
        return self.planned.predicted_seconds if self.is_for(measurement, config) else None

    # ------------------------------------------------------------------ slots
    def _on_timer(self) -> None:
        self.predict_now()

    def _on_button(self) -> None:
        self.predict_now()

    def _on_planned(self, request_id: int, planned) -> None:
        if request_id != self._request_id:
            return
        self.planned = planned
        self.planned_for = self._worker.planned_for
        samples = sum(planned.batches)
        self.text.setStyleSheet("")
        self.text.setText(describe_plan(planned, samples))
        self.predicted.emit(planned)

    def _on_failed(self, request_id: int, message: str) -> None:
        if request_id != self._request_id:
            return
        self.planned = None
        self.text.setStyleSheet("color: #d04040;")
        self.text.setText(f"No prediction: {message}")

    def _on_worker_finished(self, ended) -> None:
        self._old_workers = [w for w in self._old_workers if w is not ended and w.running()]
