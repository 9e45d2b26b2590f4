"""Ctrl-C and SIGTERM in the command line: a run stops gracefully, a final write completes.

SIGTERM (what ``kill``, a batch scheduler or a container stop sends) is handled exactly like
Ctrl-C, so both leave the same state: temporary files removed, earlier results intact, the
finished samples of a stopped run written. Only the main thread can catch signals; elsewhere
these context managers change nothing.
"""
from __future__ import annotations

import contextlib
import signal
import sys
import threading
from pathlib import Path
from typing import Callable, Iterator

EXIT_INTERRUPTED = 130
_SIGNALS = tuple(s for s in (getattr(signal, "SIGINT", None), getattr(signal, "SIGTERM", None)) if s is not None)


def _say(text: str, file=None) -> None:
    from tqdm import tqdm

    tqdm.write(text, file=file or sys.stderr)


@contextlib.contextmanager
def _handling(handler: Callable, signals: tuple = _SIGNALS) -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, handler) for s in signals}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


@contextlib.contextmanager
def terminate_like_ctrl_c() -> Iterator[None]:
    """Inside the block SIGTERM raises KeyboardInterrupt, as Ctrl-C does, so the same clean-up
    runs (the default SIGTERM ends the process at once, leaving temporary files behind)."""
    def on_signal(signum, frame):
        raise KeyboardInterrupt

    with _handling(on_signal, tuple(s for s in _SIGNALS if s != signal.SIGINT)):
        yield


@contextlib.contextmanager
def ctrl_c_stops(stop: threading.Event, file=None) -> Iterator[None]:
    """Inside the block the first Ctrl-C (or SIGTERM) sets ``stop`` (the engine ends at its next
    step and keeps the finished samples, so results are still written) and a second one
    interrupts at once."""
    def on_signal(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        _say("Stopping after the current step (Ctrl-C again to abort) ...", file)

    with _handling(on_signal):
        yield


class FinalWrite:
    """State of :func:`finishing_write`: ``interrupted`` once a Ctrl-C or SIGTERM came in."""

    def __init__(self) -> None:
        self.interrupted = False


@contextlib.contextmanager
def finishing_write(path: str | Path, file=None) -> Iterator[FinalWrite]:
    """A write that a first Ctrl-C (or SIGTERM) does not break: it completes and the caller reports
    the interruption afterwards (``state.interrupted``); a second one abandons the write, which
    leaves the earlier file as it was (the writes are atomic)."""
    state = FinalWrite()

    def on_signal(signum, frame):
        if state.interrupted:
            raise KeyboardInterrupt
        state.interrupted = True
        _say(f"diffrecon: finishing the write of {path} first (Ctrl-C again to abandon it and keep the "
             "earlier file) ...", file)

    with _handling(on_signal):
        yield state
