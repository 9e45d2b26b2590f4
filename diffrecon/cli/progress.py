"""Progress bars and Ctrl-C for every command, in one place.

Ctrl-C and SIGTERM. SIGTERM (what ``kill``, a batch scheduler or a container stop sends) is
handled exactly like Ctrl-C, so both leave the same state: temporary files removed, earlier
results intact, the finished samples of a stopped run written. Only the main thread can catch
signals; elsewhere these context managers change nothing.

Progress. A :class:`RunBar` shows the work of one or more engine runs: solver steps summed over
all samples. It reads ``work_done`` / ``work_total`` from the engine's Progress events where they
carry them, and otherwise computes them from the planned batches; a ``Replanned`` event (after an
out-of-memory error made the batches smaller) replaces that plan, so the bar never goes stale.
"""
from __future__ import annotations

import contextlib
import signal
import sys
import threading
from pathlib import Path
from typing import Callable, Iterator, Sequence

from ..display import format_bytes

EXIT_INTERRUPTED = 130
_SIGNALS = tuple(s for s in (getattr(signal, "SIGINT", None), getattr(signal, "SIGTERM", None)) if s is not None)




# ------------------------------------------------------------------------------ lines for people
def say(text: str, file=None) -> None:
    """One line on stderr that does not tear a progress bar."""
    from tqdm import tqdm

    tqdm.write(text, file=file or sys.stderr)


def status(message: str) -> None:
    """A progress line for a human at a terminal; pipes and logs get only the result."""
    if sys.stderr.isatty():
        print(message, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------ Ctrl-C and SIGTERM
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
        say("Stopping after the current step (Ctrl-C again to abort) ...", file)

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
        say(f"diffrecon: finishing the write of {path} first (Ctrl-C again to abandon it and keep the "
            "earlier file) ...", file)

    with _handling(on_signal):
        yield state


def write_final(out: Path, write: Callable[[], object]) -> bool:
    """Run ``write()``, which a first Ctrl-C or SIGTERM lets complete; True when one came."""
    with finishing_write(out) as state:
        write()
    if state.interrupted:
        print(f"diffrecon: interrupted while writing {out}; the write completed first.", file=sys.stderr)
    return state.interrupted


# ------------------------------------------------------------------------------ progress
def steps_done(event, batches: Sequence[int]) -> int:
    """Sample-steps finished from a Progress event without ``work_done``: whole samples done plus
    the running batch's progress (its size looked up in ``batches``, the plan from sample 0)."""
    done, start, current = event.samples_done, 0, batches[-1] if batches else 1
    for b in batches:
        if start >= done:
            current = b
            break
        start += b
    return done * event.steps + event.step * current


def work(event, batches: Sequence[int]) -> tuple[int, int]:
    """``(done, total)`` sample-steps of one run at a Progress event."""
    done = getattr(event, "work_done", None)
    total = getattr(event, "work_total", None)
    if done is None:
        done = steps_done(event, batches)
    if total is None:
        total = event.steps * event.samples_total
    return int(done), int(total)


def memory_text(memory: dict) -> str:
    for key in ("peak", "allocated", "rss"):
        if memory.get(key):
            return f"{format_bytes(memory[key])} {key}"
    return "-"


class RunBar:
    """A tqdm bar over the sample-steps of a queue of runs (one run for ``reconstruct``).

    ``start_run(samples)`` before each run's events, ``end_run()`` after; :meth:`event` takes the
    engine's events and returns True when it handled one. The bar opens on the first Planned or
    Progress event (a refused setting prints its sentence alone) and closes with the ExitStack
    given."""

    def __init__(self, stack: contextlib.ExitStack, desc: str, *, total: int | None = None, unit: str = "step"):
        self._stack, self._desc, self._unit = stack, desc, unit
        self.bar = None
        self.total_hint = total  # the whole queue's sample-steps, when known before it starts
        self.done_before = 0  # sample-steps of the runs already ended
        self.batches: list[int] = []
        self._run_total = self._samples = self._steps = 0

    def open(self, total: int = 0):
        """The tqdm bar, opened now if it is not yet."""
        if self.bar is None:
            from tqdm import tqdm

            self.bar = self._stack.enter_context(tqdm(total=self.total_hint or total, unit=self._unit,
                                                      desc=self._desc, file=sys.stderr, dynamic_ncols=True,
                                                      leave=True))
        return self.bar

    def set(self, n: int) -> None:
        """Show ``n`` of the total done (a bar counted in other units than sample-steps)."""
        bar = self.open()
        bar.n = min(bar.total, n)
        bar.refresh()

    def postfix(self, text: str) -> None:
        self.open().set_postfix_str(text)

    def start_run(self, samples: int, steps: int | None = None, desc: str | None = None) -> None:
        self.batches, self._samples, self._steps = [samples], samples, steps or 0
        self._run_total = self._steps * samples
        if desc is not None and self.bar is not None:
            self.bar.set_description(desc)
        elif desc is not None:
            self._desc = desc

    def end_run(self, total: int | None = None) -> None:
        """A run ended: its ``total`` sample-steps (default: as last reported) count as done."""
        self.done_before += self._run_total if total is None else total
        if self.bar is not None:
            self.bar.n = min(self.bar.total, self.done_before)
            self.bar.refresh()

    def planned(self, event) -> None:
        self.batches = list(event.batches) or self.batches
        self._steps = event.steps
        self._run_total = event.steps * sum(self.batches)
        self.open(self._run_total)

    def replanned(self, event) -> None:
        """New batch sizes after an out-of-memory error: the plan for the samples not yet done, or
        for all of them; the total stays the run's samples times its steps."""
        new = list(event.batches)
        done = max(0, self._samples - sum(new))
        self.batches = ([done] if done else []) + new
        self._run_total = self._steps * sum(self.batches)
        if self.bar is not None and self.total_hint is None:
            self.bar.total = self._run_total
        say(f"re-planned: batches of {new} ({event.reason})")

    def progress(self, event, postfix: str | None = None) -> None:
        done, total = work(event, self.batches)
        self._run_total = total
        bar = self.open(total)
        if self.total_hint is None:
            bar.total = total
        bar.n = min(bar.total, self.done_before + done)
        if postfix is not None:
            bar.set_postfix_str(postfix, refresh=False)
        bar.refresh()

    def event(self, event) -> bool:
        from ..engine import Planned, Progress, Replanned

        if isinstance(event, Planned):
            self.planned(event)
        elif isinstance(event, Progress):
            self.progress(event)
        elif isinstance(event, Replanned):
            self.replanned(event)
        else:
            return False
        return True
