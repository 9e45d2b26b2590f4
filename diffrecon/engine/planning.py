"""The plan of a run: how the samples split into batches, how much work and how many network
evaluations they are, and the plan again after an out-of-memory error (the batch halved)."""
from __future__ import annotations

import torch

from ..runtime import device_name
from .events import Planned


def plan_batches(samples: int, batch_size: int) -> list[int]:
    """``samples`` in batches of ``batch_size``, the rest last."""
    full, rest = divmod(samples, batch_size)
    return [batch_size] * full + ([rest] if rest else [])


def auto_batch(samples: int, device: torch.device) -> int:
    """The batch size when none is given."""
    # On the GPU all samples go in one batch and an out-of-memory error halves it; on the CPU
    # batches of 8 keep previews and Stop responsive without costing throughput.
    return samples if device.type == "cuda" else min(samples, 8)


def halved(failed: int, queued: list[int]) -> list[int]:
    """The batches after one of ``failed`` samples ran out of memory with ``queued`` still to run:
    every remaining sample in batches of half the size."""
    return plan_batches(failed + sum(queued), max(1, failed // 2))


def evaluations_per_sample(info, params, steps: int) -> int:
    """Network evaluations one sample needs with these params (:meth:`SolverInfo.evaluations`:
    steps times the evaluations per step, plus DDNM+'s time travel; 0 for the classical baselines)."""
    return info.evaluations(params, steps)


class Work:
    """Progress in solver steps summed over samples (see :mod:`.events`): ``done`` never goes
    back, ``total`` grows by the steps an out-of-memory batch spent before it failed."""

    def __init__(self, steps: int, samples: int):
        self.steps = steps
        self.total = steps * samples
        self.finished = 0  # work of the batches that ended (finished, lost or failed)

    def in_batch(self, batch: int, step: int, of: int) -> int:
        """Work done with the running ``batch`` at ``step`` of ``of`` (a solver may take fewer
        steps than the budget, e.g. the direct reconstruction's one: its steps are scaled)."""
        return self.finished + batch * (step * self.steps // max(of, 1))

    def batch_ended(self, batch: int) -> None:
        self.finished += batch * self.steps

    def batch_failed(self, batch: int, step: int, of: int) -> None:
        """The batch ran ``step`` steps and is run again: what it spent counts in both."""
        spent = batch * (step * self.steps // max(of, 1))
        self.finished += spent
        self.total += spent


def planned(setup, calibration_fields: dict, *, peak: int | None = None, seconds: float | None = None,
            mode: str | None = None) -> Planned:
    """The Planned event of ``setup`` (a prepared run); ``peak``/``seconds``/``mode`` from a probe."""
    steps = len(setup.sigmas) - 1
    return Planned(
        device=device_name(setup.device), batches=list(setup.batches), steps=steps,
        nfe_per_sample=evaluations_per_sample(setup.info, setup.params, steps), predicted_peak_bytes=peak,
        normalization=(setup.norm.scale, setup.norm.offset), predicted_seconds=seconds, network_mode=mode,
        work_total=steps * sum(setup.batches), **calibration_fields,
    )
