"""The solver loop: the batches of a prepared run, one after the other, each sample its own random
stream. Running mean and variance stay on the device (Welford); previews are copied without
blocking and throttled; the divergence guard watches every step; an out-of-memory error halves
the batch and goes on (``Replanned``). :meth:`Loop.run` yields events and returns an
:class:`Outcome` for :mod:`.result`."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterator

import numpy as np
import torch

from ..errors import RunError
from ..guard import DivergenceGuard
from ..runtime import AsyncPreview, Counter, CountingDenoiser, CountingOperator, RunMemory, Welford, out_of_memory
from .events import Log, Preview, Progress, Replanned, Statistics
from .planning import Work, halved
from .preparation import Setup, batch_start, network_call

PROGRESS_INTERVAL = 0.05  # seconds between Progress events (and at each batch's last step)


@dataclass
class Outcome:
    """What the loop leaves for the result: statistics over the samples kept, and how it went."""

    stats: Welford
    kept: list[np.ndarray]  # samples in physical units, at most keep_samples
    ran: list[int]  # the batches that ran to their end, after any halving or a stop
    counter: Counter
    guard: DivergenceGuard
    started: str  # ISO 8601
    elapsed: float = 0.0
    peak_bytes: int = 0
    stopped: bool = False
    lost: bool = False  # every sample diverged: the statistics are of their last good estimates
    final_step: tuple[int, int] | None = None  # (step, steps) where a stopped batch was finished early
    traces: list = field(default_factory=list)  # Markov-chain solvers: their chains' summaries


class Loop:
    """One prepared run's batches; ``stop`` ends it at the next step, ``finish`` (with ``stop``)
    finishes the batch in progress by a final denoising step instead of dropping it."""

    def __init__(self, setup: Setup, units: str = "", std_scale: float = 1.0,
                 stop: threading.Event | None = None, finish: threading.Event | None = None):
        self.setup, self.recipe, self.runtime = setup, setup.recipe, setup.runtime
        self.std_scale, self.stop, self.finish = std_scale, stop, finish
        info, dev = setup.info, setup.device
        counter = Counter()
        self.den = CountingDenoiser(setup.denoiser, counter, setup.autocast, dev) if info.uses_prior else None
        self.op = CountingOperator(setup.op, counter)
        prior_range = setup.denoiser.card.value_range if info.uses_prior else (0.0, 1.0)
        guard = DivergenceGuard(setup.op, setup.y, setup.sigmas, prior_range, setup.norm.scale, info.name,
                                setup.params, self.runtime.on_divergence, units)
        self.out = Outcome(Welford(), [], [], counter, guard, datetime.now(timezone.utc).isoformat(timespec="seconds"))
        self.preview = AsyncPreview(dev)
        self.network = network_call(setup)
        self.setup_seconds = self.network.setup_seconds if self.network is not None else 0.0
        self.fell_back = False
        self.work = Work(len(setup.sigmas) - 1, self.recipe.samples)
        self.last_preview = self.last_progress = -1e9

    def run(self) -> Iterator[Any]:
        """Every batch; yields events and returns the :class:`Outcome` (``yield from``)."""
        dev, out = self.setup.device, self.out
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        self.memory = RunMemory(dev)
        self.t0 = time.perf_counter()
        queue, first = list(self.setup.batches), 0
        while queue and not out.stopped:
            b = queue.pop(0)
            try:
                x, finished = yield from self._solve(b, first)
            except (torch.cuda.OutOfMemoryError, MemoryError, RuntimeError) as err:
                queue = yield from self._out_of_memory(err, b, queue)
                continue
            done = yield from self._end_batch(b, x, finished)
            if not done:
                break
            first += b
        if out.stats.n == 0 and out.guard.found:  # show the diverged samples' last estimates that passed
            out.lost = True
            out.counter.finish()
            last = out.guard.last_estimates()
            out.stats.add(last.float())
            out.kept = list(self.setup.norm.to_physical(last[: self.runtime.keep_samples].float().cpu().numpy()))
        out.elapsed = time.perf_counter() - self.t0
        out.peak_bytes = self.memory.peak()
        return out

    # ------------------------------------------------------------------ one batch
    def _solve(self, b: int, first: int):
        """The solver over samples ``first .. first + b``; returns (its output or None, finished)."""
        setup, out = self.setup, self.out
        x, finished, self.at = None, False, (0, 1)  # self.at: (steps done, of) for an out-of-memory error
        indices = list(range(first, first + b))
        rng, x_init, y = batch_start(setup, self.recipe.seed, indices)
        out.guard.start_batch(indices)
        with torch.no_grad():
            for step in setup.info.solve(self.den, self.op, y, setup.sigmas, x_init, params=setup.params,
                                         generator=rng):
                x, x0_last = step.x, step.x0_hat  # the last step's x is the solver's output
                finished, self.at = step.i + 1 == step.n, (step.i + 1, step.n)
                if step.info and "trace" in step.info:  # Markov-chain solvers: their chains' summaries
                    out.traces.append(step.info["trace"])
                yield from self._step_events(step, b, first)
                if out.guard.batch_lost():
                    break
                if self.stop is not None and self.stop.is_set():
                    out.stopped = True
                    if self.finish is not None and self.finish.is_set() and step.i + 1 < step.n:
                        x, out.final_step = x0_last, (step.i + 1, step.n)
                    break
        return x, finished

    def _step_events(self, step, b: int, first: int):
        """Preview, Progress and Diverged for one solver step (throttled; no host synchronisation)."""
        now, last = time.perf_counter(), step.i + 1 == step.n
        landed = self.preview.ready()
        if landed is not None:
            arr, s_i, k = landed
            yield Preview(self.setup.norm.to_physical(arr[0]), s_i, k)
        if now - self.last_preview >= self.runtime.preview_interval or last:
            self.preview.start(step.x0_hat[0:1], step.i + 1, first)
            self.last_preview = now
        if now - self.last_progress >= PROGRESS_INTERVAL or last:
            self.last_progress = now
            yield self._progress(step.i + 1, step.n, first, self.work.in_batch(b, step.i + 1, step.n), now)
        news = self.out.guard.observe(step)  # known on the host at most two steps late, no sync
        if news is not None:
            yield news

    def _progress(self, step: int, steps: int, first: int, done: int, now: float) -> Progress:
        c, total, elapsed = self.out.counter, self.work.total, now - self.t0
        return Progress(step, steps, first, self.recipe.samples, c.nfe, c.grad, c.op_calls, elapsed,
                        elapsed / done * (total - done) if done else None, self.memory.snapshot(),
                        work_done=done, work_total=total)

    def _out_of_memory(self, err: BaseException, b: int, queue: list[int]):
        """Halve the batch after an allocation failure (re-raise any other error); the new queue."""
        dev, info = self.setup.device, self.setup.info
        where = out_of_memory(err, dev)
        if where is None:
            raise err
        if b == 1:
            raise RunError(f"Out of {where} memory with a single sample of {info.name}; use a smaller image"
                           + (", bf16 precision or the CPU." if where == "GPU" else " or free memory.")) from None
        if self.network is not None:
            self.network.release()  # graphs recorded for the batch that did not fit
        if dev.type == "cuda":
            torch.cuda.empty_cache()
        self.work.batch_failed(b, *self.at)
        queue = halved(b, queue)
        reason = f"Out of {where} memory with {b} samples per batch; going on with {queue[0]}."
        yield Log(reason, "warning")
        yield Replanned(list(queue), reason)
        return queue

    def _end_batch(self, b: int, x, finished: bool):
        """Statistics of the batch's samples that passed the guard; False when the run ends here."""
        out, norm = self.out, self.setup.norm
        landed = self.preview.ready(wait=True)  # the batch's last estimate, so the view ends current
        if landed is not None:
            yield Preview(norm.to_physical(landed[0][0]), landed[1], landed[2])
        # the samples to keep: a finished batch, or one finished by a final denoising step
        x, news = out.guard.end_batch(x if (finished and not out.stopped) or out.final_step is not None else None)
        if news is not None:
            yield news
        if (out.stopped and out.final_step is None) or out.guard.run_lost():
            return False
        yield from self._network_news(b)
        out.ran.append(b)
        self.work.batch_ended(b)
        if x is None:
            return True
        out.stats.add(x.float())
        out.counter.finish()
        keep = self.runtime.keep_samples
        if len(out.kept) < keep:
            out.kept.extend(norm.to_physical(x[: keep - len(out.kept)].float().cpu().numpy()))
        yield Statistics(norm.to_physical(out.stats.mean.float().cpu().numpy()),
                         self.std_scale * norm.scale * out.stats.std().float().cpu().numpy(), out.stats.n)
        return True

    def _network_news(self, b: int):
        """What the network's first batch of a size cost (compile, graphs), or that compiling failed."""
        network = self.network
        if network is None:
            return
        if network.fallback_reason and not self.fell_back:
            self.fell_back = True
            yield Log(f"{network.fallback_reason}; going on with CUDA graphs.", "warning")
        if network.setup_seconds > self.setup_seconds:
            what = "compiled the network" if network.mode == "compile" else "recorded CUDA graphs"
            yield Log(f"{what} for {b} samples per batch in {network.setup_seconds - self.setup_seconds:.1f} s "
                      "(once per batch size).", "info")
            self.setup_seconds = network.setup_seconds
