"""A run's events reach the window only while the window shows the run's own measurement, and
a run that has ended keeps nothing alive.

A run belongs to the measurement it started on. When the window shows another one while the
run goes on (a file opened, a re-simulation), the run is abandoned: asked to stop, its signals
cut from the window, so its result never appears under the other file's title nor is its error
computed against the other file's ground truth. A run job keeps no inputs once its generator
has ended, and the window refers to its latest job only.
"""
from __future__ import annotations

import contextlib

from PySide6 import QtWidgets

#: The RunWorker signals that carry a run's data to the window.
RUN_SIGNALS = ("planned", "progress", "replanned", "preview", "statistics", "log", "finished_result", "failed",
               "stopped_empty", "diverged", "preparing", "warned")


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


def abandon(worker) -> None:
    """Stop ``worker`` (a run job) at its next step and cut its data signals from every receiver;
    the pool drops it once it has ended."""
    worker.request_stop()
    for name in (*RUN_SIGNALS, "finished"):
        with contextlib.suppress(RuntimeError, TypeError):
            getattr(worker, name).disconnect()
