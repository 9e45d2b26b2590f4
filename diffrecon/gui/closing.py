"""Closing a window whose background threads are still busy.

A run, a prediction probe or a comparison checks for a stop only between two steps, and one
step of a large network on a CPU can take minutes. Destroying a ``QThread`` that still runs
aborts the whole process ("QThread: Destroyed while thread is still running"), so closing asks
every thread to stop, waits a moment, and hands the threads that are still inside a step to a
keeper here: they lose their parent (the window may be deleted), their signals are blocked (the
closed window must not receive a late result) and the process waits for them before it exits.
"""
from __future__ import annotations

import atexit
import contextlib

from PySide6 import QtCore

_kept: list[QtCore.QThread] = []
_exit_hooked = False


def stop_and_wait(window: QtCore.QObject, stop_requests, wait_ms: int) -> list[QtCore.QThread]:
    """Call each of ``stop_requests``, wait up to ``wait_ms`` in all for the running threads
    among ``window``'s descendants, keep the ones still running (:func:`keep_until_finished`)
    and return them."""
    for request in stop_requests:
        with contextlib.suppress(RuntimeError):  # its Qt object is already deleted
            request()
    deadline = QtCore.QDeadlineTimer(max(0, int(wait_ms)))
    threads = [t for t in window.findChildren(QtCore.QThread) if t.isRunning()]
    for thread in threads:
        thread.wait(deadline)
    busy = [t for t in threads if t.isRunning()]
    keep_until_finished(busy)
    return busy


def keep_until_finished(threads) -> None:
    """Take ``threads`` away from their parents and keep them until they end; the process waits
    for them on quitting (``aboutToQuit``) and at exit."""
    global _exit_hooked
    _prune()
    for thread in threads:
        thread.blockSignals(True)
        thread.setParent(None)
        if thread not in _kept:
            _kept.append(thread)
    if threads and not _exit_hooked:
        _exit_hooked = True
        atexit.register(wait_for_kept)  # atexit runs before the interpreter tears Qt down
        app = QtCore.QCoreApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(wait_for_kept)


def kept_threads() -> list[QtCore.QThread]:
    """The threads closed windows left running (those that have ended are dropped)."""
    _prune()
    return list(_kept)


def wait_for_kept(timeout_ms: int | None = None) -> bool:
    """Wait for the kept threads to end (each ends at its next step: it was asked to stop);
    True when none is left."""
    for thread in list(_kept):
        if timeout_ms is None:
            thread.wait()
        else:
            thread.wait(timeout_ms)
    _prune()
    return not _kept


def _prune() -> None:
    _kept[:] = [t for t in _kept if _running(t)]


def _running(thread: QtCore.QThread) -> bool:
    try:
        return thread.isRunning()
    except RuntimeError:  # already deleted
        return False
