"""The comparison's job (:class:`~.jobs.Job`): works out the equal-budget step counts (timing the
solvers with a probe takes seconds, so off the GUI thread), then iterates
:func:`diffrecon.compare.run_comparison` and re-emits its events as Qt signals. Cancel sets
events the engine reads at its next step."""
from __future__ import annotations

import threading

from PySide6 import QtCore

from ..compare import (CompareSpec, ComparisonFinished, QueueControl, RunEnded, RunEvent, RunStarted,
                       equal_budget, run_comparison)
from ..engine import Log, Progress, RunConfig, Statistics
from ..measurement import Measurement
from .jobs import Job, JobSignals
from .worker import detached


class CompareSignals(JobSignals):
    queued = QtCore.Signal(object)  # list[RunSpec]
    run_started = QtCore.Signal(int)
    progress = QtCore.Signal(int, object)  # run index, engine Progress
    statistics = QtCore.Signal(int, object)  # run index, engine Statistics (numpy copies)
    run_ended = QtCore.Signal(int, str, object, str)  # index, status, Result or None, message
    done = QtCore.Signal(object)  # Comparison


class _Queued:
    def __init__(self, runs):
        self.runs = runs


def _comparison_events(job: "CompareWorker", measurement: Measurement, spec: CompareSpec, base: RunConfig, denoiser):
    budget_steps = None
    if spec.budget_nfe is not None or spec.budget_seconds is not None:
        spec.runs()  # refuse an empty selection before timing anything
        budget_steps = equal_budget(spec.solvers, spec.budget_nfe, spec.budget_seconds, samples=spec.samples,
                                    measurement=measurement, base_config=base, denoiser=denoiser)
        yield Log("Equal budget: " + ", ".join(f"{k} {v} steps" for k, v in budget_steps.items()), "info")
    runs = spec.runs(budget_steps)
    with job.lock:
        job.control = QueueControl(len(runs))
        for index in job.early_cancel:
            if index < len(runs):
                job.control.cancel(index)
        if job.stop_event.is_set():
            job.control.stop()
    yield _Queued(runs)
    yield from run_comparison(measurement, runs, base, job.stop_event, control=job.control, denoiser=denoiser)


class CompareWorker(Job):
    SIGNALS = CompareSignals

    def __init__(self, measurement: Measurement, spec: CompareSpec, base_config: RunConfig, denoiser=None,
                 parent=None):
        super().__init__(_comparison_events, measurement, spec, base_config, denoiser, owner=parent, pass_job=True)
        self.control: QueueControl | None = None
        self.early_cancel: set[int] = set()
        self.lock = threading.Lock()

    def cancel_run(self, index: int) -> None:
        """Cancel run ``index``: at its next step if running, skipped if still waiting."""
        with self.lock:
            if self.control is None:
                self.early_cancel.add(index)
            else:
                self.control.cancel(index)

    def request_stop(self) -> None:
        """End the current run at its next step and skip the rest."""
        self.stop_event.set()
        with self.lock:
            if self.control is not None:
                self.control.stop()

    def route(self, ev) -> None:
        if isinstance(ev, _Queued):
            self.queued.emit(ev.runs)
        elif isinstance(ev, Log):
            self.log.emit(ev.message, ev.level)
        elif isinstance(ev, RunStarted):
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
