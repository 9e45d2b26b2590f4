"""Closing a window whose background jobs are still busy.

A run, a prediction probe or a comparison checks for a stop only between two steps, and one
step of a large network on a CPU can take minutes. Closing asks every job to stop, waits a
moment, and hands the jobs that are still inside a step to a keeper here: their signals are
blocked (the closed window must not receive a late result) and the process waits for them
before it exits, so no thread is torn down while it still runs Python.
"""
from __future__ import annotations

import atexit
import contextlib

from PySide6 import QtCore

from .jobs import Job, pool, running_jobs

_kept: list[Job] = []
_exit_hooked = False


def stop_and_wait(window: QtCore.QObject, stop_requests, wait_ms: int) -> list[Job]:
    """Call each of ``stop_requests``, wait up to ``wait_ms`` in all for the running jobs
    started for ``window`` or its descendants, keep the ones still running
    (:func:`keep_until_finished`) and return them."""
    for request in stop_requests:
        with contextlib.suppress(RuntimeError):  # its Qt object is already deleted
            request()
    deadline = QtCore.QDeadlineTimer(max(0, int(wait_ms)))
    jobs = running_jobs(window)
    for job in jobs:
        job.wait(max(0, deadline.remainingTime()))
    busy = [j for j in jobs if j.running()]
    keep_until_finished(busy)
    return busy


def keep_until_finished(jobs) -> None:
    """Keep ``jobs`` until they end, their signals blocked; the process waits for them on quitting
    (``aboutToQuit``) and at exit."""
    global _exit_hooked
    _prune()
    for job in jobs:
        job.signals.blockSignals(True)
        if job not in _kept:
            _kept.append(job)
    if jobs and not _exit_hooked:
        _exit_hooked = True
        atexit.register(wait_for_kept)  # atexit runs before the interpreter tears Qt down
        app = QtCore.QCoreApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(wait_for_kept)


def kept_threads() -> list[Job]:
    """The jobs closed windows left running (those that have ended are dropped)."""
    _prune()
    return list(_kept)


def wait_for_kept(timeout_ms: int | None = None) -> bool:
    """Wait for the kept jobs to end (each ends at its next step: it was asked to stop), then for
    their pool threads to leave; True when none is left."""
    for job in list(_kept):
        job.wait(timeout_ms)
    _prune()
    if not _kept:
        pool().waitForDone(2000 if timeout_ms is None else timeout_ms)
    return not _kept


def _prune() -> None:
    _kept[:] = [j for j in _kept if j.running()]
