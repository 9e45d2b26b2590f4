"""The one background worker: iterates the engine generator in a QThread and re-emits its
events as Qt signals carrying numpy copies, never live tensors or file handles.

Stop sets the engine's ``threading.Event``; the engine notices at the next solver step and ends
with a Finished event holding the samples already complete, so the worker itself never kills
anything. Any exception becomes one sentence on ``failed``; the window never dies.
"""
from __future__ import annotations

import copy
import inspect
import threading
import traceback
from typing import Callable

import numpy as np
from PySide6 import QtCore

from ..engine import Finished, Log, Planned, Preparing, Preview, Progress, RunConfig, Statistics
from ..errors import DiffreconError
from ..guard import Diverged
from ..measurement import Measurement


def detached(event):
    """A copy whose arrays are private to the receiving thread."""
    ev = copy.copy(event)
    for name, value in vars(ev).items():
        if isinstance(value, np.ndarray):
            setattr(ev, name, np.array(value, copy=True))
    return ev


def describe_error(err: BaseException) -> str:
    """One sentence for the status area: the user's sentence for InputError, a hint for OOM."""
    if isinstance(err, DiffreconError):
        return str(err)
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    if isinstance(err, MemoryError) or "out of memory" in text.lower():
        return "Out of memory: lower the number of samples, set a smaller batch size, or use fp32 on CPU."
    return f"The run failed with {type(err).__name__}: {text}"


class RunWorker(QtCore.QThread):
    """Runs ``engine_run(measurement, config, stop=...)`` and forwards every event."""

    planned = QtCore.Signal(object)
    progress = QtCore.Signal(object)
    preview = QtCore.Signal(object)
    statistics = QtCore.Signal(object)
    preparing = QtCore.Signal(object)  # engine Preparing: fitting a prior before the first step
    diverged = QtCore.Signal(object)  # diffrecon.guard.Diverged
    log = QtCore.Signal(str, str)  # message, level
    finished_result = QtCore.Signal(object)  # diffrecon.measurement.Result
    failed = QtCore.Signal(str)
    stopped_empty = QtCore.Signal()  # the user stopped before any sample finished: not a failure

    def __init__(self, measurement: Measurement, config: RunConfig,
                 engine_run: Callable | None = None, parent=None):
        super().__init__(parent)
        self.measurement = measurement
        self.config = config
        self.stop_event = threading.Event()
        self.finish_event = threading.Event()  # with stop: finish the batch in progress by a final denoising step
        if engine_run is None:
            from ..engine import run as engine_run
        self._engine_run = engine_run

    def request_stop(self, finish: bool = False) -> None:
        if finish:
            self.finish_event.set()
        self.stop_event.set()

    def run(self) -> None:  # QThread entry point, runs off the GUI thread
        routes = {Planned: self.planned, Progress: self.progress, Preview: self.preview,
                  Statistics: self.statistics, Preparing: self.preparing, Diverged: self.diverged}
        finished = False
        try:
            takes_finish = "finish" in inspect.signature(self._engine_run).parameters
            extra = {"finish": self.finish_event} if takes_finish else {}
            for event in self._engine_run(self.measurement, self.config, stop=self.stop_event, **extra):
                if isinstance(event, Log):
                    self.log.emit(event.message, event.level)
                elif isinstance(event, Finished):
                    finished = True
                    self.finished_result.emit(event.result)
                elif type(event) in routes:
                    routes[type(event)].emit(detached(event))
            if not finished and self.stop_event.is_set():
                self.stopped_empty.emit()
            elif not finished:
                self.failed.emit("The engine ended without a result.")
        except BaseException as err:  # noqa: BLE001 - everything must reach the window as a sentence
            if not isinstance(err, DiffreconError):
                self.log.emit(traceback.format_exc(), "error")
            self.failed.emit(describe_error(err))
