"""A queue of files for a window: per-file status, pause and cancel, without Qt.

:class:`BatchQueue` holds the files and their states; :meth:`BatchQueue.run` works through them
one at a time (call it from a background thread) and tells every subscriber about each change:
a :class:`FileEvent` when a file changes state or advances, a :class:`QueueEvent` when the queue
changes state and after every file (counts and the time left). Subscribers are called on the thread that runs the queue; a window forwards them to its
own thread (a queued signal). :meth:`pause` takes effect after the file in progress;
:meth:`cancel` stops the file in progress within one solver step (nothing is written for it)
and marks the files not reached as cancelled. The results, the skipping of finished files and
the summary table are those of ``diffrecon batch`` (:func:`~diffrecon.batch.run_manifest`).
"""
from __future__ import annotations

import dataclasses
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from ..engine import Planned, Progress, RunConfig
from ..errors import InputError
from .job import CANCELLED, FAILED, SKIPPED, Record, Task, plan, run_task
from .manifest import Item
from .recipe import recipe_dict, recipe_hash
from .runner import BatchProgress, BatchSummary, summary_paths
from .summary import counts, write_summary

QUEUED, RUNNING = "queued", "running"
#: Queue states: idle (not started), running, paused (waiting before the next file), finished, cancelled.
IDLE, PAUSED, FINISHED = "idle", "paused", "finished"
FRACTION_EVERY = 0.1  # seconds between two FileEvents of the same running file


@dataclass(frozen=True)
class FileEvent:
    index: int  # the item's index
    name: str
    state: str  # queued | running | done | skipped | failed | diverged | cancelled
    fraction: float  # of this file's work, 0 .. 1
    record: Record | None = None  # once the file has ended: its summary row (error text, metrics, time)


@dataclass(frozen=True)
class QueueEvent:
    state: str  # idle | running | paused | finished | cancelled
    progress: BatchProgress


class BatchQueue:
    def __init__(self, items: Sequence[Item], config: RunConfig, out_dir: str | Path, *, overwrite: bool = False):
        self.items = list(items)
        self.config = config
        self.out_dir = Path(out_dir)
        self.overwrite = overwrite
        self._files = {item.index: FileEvent(item.index, item.name, QUEUED, 0.0) for item in self.items}
        self._subscribers: list[Callable] = []
        self._state = IDLE
        self._resume = threading.Event()
        self._resume.set()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._t0 = 0.0
        self.summary: BatchSummary | None = None

    # ---------------------------------------------------------------- model
    def subscribe(self, callback: Callable[[FileEvent | QueueEvent], None]) -> Callable[[], None]:
        """Call ``callback`` with every event; returns the function that unsubscribes it."""
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback)

    @property
    def state(self) -> str:
        return self._state

    def files(self) -> list[FileEvent]:
        """The current status of every file, in queue order."""
        return [self._files[item.index] for item in self.items]

    def add(self, items: Sequence[Item]) -> list[Item]:
        """Append ``items`` (also while running; numbered after the files already queued); the
        items as queued. InputError when one would write the output of a file already queued."""
        with self._lock:
            taken = {os.path.abspath(i.output) for i in self.items}
            start = max((i.index for i in self.items), default=-1) + 1
            added = [dataclasses.replace(item, index=start + k) for k, item in enumerate(items)]
            for item in added:
                if os.path.abspath(item.output) in taken:
                    raise InputError(f"{item.input} would write {item.output}, the output of a file already queued.")
                taken.add(os.path.abspath(item.output))
            self.items.extend(added)
        for item in added:
            self._file(item, QUEUED, 0.0)
        return added

    def pause(self) -> None:
        """Start no further file until :meth:`resume` (the one in progress finishes)."""
        self._resume.clear()
        if self._state == RUNNING:
            self._set_state(PAUSED)

    def resume(self) -> None:
        self._resume.set()
        if self._state == PAUSED:
            self._set_state(RUNNING)

    def cancel(self) -> None:
        """Stop the file in progress within one solver step and start no other."""
        self._stop.set()
        self._resume.set()

    # ---------------------------------------------------------------- work
    def run(self) -> BatchSummary:
        """Work through the queue (blocking; from a background thread) and write the summary."""
        self._t0 = time.perf_counter()
        self._set_state(RUNNING if self._resume.is_set() else PAUSED)
        records: dict[int, Record] = {}
        try:
            for item in self._pending():
                self._resume.wait()
                if self._stop.is_set():
                    break
                if self._state == PAUSED:
                    self._set_state(RUNNING)
                planned = plan(item, self.config, overwrite=self.overwrite)
                record = planned if isinstance(planned, Record) else self._run_one(planned)
                records[item.index] = record
                self._file(item, record.status, 1.0 if record.status != CANCELLED else self._files[item.index].fraction,
                           record)
                self._emit(QueueEvent(self._state, self._progress()))  # the counts and the time left
        finally:
            with self._lock:
                items = list(self.items)
            for item in items:
                if item.index not in records:
                    self._file(item, CANCELLED, self._files[item.index].fraction)
            rows = write_summary(records, items, summary_paths(self.out_dir), recipe_dict(self.config),
                                 recipe_hash(self.config), CANCELLED)
            self.summary = BatchSummary(rows, *summary_paths(self.out_dir), counts(rows),
                                        time.perf_counter() - self._t0)
            self._set_state(CANCELLED if self._stop.is_set() else FINISHED)
        return self.summary

    def _pending(self):
        """The queued items in order, including those added while running."""
        position = 0
        while True:
            with self._lock:
                if position >= len(self.items):
                    return
                item = self.items[position]
            position += 1
            yield item

    def _run_one(self, task: Task) -> Record:
        item, batches, last = task.item, [], [0.0]
        self._file(item, RUNNING, 0.0)

        def on_event(event) -> None:
            if isinstance(event, Planned):
                batches[:] = event.batches
            elif isinstance(event, Progress) and time.perf_counter() - last[0] >= FRACTION_EVERY:
                last[0] = time.perf_counter()
                self._file(item, RUNNING, _fraction(event, batches))
        self.out_dir.mkdir(parents=True, exist_ok=True)
        return run_task(task, self._stop, on_event)

    def _progress(self) -> BatchProgress:
        ended = [f for f in self._files.values() if f.state not in (QUEUED, RUNNING)]
        ran = [f for f in ended if f.state not in (SKIPPED, CANCELLED)]
        elapsed = time.perf_counter() - self._t0 if self._t0 else 0.0
        left = len(self._files) - len(ended)
        return BatchProgress(len(ended), len(self._files), sum(f.state == FAILED for f in ended),
                             sum(f.state == SKIPPED for f in ended), elapsed,
                             elapsed / len(ran) * left if ran else None)

    def _file(self, item: Item, state: str, fraction: float, record: Record | None = None) -> None:
        event = FileEvent(item.index, item.name, state, fraction, record)
        self._files[item.index] = event
        self._emit(event)

    def _set_state(self, state: str) -> None:
        self._state = state
        self._emit(QueueEvent(state, self._progress()))

    def _emit(self, event) -> None:
        for callback in list(self._subscribers):
            callback(event)


def _fraction(event: Progress, batches: list[int]) -> float:
    """Share of one file's sample-steps done, from the engine's progress and its batch plan."""
    total = event.samples_total * max(event.steps, 1)
    running = next((b for b, start in zip(batches, _starts(batches)) if start >= event.samples_done), 1)
    return min(1.0, (event.samples_done * event.steps + event.step * running) / total) if total else 0.0


def _starts(batches: list[int]) -> list[int]:
    out, start = [], 0
    for b in batches:
        out.append(start)
        start += b
    return out
