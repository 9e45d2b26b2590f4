"""Cyclic garbage is collected on the GUI thread only.

Python's cycle collector runs in whichever thread happens to allocate when a threshold is
crossed. When that is a run's worker thread and the garbage holds Qt widgets (a closed window
and its menus, say), the widgets are deleted off the GUI thread and PySide deadlocks waiting for
the interpreter lock (seen in the test suite: a closed window's QMenu collected during the
worker's import of scipy). While a window exists, automatic collection is therefore off and a
timer on the GUI thread collects with the interpreter's own thresholds, so garbage waits at
most one tick. A full collection holds the interpreter for a few hundred milliseconds once torch
is loaded, so it waits until no registered window is running (younger generations, a few
milliseconds, go on during a run).
"""
from __future__ import annotations

import gc
import weakref
from typing import Callable

from PySide6 import QtCore

_guard: "MainThreadCollector | None" = None
_busy: list = []  # weak references to bound methods: True while a window runs a reconstruction


class MainThreadCollector(QtCore.QObject):
    def __init__(self, parent: QtCore.QObject, interval_ms: int = 500):
        super().__init__(parent)
        self.timer = QtCore.QTimer(self, interval=interval_ms, timeout=self.collect)
        self.timer.start()

    def collect(self) -> int:
        """One collection of the oldest generation over its threshold (as the interpreter's
        automatic collection would choose); the number of unreachable objects found."""
        counts, limits = gc.get_count(), gc.get_threshold()
        for generation in (2, 1, 0):
            if limits[generation] and counts[generation] > limits[generation]:
                if generation == 2 and any_busy():
                    generation = 1  # the full collection waits for the run to end
                return gc.collect(generation)
        return 0


def register_busy(method: Callable[[], bool]) -> None:
    """``method`` (bound, held weakly) says whether its window is running; full collections wait."""
    _busy.append(weakref.WeakMethod(method))


def any_busy() -> bool:
    alive = [(ref, ref()) for ref in _busy]
    _busy[:] = [ref for ref, m in alive if m is not None]
    return any(_asks(m) for _, m in alive if m is not None)


def _asks(method) -> bool:
    try:
        return bool(method())
    except RuntimeError:  # its Qt object is already deleted: not running
        return False


def install() -> MainThreadCollector | None:
    """Turn automatic collection off and collect on the GUI thread's timer instead; once per
    process, from the GUI thread, after the QApplication exists (None without one)."""
    global _guard
    app = QtCore.QCoreApplication.instance()
    if _guard is None and app is not None:
        if QtCore.QThread.currentThread() is not app.thread():
            raise RuntimeError("gc_guard.install() must run on the GUI thread")
        gc.disable()
        _guard = MainThreadCollector(app)
    return _guard
