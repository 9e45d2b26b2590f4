"""The log points of a training loop, shared by ``diffrecon train`` and consistency distillation."""
from __future__ import annotations

import sys
import time


class LogPoints:
    """Every ``log_every`` steps (and at the last): steps per second since the previous point, the
    loss read from the device (the loop's one host synchronisation), a line in ``log``, the
    progress bar's loss, and whether the time limit (seconds since the start) has passed."""

    def __init__(self, start: int, steps: int, log_every: int, time_limit: float | None, bar, log: list[dict]):
        self.steps, self.log_every, self.time_limit, self.bar, self.log = steps, log_every, time_limit, bar, log
        self.tick, self.tick_step = time.perf_counter(), start
        self.started = self.tick

    def reached(self, done: int, loss, loss_ema) -> bool:
        """Log step ``done`` if it is a log point; True when the run should stop for its time limit."""
        if done % self.log_every and done != self.steps:
            return False
        now = time.perf_counter()
        rate = (done - self.tick_step) / max(now - self.tick, 1e-9)
        self.tick, self.tick_step = now, done
        value = float(loss_ema)
        self.log.append({"step": done, "loss": float(loss), "loss_ema": value, "steps_per_s": rate})
        self.bar.set_postfix(loss=f"{value:.4f}", refresh=False)
        if self.time_limit is not None and now - self.started > self.time_limit and done < self.steps:
            print(f"Time limit {self.time_limit:g} s reached at step {done}; resume with --resume.", file=sys.stderr)
            return True
        return False
