"""The comparison's one background worker: works out the equal-budget step counts (timing the
solvers with a probe takes seconds, so off the GUI thread), then iterates
:func:`diffrecon.compare.run_comparison` and re-emits its events as Qt signals. Same pattern as
:class:`diffrecon.gui.worker.RunWorker`: cancel sets events the engine reads at its next step."""
from __future__ import annotations

import threading
import traceback

from PySide6 import QtCore

from ..compare import (CompareSpec, ComparisonFinished, QueueControl, RunEnded, RunEvent, RunStarted,
                       equal_budget, run_comparison)
from ..engine import Log, Progress, RunConfig, Statistics
from ..errors import DiffreconError
from ..measurement import Measurement
from .worker import describe_error, detached


class CompareWorker(QtCore.QThread):
    queued = QtCore.Signal(object)  # list[RunSpec]
    run_started = QtCore.Signal(int)
    progress = QtCore.Signal(int, object)  # run index, engine Progress
    statistics = QtCore.Signal(int, object)  # run index, engine Statistics (numpy copies)
    log = QtCore.Signal(str, str)
    run_ended = QtCore.Signal(int, str, object, str)  # index, status, Result or None, message
    done = QtCore.Signal(object)  # Comparison
    failed = QtCore.Signal(str)

    def __init__(self, measurement: Measurement, spec: CompareSpec, base_config: RunConfig, denoiser=None,
                 parent=None):
        super().__init__(parent)
        self.measurement, self.spec, self.base = measurement, spec, base_config
        self.denoiser = denoiser
        self.control: QueueControl | None = None
        self._early_cancel: set[int] = set()
        self._stop = threading.Event()
        self._lock = threading.Lock()

    def cancel_run(self, index: int) -> None:
        """Cancel run ``index``: at its next step if running, skipped if still waiting."""
        with self._lock:
            if self.control is None:
                self._early_cancel.add(index)
            else:
                self.control.cancel(index)

    def request_stop(self) -> None:
        """End the current run at its next step and skip the rest."""
        self._stop.set()
        with self._lock:
            if self.control is not None:
                self.control.stop()

    def run(self) -> None:  # QThread entry point, off the GUI thread
        try:
            budget_steps = None
            spec = self.spec
            if spec.budget_nfe is not None or spec.budget_seconds is not None:
                spec.runs()  # refuse an empty selection before timing anything
                budget_steps = equal_budget(spec.solvers, spec.budget_nfe, spec.budget_seconds,
                                            samples=spec.samples, measurement=self.measurement,
                                            base_config=self.base, denoiser=self.denoiser)
                self.log.emit("Equal budget: " + ", ".join(f"{k} {v} steps" for k, v in budget_steps.items()), "info")
            runs = spec.runs(budget_steps)
            with self._lock:
                self.control = QueueControl(len(runs))
                for index in self._early_cancel:
                    if index < len(runs):
                        self.control.cancel(index)
                if self._stop.is_set():
                    self.control.stop()
            self.queued.emit(runs)
            for ev in run_comparison(self.measurement, runs, self.base, self._stop, control=self.control,
                                     denoiser=self.denoiser):
                if isinstance(ev, RunStarted):
                    self.run_started.emit(ev.index)
                elif isinstance(ev, RunEvent):
                    if isinstance(ev.event, Progress):
                        self.progress.emit(ev.index, ev.event)
                    elif isinstance(ev.event, Statistics):
                        self.statistics.emit(ev.index, detached(ev.event))
                    elif isinstance(ev.event, Log):
                        self.log.emit(ev.event.message, ev.event.level)
                elif isinstance(ev, RunEnded):
                    self.run_ended.emit(ev.index, ev.status, ev.result, ev.message)
                elif isinstance(ev, ComparisonFinished):
                    self.done.emit(ev.comparison)
        except BaseException as err:  # noqa: BLE001 - the window shows one sentence, never dies
            if not isinstance(err, DiffreconError):
                self.log.emit(traceback.format_exc(), "error")
            self.failed.emit(describe_error(err))
