"""A recorder of event-loop gaps, for tests that the window stays responsive."""
from __future__ import annotations

import contextlib
import time


@contextlib.contextmanager
def event_loop_gaps(interval_ms: int = 10):
    """Yield a list that fills with the seconds between ticks of a ``interval_ms`` QTimer."""
    from PySide6 import QtCore

    gaps, last = [], [time.perf_counter()]

    def tick():
        now = time.perf_counter()
        gaps.append(now - last[0])
        last[0] = now

    timer = QtCore.QTimer(interval=interval_ms, timeout=tick)
    timer.start()
    try:
        yield gaps
    finally:
        timer.stop()
