"""The one way the window works in the background: a :class:`Job` is superqt's
``GeneratorWorker`` over a generator function (or a plain function, whose value becomes one
:class:`Returned` event), run in this module's thread pool.

Each event the work yields goes to the job's :meth:`~Job.route` in the pool thread, which
re-emits it on the job's own Qt signals; Qt queues those to the receivers' (GUI) thread, so
results cross threads as plain values, never live tensors or file handles. An exception in the
work becomes one sentence on ``failed`` (the traceback on ``log``), never a dead window; a work
that knows how to stop reads ``job.stop_event`` at its next step. :meth:`Job.wait` returns once
the work has ended, which is what closing a window waits for (:mod:`.closing`).
"""
from __future__ import annotations

import functools
import inspect
import threading
import traceback
import weakref
from dataclasses import dataclass
from typing import Any, Callable

from PySide6 import QtCore
from superqt.utils import GeneratorWorker
from superqt.utils._qthreading import GeneratorWorkerSignals

from ..errors import DiffreconError

_POOL: QtCore.QThreadPool | None = None
_LIVE: set = set()
_LOCK = threading.Lock()


def pool() -> QtCore.QThreadPool:
    """The jobs' own pool: a run, a probe and a comparison never queue behind each other on a
    machine with few cores (Qt's global pool has one thread per core)."""
    global _POOL
    if _POOL is None:
        _POOL = QtCore.QThreadPool()
        _POOL.setMaxThreadCount(32)
    return _POOL


def describe_error(err: BaseException) -> str:
    """One sentence for the status area: the user's sentence for InputError, a hint for OOM."""
    if isinstance(err, DiffreconError):
        return str(err)
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    if isinstance(err, MemoryError) or "out of memory" in text.lower():
        return "Out of memory: lower the number of samples, set a smaller batch size, or use fp32 on CPU."
    return f"The run failed with {type(err).__name__}: {text}"


@dataclass
class Returned:
    """The value of a plain (non-generator) work function."""

    value: Any


class JobSignals(GeneratorWorkerSignals):
    failed = QtCore.Signal(str)
    log = QtCore.Signal(str, str)  # message, level


class _State:
    """What the work's wrapper knows of its job: a weak reference (set once the job exists),
    whether the work takes the job first, and the event set when the work has ended."""

    def __init__(self, pass_job: bool) -> None:
        self.job = lambda: None
        self.pass_job = pass_job
        self.done = threading.Event()


def _guarded(state: _State, work: Callable, args: tuple, kwargs: dict):
    try:
        out = work(state.job(), *args, **kwargs) if state.pass_job else work(*args, **kwargs)
        for event in (out if inspect.isgenerator(out) else (Returned(out),)):
            job = state.job()
            if job is not None:
                job.route(event)
            yield None
    except BaseException as err:  # noqa: BLE001 - everything reaches the window as a sentence
        job = state.job()
        if job is not None:
            if not isinstance(err, DiffreconError):
                job.log.emit(traceback.format_exc(), "error")
            job.failed.emit(describe_error(err))


class Job(GeneratorWorker):
    """``Job(work, *args, **kwargs).start()`` runs ``work(*args, **kwargs)`` in the pool; with
    ``pass_job=True`` the job itself comes first (a work that reports through its signals).
    Subclasses add signals (``SIGNALS``) and say where each event goes (:meth:`route`)."""

    SIGNALS = JobSignals

    def __init__(self, work: Callable, *args, owner: QtCore.QObject | None = None, pass_job: bool = False,
                 **kwargs):
        state = _State(pass_job)
        super().__init__(_guarded, state, work, args, kwargs, SignalsClass=self.SIGNALS)
        state.job = weakref.ref(self)  # the wrapper runs only once started, by then this is set
        self.stop_event = threading.Event()
        self.owner = weakref.ref(owner) if owner is not None else (lambda: None)
        self._ended = state.done
        self._launched = False

    def route(self, event) -> None:
        """Emit ``event`` on the signal it belongs to (called in the pool thread)."""
        raise NotImplementedError

    def work(self):
        try:
            return super().work()
        finally:
            self._gen.close()  # an abort leaves the work at a yield: end it here, not at garbage collection
            self._ended.set()
            with _LOCK:
                _LIVE.discard(self)

    def start(self, defer: bool = False) -> None:
        """Run in :func:`pool` (superqt's own start uses Qt's global pool): now, or with ``defer``
        once the GUI thread is back in its event loop, so that connections made after ``start``
        returns see even the first event. Either way :meth:`running` is True from here on."""
        self._launched = True
        with _LOCK:
            _LIVE.add(self)
        self._worker_set.add(self)  # superqt's keeper: the last reference is dropped in the GUI thread
        self._finished.connect(self._set_discard)
        if defer:
            QtCore.QTimer.singleShot(0, functools.partial(pool().start, self))
        else:
            pool().start(self)

    def request_stop(self) -> None:
        self.stop_event.set()

    def running(self) -> bool:
        return self._launched and not self._ended.is_set()

    def wait(self, timeout_ms: int | None = None) -> bool:
        """Block until the work has ended (True) or ``timeout_ms`` passed (False)."""
        return not self._launched or self._ended.wait(None if timeout_ms is None else timeout_ms / 1000)


def running_jobs(owner: QtCore.QObject | None = None) -> list[Job]:
    """The jobs still at work; with ``owner``, those started for it or one of its descendants."""
    with _LOCK:
        jobs = [j for j in _LIVE if j.running()]
    if owner is None:
        return jobs
    return [j for j in jobs if _within(j.owner(), owner)]


def _within(obj, ancestor) -> bool:
    try:
        while obj is not None:
            if obj is ancestor:
                return True
            obj = obj.parent()
    except RuntimeError:  # its Qt object is already deleted
        return False
    return False
