"""One reconstruction: ``run(measurement, config) -> Iterator[Event]``.

The engine plans memory, splits the K samples into batches that fit, builds the schedule, maps
physical units to the prior's range (the only place that converts ranges), runs the solver,
keeps running mean and variance on the device (Welford), throttles previews, counts network
evaluations, gradients and operator calls, measures time and peak memory, computes metrics and
ends with a :class:`~diffrecon.measurement.Result`. The GUI worker and the CLI iterate the same
generator; to stop, set the ``stop`` event: the engine finishes at the next solver step and
returns the statistics of the samples already complete.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping

import numpy as np

from .measurement import Measurement, Result


@dataclass(frozen=True)
class RunConfig:
    """Everything that decides a reconstruction besides the measurement. Qt-free."""

    solver: str = "dps"
    params: Mapping[str, Any] = field(default_factory=dict)  # overrides of the solver's defaults
    steps: int = 50
    samples: int = 4
    seed: int = 0
    prior: str = "default"  # "default" (bundled), "gaussian", or a prior folder
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    precision: str = "bf16"  # bf16 | fp32: the network's autocast dtype on GPU
    schedule: str = "karras"  # karras | vp_uniform
    batch_size: int | None = None  # None: as many samples per batch as memory allows
    keep_samples: int = 16  # samples stored in the result
    preview_interval: float = 0.25  # seconds between previews


# ------------------------------------------------------------------------------------ events
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


Event = Planned | Progress | Preview | Statistics | Log | Finished


def run(measurement: Measurement, config: RunConfig, *, stop: threading.Event | None = None,
        denoiser=None) -> Iterator[Event]:
    """Reconstruct ``measurement`` as ``config`` says, yielding events, ending with Finished.

    ``denoiser`` overrides ``config.prior`` with an already built prior (tests, comparisons).
    Raises :class:`~diffrecon.errors.InputError` before any work for impossible settings.
    """
    raise NotImplementedError
