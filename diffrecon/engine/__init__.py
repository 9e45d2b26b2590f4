"""One reconstruction: ``run(measurement, config) -> Iterator[Event]``.

A run is a :class:`Recipe` (what decides the answer) and :class:`RuntimeOptions` (how and where
it runs), side by side in a :class:`RunConfig`. The engine works in three units:

* **plan** (:mod:`.preparation`, :mod:`.planning`, :mod:`.probe`): check the settings, build the
  operator, prior, schedule and warm start, map physical units to the prior's range (the only
  place that converts ranges, :mod:`.normalization`), split the K samples into batches that fit;
  :func:`plan` predicts time and memory from a few timed steps;
* **loop** (:mod:`.loop`): run the solver batch by batch, keep running mean and variance on the
  device (Welford), throttle previews, count network evaluations, gradients and operator calls,
  watch every step for divergence, halve the batch after an out-of-memory error;
* **result** (:mod:`.result`): metrics and the :class:`~diffrecon.measurement.Result` with its
  provenance (the recipe).

The GUI worker and the CLI iterate the same generator (:mod:`.events` lists what it yields); to
stop, set the ``stop`` event: the engine finishes at the next solver step and returns the
statistics of the samples already complete.
"""
from __future__ import annotations

from ..errors import InputError
from ..guard import Diverged
from ..measurement import Measurement, Result
from .events import Event, Finished, Log, Planned, Preparing, Preview, Progress, Replanned, Statistics
from .normalization import Normalization
from .planning import evaluations_per_sample, plan_batches
from .preparation import Setup, batch_start, check_settings, prepare
from .preparation import _auto_compile, _Setup  # noqa: F401 - the names tests and benchmarks know
from .probe import plan
from .recipe import RECIPE_KEYS, RUNTIME_KEYS, Recipe, RunConfig, RuntimeOptions
from .result import compute_metrics
from .runner import run

_batch_start = batch_start  # the name benchmarks know

__all__ = [
    "Diverged", "Event", "Finished", "InputError", "Log", "Measurement", "Normalization", "Planned", "Preparing",
    "Preview", "Progress", "RECIPE_KEYS", "RUNTIME_KEYS", "Recipe", "Replanned", "Result", "RunConfig",
    "RuntimeOptions", "Setup", "Statistics", "batch_start", "check_settings", "compute_metrics",
    "evaluations_per_sample", "plan", "plan_batches", "prepare", "run",
]
