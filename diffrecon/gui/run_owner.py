"""A run's events reach the window only while the window shows the run's own measurement, and
a run that has ended keeps nothing alive.

A run belongs to the measurement it started on. When the window shows another one while the
run goes on (a file opened, a re-simulation), the run is abandoned: asked to stop, its signals
cut from the window, so its result never appears under the other file's title nor is its error
computed against the other file's ground truth. A worker that has ended drops its inputs (the
measurement, the engine callable), and a worker the window no longer refers to is deleted: a Qt
parent would otherwise keep every finished run's measurement for the window's lifetime.
"""
from __future__ import annotations

import contextlib

from PySide6 import QtCore, QtWidgets

#: The RunWorker signals that carry a run's data to the window.
RUN_SIGNALS = ("planned", "progress", "preview", "statistics", "log", "finished_result", "failed")
_INPUTS = ("measurement", "_engine_run", "plan_fn")


def stop_question(parent: QtWidgets.QWidget | None, running_on: str, opening: str) -> QtWidgets.QMessageBox:
    """The question whether to stop the run on ``running_on`` so that ``opening`` can be shown."""
    buttons = QtWidgets.QMessageBox.StandardButton
    box = QtWidgets.QMessageBox(QtWidgets.QMessageBox.Icon.Question, "Stop the running reconstruction?",
                                f"A reconstruction of {running_on} is still running. Stop it and open {opening}?",
                                buttons.Yes | buttons.No, parent)
    box.setInformativeText("Its samples are not kept: a result is only ever shown with its own measurement.")
    box.setDefaultButton(buttons.No)
    return box


def ask_to_stop(parent: QtWidgets.QWidget | None, running_on: str, opening: str) -> bool:
    """Ask :func:`stop_question`; True for Yes."""
    return stop_question(parent, running_on, opening).exec() == QtWidgets.QMessageBox.StandardButton.Yes


def abandon(worker: QtCore.QThread) -> None:
    """Stop ``worker`` at its next step and cut its data signals from every receiver; it deletes
    itself once it has ended."""
    worker.request_stop()
    for name in RUN_SIGNALS:
        with contextlib.suppress(RuntimeError, TypeError):
            getattr(worker, name).disconnect()
    with contextlib.suppress(RuntimeError, TypeError):
        worker.finished.disconnect()
    if worker.isRunning():
        worker.finished.connect(worker.deleteLater)
    else:
        retire(worker)


def release_inputs(worker: QtCore.QObject | None) -> None:
    """Drop what an ended worker was given to compute (its measurement above all)."""
    if worker is None:
        return
    for name in _INPUTS:
        if getattr(worker, name, None) is not None:
            setattr(worker, name, None)


def retire(worker: QtCore.QThread | None) -> None:
    """Delete an ended worker the window no longer needs (its Qt parent would keep it)."""
    if worker is None:
        return
    with contextlib.suppress(RuntimeError):  # already deleted
        if not worker.isRunning():
            release_inputs(worker)
            worker.deleteLater()
