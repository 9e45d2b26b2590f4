"""The run job: iterates the engine generator off the GUI thread (a :class:`~.jobs.Job`) and
re-emits its events as Qt signals carrying numpy copies, never live tensors or file handles.

Stop sets the engine's ``threading.Event``; the engine notices at the next solver step and ends
with a Finished event holding the samples already complete, so the job itself never kills
anything. Any exception becomes one sentence on ``failed``; the window never dies.
"""
from __future__ import annotations

import copy
import inspect
import threading
from typing import Callable

import numpy as np
from PySide6 import QtCore

from ..engine import Finished, Log, Planned, Preparing, Preview, Progress, Replanned, RunConfig, Statistics
from ..guard import Diverged
from ..measurement import Measurement
from .jobs import Job, JobSignals, describe_error

__all__ = ["RunWorker", "describe_error", "detached"]


def detached(event):
    """A copy whose arrays are private to the receiving thread."""
    ev = copy.copy(event)
    for name, value in vars(ev).items():
        if isinstance(value, np.ndarray):
            setattr(ev, name, np.array(value, copy=True))
    return ev


class RunSignals(JobSignals):
    planned = QtCore.Signal(object)
    progress = QtCore.Signal(object)
    replanned = QtCore.Signal(object)  # engine Replanned (batches, reason), after an out-of-memory re-plan
    preview = QtCore.Signal(object)
    statistics = QtCore.Signal(object)
    preparing = QtCore.Signal(object)  # engine Preparing: fitting a prior before the first step
    diverged = QtCore.Signal(object)  # diffrecon.guard.Diverged
    finished_result = QtCore.Signal(object)  # diffrecon.measurement.Result
    stopped_empty = QtCore.Signal()  # the user stopped before any sample finished: not a failure


def _engine_events(job: "RunWorker", engine_run: Callable, measurement: Measurement, config: RunConfig):
    extra = {"finish": job.finish_event} if "finish" in inspect.signature(engine_run).parameters else {}
    yield from engine_run(measurement, config, stop=job.stop_event, **extra)
    if not job.ended_with_result:
        yield Ended()


class Ended:
    """A run's generator ended without its result event (the engine's Finished, VolumeFinished)."""


def report_no_result(job, what: str) -> None:
    """After :class:`Ended`: Stop pressed before any sample finished is ``stopped_empty`` (not a
    failure); anything else fails with "The ``what`` ended without a result."."""
    if job.stop_event.is_set():
        job.stopped_empty.emit()
    else:
        job.failed.emit(f"The {what} ended without a result.")


class RunWorker(Job):
    """Runs ``engine_run(measurement, config, stop=...)`` and forwards every event."""

    SIGNALS = RunSignals

    def __init__(self, measurement: Measurement, config: RunConfig, engine_run: Callable | None = None,
                 parent: QtCore.QObject | None = None):
        if engine_run is None:
            from ..engine import run as engine_run
        super().__init__(_engine_events, engine_run, measurement, config, owner=parent, pass_job=True)
        self.config = config
        self.finish_event = threading.Event()  # with stop: finish the batch in progress by a final denoising step
        self.ended_with_result = False
        self._routes = {Planned: self.planned, Progress: self.progress, Preview: self.preview,
                        Statistics: self.statistics, Preparing: self.preparing, Diverged: self.diverged}

    def request_stop(self, finish: bool = False) -> None:
        if finish:
            self.finish_event.set()
        self.stop_event.set()

    def route(self, event) -> None:
        if isinstance(event, Log):
            self.log.emit(event.message, event.level)
        elif isinstance(event, Finished):
            self.ended_with_result = True
            self.finished_result.emit(event.result)
        elif isinstance(event, Ended):
            report_no_result(self, "engine")
        elif isinstance(event, Replanned):
            self.replanned.emit(event)
        elif type(event) in self._routes:
            self._routes[type(event)].emit(detached(event))
