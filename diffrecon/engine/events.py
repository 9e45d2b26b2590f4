"""What a run tells its front end: plain dataclasses with numpy arrays, yielded in this order:
``Preparing``* (a prior fitted at a new size), ``Planned``, then ``Progress`` / ``Preview`` /
``Statistics`` / ``Log`` / ``Diverged`` / ``Replanned`` while the solver runs, and ``Finished``.

Work is counted in solver steps summed over samples: a batch of ``b`` samples that has run ``k``
of its ``n`` steps has done ``k * b`` units. ``Progress.work_done / Progress.work_total`` is the
fraction of the run done; it never goes backwards, reaches 1 when every sample has finished, and
stays right after an out-of-memory re-plan (``Replanned``: the steps spent on the batch that did
not fit are added to both numbers).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..guard import Diverged
from ..measurement import Result


@dataclass
class Planned:
    """Sent once before the first step."""

    device: str
    batches: list[int]  # samples per batch
    steps: int
    nfe_per_sample: int  # predicted network evaluations per sample
    predicted_peak_bytes: int | None
    std_is_posterior: bool
    normalization: tuple[float, float]  # (scale, offset): physical = scale * prior + offset
    predicted_seconds: float | None = None  # from a probe (see plan()); None inside run()
    network_mode: str | None = None  # how the network will run (auto resolved); None without a network
    spread: str | None = None  # posterior | seed | prior | point (solvers.labels); None: from std_is_posterior
    spread_reason: str = ""  # one sentence: why the spread is what it is
    calibration: str = "uncalibrated"  # "calibrated (coverage ...)" when a stored calibration applies
    work_total: int | None = None  # solver steps summed over samples; None: steps * samples

    def __post_init__(self):
        if self.spread is None:
            self.spread = "posterior" if self.std_is_posterior else "seed"
        if self.work_total is None:
            self.work_total = int(self.steps) * int(sum(self.batches))


@dataclass
class Progress:
    step: int  # steps done in the current batch
    steps: int
    samples_done: int
    samples_total: int
    nfe: int  # network evaluations so far, all samples
    grad_evals: int  # of which with backpropagation
    op_calls: int  # forward-model applications (A, A^H, pinv) so far
    elapsed: float  # seconds
    eta: float | None  # seconds left, None before it can be estimated
    memory: dict[str, int] = field(default_factory=dict)  # allocated/reserved/peak/total or rss bytes
    #: solver steps summed over samples, done and in all (see the module docstring); the engine
    #: always sets both; None (an event made elsewhere) leaves the count to the reader
    work_done: int | None = None
    work_total: int | None = None


@dataclass
class Replanned:
    """The batches were planned again (an out-of-memory error halved them): the batches still to
    run, from the one that failed on, and one sentence why. Later Progress events count the new plan."""

    batches: list[int]
    reason: str


@dataclass
class Preview:
    """The current clean estimate of the first sample of the running batch (physical units)."""

    x0_hat: np.ndarray  # (C, H, W)
    step: int
    sample_index: int


@dataclass
class Statistics:
    """Running posterior statistics after a batch completes (physical units)."""

    mean: np.ndarray
    std: np.ndarray
    samples_done: int


@dataclass
class Log:
    message: str
    level: str = "info"  # info | warning


@dataclass
class Finished:
    result: Result


@dataclass
class Preparing:
    """Work before the first step that takes a while (fitting a prior at a new size), done of total."""

    what: str
    done: int
    total: int


Event = Planned | Progress | Preview | Statistics | Log | Diverged | Replanned | Finished | Preparing
