"""``run``: the three units in order, a prepared plan, the loop, the result, as one event stream."""
from __future__ import annotations

import functools
import threading
from typing import Iterator

import torch

from ..calibration import setup_spread, spread_fields, stored_calibration
from ..guard import retry_config
from ..measurement import Measurement
from . import budget
from .events import Event, Finished, Log, Preparing
from .loop import Loop
from .planning import planned
from .preparation import Setup, check_settings, prepare
from .recipe import RunConfig
from .result import build_result, final_step_spread


def run(measurement: Measurement, config: RunConfig, *, stop: threading.Event | None = None,
        denoiser=None, finish: threading.Event | None = None, _retry: dict | None = None) -> Iterator[Event]:
    """Reconstruct ``measurement`` as ``config`` says, yielding events, ending with Finished.

    ``denoiser`` overrides ``config.prior`` with an already built prior (tests, comparisons).
    ``finish`` set together with ``stop``: the samples of the batch in progress are not dropped but
    finished by a final denoising step (their last clean estimate), recorded in the provenance as
    ``final_denoising_step``; their spread is then no posterior std.
    Raises :class:`~diffrecon.errors.InputError` before any work for impossible settings. A
    sample that diverges is reported (:class:`~diffrecon.guard.Diverged`) and handled as
    ``config.on_divergence`` says; the result's provenance then holds a ``divergence`` record.
    """
    recipe, runtime = check_settings(measurement, config)
    if denoiser is None and recipe.info.uses_prior:
        from ..priors.fitted import fit_events

        for event in fit_events(measurement.operator.image_shape, recipe.prior, Preparing):
            yield event
            if stop is not None and stop.is_set():
                yield Log("Stopped while fitting the prior; nothing to show.", "warning")
                return
    if recipe.schedule == "budget":  # a first run of the setting searches its levels, with progress
        setup = yield from budget.prepare_events(functools.partial(prepare, measurement, config, denoiser), stop)
        if setup is None:
            yield Log("Stopped while searching the budget schedule; nothing to show.", "warning")
            return
        yield Log(f"Budget schedule for {recipe.solver} at {recipe.steps} steps: "
                  + ("from the cache." if setup.budget["cached"] else
                     f"searched ({setup.budget['trials']} schedules tried, {setup.budget['psnr']:.2f} dB on simulated "
                     f"problems against {setup.budget['karras_psnr']:.2f} dB with Karras levels; kept on disk)."),
                  "info")
    else:
        setup = prepare(measurement, config, denoiser)
    calibration = stored_calibration(measurement, recipe, setup)
    yield planned(setup, spread_fields(setup, calibration))
    yield from _opening_logs(setup, calibration)
    fit_before = yield from _prior_fit_before(setup)

    loop = Loop(setup, measurement.units, calibration.scale if calibration is not None else 1.0, stop, finish)
    outcome = yield from loop.run()
    if outcome.stats.n == 0:
        yield Log("Stopped before any sample finished; nothing to show.", "warning")
        return
    spread = setup_spread(setup)
    if outcome.final_step is not None:
        spread = final_step_spread(outcome.final_step)
    result = build_result(measurement, setup, outcome, spread, calibration)
    if fit_before is not None:
        from .. import prior_fit
        with torch.no_grad():
            result.metrics.update(prior_fit.after_run(setup, outcome.stats.mean, fit_before,
                                                      result.metrics.get("residual_ratio")))
    if outcome.final_step is not None:
        step, steps = outcome.final_step
        yield Log(f"Stopped at step {step} of {steps}; the samples in progress were finished by a final denoising "
                  "step (their clean estimate), not by the remaining steps.", "warning")
    if _retry:
        result.provenance["retry"] = _retry
    again = retry_config(config, setup.params, outcome.guard.record()) \
        if runtime.retry_on_divergence and not outcome.stopped else None
    if again is not None:  # once: the retry's config has retry_on_divergence off
        yield Log(again[1]["message"], "warning")
        yield from run(measurement, again[0], stop=stop, denoiser=denoiser, finish=finish, _retry=again[1])
        return
    yield Finished(result)


def _opening_logs(setup: Setup, calibration) -> Iterator[Log]:
    """What to know before the first step: warnings, the network's mode, what the spread is."""
    for message in setup.warnings:
        yield Log(message, "warning")
    for message in setup.notes:
        yield Log(message, "info")
    spread = setup_spread(setup)
    if not spread.is_posterior:
        yield Log(spread.reason, "warning")
    if calibration is not None:
        yield Log(f"The std is scaled by {calibration.scale:.3g}, the stored {calibration.status()} "
                  f"for {calibration.setting}.", "info")


def _prior_fit_before(setup: Setup):
    """The prior-fit statistic before the run (None: off, or no prior), with its Log."""
    if not (setup.runtime.prior_fit and setup.info.uses_prior):
        return None
    from .. import prior_fit
    with torch.no_grad():
        before = prior_fit.before_run(setup)
    if before is not None:
        yield Log(*prior_fit.message(before, setup.prior_name))
    return before
