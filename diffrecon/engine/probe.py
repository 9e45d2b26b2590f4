"""A run's time and peak memory predicted from its first steps (:func:`plan`)."""
from __future__ import annotations

import threading
import time

import numpy as np
import torch

from ..calibration import spread_fields, stored_calibration
from ..errors import InputError
from ..measurement import Measurement
from ..priors.acceleration import COMPILE_SPEEDUP
from ..runtime import Counter, CountingDenoiser
from .events import Planned
from .planning import evaluations_per_sample, planned
from .preparation import _auto_compile, batch_start, prepare
from .recipe import RunConfig


def plan(measurement: Measurement, config: RunConfig, denoiser=None, probe_steps: int = 3, *,
         stop: threading.Event | None = None, fit_prior: bool = True) -> Planned:
    """Predict a run's time and peak memory by running the solver's first steps on the first
    batch: a solver's memory per step is steady, so the probe's peak is the run's peak, and the
    median step time times the number of steps and batches is its time.

    ``stop`` ends the probe at its next solver step (a run is starting and needs the device): the
    prediction then uses the steps timed so far, or has ``None`` time and memory if none were.
    ``fit_prior`` False (the window's background prediction): a prior that must first be fitted at
    this size (minutes, without progress) is not, nor is a ``budget`` schedule not yet cached
    searched; that is said in one sentence, and the run fits or searches with progress."""
    from ..priors.fitted import fit_needed
    from ..solvers import get_solver

    name = fit_needed(config.prior, measurement.operator.image_shape) if denoiser is None and not fit_prior else None
    if name is not None and get_solver(config.solver).uses_prior:
        raise InputError(f"The {name} prior is fitted at this image size by the first run (with progress, then "
                         "kept on disk); predictions follow after that.")
    setup = prepare(measurement, config, denoiser, probe=True, search=fit_prior)
    dev, info = setup.device, setup.info
    per_step, n_solver_steps = _time_steps(setup, probe_steps, stop)
    seconds = peak = None
    if per_step is not None:
        seconds = per_step * n_solver_steps * sum(bb / setup.batches[0] for bb in setup.batches)
        seconds *= _uneven_steps(info, setup.params, n_solver_steps)
        peak = torch.cuda.max_memory_allocated(dev) if dev.type == "cuda" else None
    mode = setup.compile_mode if info.uses_prior and hasattr(setup.denoiser, "accelerate") else None
    if mode is not None and setup.runtime.compile == "auto" and dev.type == "cuda":
        # the probe ran graphs; the run may compile (auto_mode): its speed-up, plus the compile
        evaluations = evaluations_per_sample(info, setup.params, len(setup.sigmas) - 1)
        mode, _, cost = _auto_compile(setup.denoiser, "grad" in info.needs, setup.batches, evaluations,
                                      setup.autocast, dev)
        if mode == "compile" and seconds is not None:
            per_evaluation = per_step / (evaluations_per_sample(info, setup.params, 1) * setup.batches[0])
            seconds = seconds / COMPILE_SPEEDUP + per_evaluation * cost
    if seconds is not None and setup.warm is not None:  # its classical solves, timed while preparing the probe
        seconds += setup.warm.seconds
    calibration = stored_calibration(measurement, setup.recipe, setup)
    return planned(setup, spread_fields(setup, calibration), peak=peak, seconds=seconds, mode=mode)


def _uneven_steps(info, params, steps: int) -> float:
    """The run's evaluations over ``steps`` times the evaluations of a plain step: above 1 where
    some steps evaluate more (DDNM+'s time travel), so the probe's typical step undercounts."""
    plain = steps * info.evaluations_per_step(params) if info.uses_prior else 0
    return info.evaluations(params, steps) / plain if plain else 1.0


def _time_steps(setup, probe_steps: int, stop) -> tuple[float | None, int]:
    """The median time of the first batch's steps after the first (which warms up), at most
    ``probe_steps`` of them, and the solver's number of steps; ``(None, 1)`` if none ran."""
    dev, info = setup.device, setup.info
    rng, x_init, y = batch_start(setup, setup.recipe.seed, range(setup.batches[0]))
    den = CountingDenoiser(setup.denoiser, Counter(), setup.autocast, dev) if info.uses_prior else None
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
    times, n_solver_steps = [], 1
    t = time.perf_counter()
    with torch.no_grad():
        solving = () if stop is not None and stop.is_set() else \
            info.solve(den, setup.op, y, setup.sigmas, x_init, params=setup.params, generator=rng)
        for k, step in enumerate(solving):
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            now = time.perf_counter()
            times.append(now - t)
            t, n_solver_steps = now, step.n
            if k + 1 >= probe_steps or (stop is not None and stop.is_set()):
                break
    if not times:
        return None, n_solver_steps
    return float(np.median(times[1:] if len(times) > 1 else times)), n_solver_steps
