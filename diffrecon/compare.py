"""Solvers side by side: a queue of runs (solvers x step budgets x seeds), equal budgets, the
metrics table, the cost-quality Pareto front, and the files (grid PNG, table CSV, all runs HDF5).

Qt-free and free of the command line; the window (:mod:`diffrecon.gui.compare_window`) and
``diffrecon compare`` (:mod:`diffrecon.cli.compare`) iterate the same :func:`run_comparison`
generator, which iterates :func:`diffrecon.engine.run` once per run. The files (the comparison
HDF5 file, the table, the figure) are :mod:`diffrecon.io.comparison_file` and
:mod:`diffrecon.io.figures`; their names are importable from here too.

Budgets. ``budget_nfe`` counts network evaluations of the whole run, all samples together (the
engine's ``metrics["nfe"]``): a solver with ``nfe_per_step`` evaluations per step and sample gets
``steps = floor(budget_nfe / (nfe_per_step * samples))``, so it spends at most the budget and less
than one step short of it. Classical baselines (no network) iterate to their own tolerance
whatever the budget (the steps only pace their progress reports), so they are compared converged.
``budget_seconds`` is wall time of the whole run, predicted by :func:`diffrecon.engine.plan`
(the median of a few probed steps times the steps and batches).
"""
from __future__ import annotations

import dataclasses
import math
import threading
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Sequence

from .engine import Finished, RunConfig, plan, run
from .errors import DiffreconError, InputError
from .grid_levels import row_levels, shared_levels  # the window's grid takes them from here
from .guard import divergence_of
from .io.comparison_file import (FORMAT, FORMAT_VERSION, METRIC_KEYS, RUN_KEYS, Comparison,
                                 RunSpec, metrics_rows, read_comparison, write_comparison, write_table)
from .io.figures import ROW_CMAPS, ROW_TITLES, grid_rows, std_title, write_figure
from .limits import check_seed
from .measurement import Measurement, Result

__all__ = ["CompareSpec", "Comparison", "ComparisonFinished", "FORMAT", "FORMAT_VERSION", "METRIC_KEYS",
           "QueueControl", "ROW_CMAPS", "ROW_TITLES", "RUN_KEYS", "RunEnded", "RunEvent", "RunSpec", "RunStarted",
           "equal_budget", "grid_rows", "metrics_rows", "pareto_front", "read_comparison", "row_levels",
           "run_comparison", "shared_levels", "std_title", "step_costs", "write_comparison", "write_figure",
           "write_table"]


# ------------------------------------------------------------------------------ specifications
@dataclass(frozen=True)
class CompareSpec:
    """Solvers x step budgets x seeds, each run with ``samples`` samples.

    With ``budget_nfe`` or ``budget_seconds`` set, ``steps`` is ignored and :meth:`runs` needs the
    per-solver step counts from :func:`equal_budget` (``budget_steps``).
    """

    solvers: tuple[str, ...]
    steps: tuple[int, ...] = (50,)
    seeds: tuple[int, ...] = (0,)
    samples: int = 4
    params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # solver -> overrides
    budget_nfe: float | None = None
    budget_seconds: float | None = None

    def runs(self, budget_steps: Mapping[str, int] | None = None) -> list[RunSpec]:
        """The queue, solver by solver, then step budget, then seed."""
        from .solvers import get_solver

        if not self.solvers:
            raise InputError("No solver is selected; choose at least one solver to compare.")
        if self.samples < 1:
            raise InputError(f"samples must be at least 1 (got {self.samples}).")
        for name in self.solvers:
            get_solver(name)
        if any(int(s) < 1 for s in self.steps):
            raise InputError(f"Every step budget must be at least 1 (got {list(self.steps)}).")
        for seed in self.seeds:  # all checked before the first run, not when a later one starts
            check_seed(seed)
        out = []
        for name in self.solvers:
            steps = [budget_steps[name]] if budget_steps is not None else list(self.steps)
            for n in steps:
                for seed in self.seeds:
                    out.append(RunSpec(name, int(n), self.samples, int(seed), dict(self.params.get(name, {}))))
        return out


def _charged_per_step(info, params=None) -> int:
    return info.evaluations_per_step(params) if info.uses_prior else 1


def step_costs(solvers: Sequence[str], *, unit: str = "nfe", samples: int = 1,
               measurement: Measurement | None = None, base_config: RunConfig | None = None,
               denoiser=None, probe_steps: int = 20) -> dict[str, float]:
    """What one step of each solver costs a whole run: network evaluations (``unit="nfe"``,
    ``nfe_per_step * samples``) or predicted seconds (``unit="seconds"``, from
    :func:`diffrecon.engine.plan` of a ``probe_steps``-step run divided by its steps)."""
    from .solvers import get_solver

    out: dict[str, float] = {}
    for name in solvers:
        info = get_solver(name)
        if unit == "nfe":
            out[name] = float(_charged_per_step(info) * samples)
        elif unit == "seconds":
            if measurement is None or base_config is None:
                raise InputError("An equal-seconds budget needs the measurement and the base settings to time the solvers.")
            cfg = dataclasses.replace(base_config, solver=name, samples=samples, steps=probe_steps, params={})
            planned = plan(measurement, cfg, denoiser=denoiser)
            out[name] = max(float(planned.predicted_seconds or 0.0), 1e-9) / planned.steps
        else:
            raise InputError(f"Budget unit {unit!r} is not known; use nfe or seconds.")
    return out


def equal_budget(solvers: Sequence[str], budget_nfe: float | None = None, budget_seconds: float | None = None,
                 *, samples: int = 1, measurement: Measurement | None = None,
                 base_config: RunConfig | None = None, denoiser=None, max_steps: int = 10_000) -> dict[str, int]:
    """The step count that spends the budget, per solver (see the module docstring).

    ``steps = floor(budget / cost_per_step)``, at least 1 and at most ``max_steps``.
    """
    if (budget_nfe is None) == (budget_seconds is None):
        raise InputError("Give exactly one budget: network evaluations (--budget-nfe) or seconds (--budget-seconds).")
    budget, unit = (budget_nfe, "nfe") if budget_nfe is not None else (budget_seconds, "seconds")
    if not (math.isfinite(budget) and budget > 0):
        raise InputError(f"The {unit} budget is {budget}; it must be a positive number.")
    costs = step_costs(solvers, unit=unit, samples=samples, measurement=measurement, base_config=base_config,
                       denoiser=denoiser)
    return {name: int(min(max_steps, max(1, math.floor(budget / cost + 1e-9)))) for name, cost in costs.items()}


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points (cost, quality) no other point beats: lower or equal cost and higher or
    equal quality, one strictly. Sorted by cost; points with a NaN coordinate are never on it."""
    ok = [i for i, (c, q) in enumerate(points) if math.isfinite(c) and math.isfinite(q)]
    front = []
    for i in ok:
        ci, qi = points[i]
        dominated = any(points[j][0] <= ci and points[j][1] >= qi and (points[j][0] < ci or points[j][1] > qi)
                        for j in ok if j != i)
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: (points[i][0], -points[i][1]))


# ------------------------------------------------------------------------------ running
@dataclass
class RunStarted:
    index: int
    run: RunSpec


@dataclass
class RunEvent:
    """An engine event (Planned, Progress, Preview, Statistics, Log) of run ``index``."""

    index: int
    event: Any


@dataclass
class RunEnded:
    index: int
    status: str
    result: Result | None
    message: str = ""


@dataclass
class ComparisonFinished:
    comparison: Comparison


class QueueControl:
    """Cancel one run (before or while it runs) or stop the whole queue, from any thread."""

    def __init__(self, n_runs: int):
        self.stop_all = threading.Event()
        self._cancel = [threading.Event() for _ in range(n_runs)]

    def cancel(self, index: int) -> None:
        self._cancel[index].set()

    def cancelled(self, index: int) -> bool:
        return self._cancel[index].is_set() or self.stop_all.is_set()

    def stop(self) -> None:
        self.stop_all.set()
        for event in self._cancel:
            event.set()

    def run_event(self, index: int) -> threading.Event:
        return self._cancel[index]


def run_comparison(measurement: Measurement, runs: Sequence[RunSpec], base_config: RunConfig,
                   stop: threading.Event | None = None, *, control: QueueControl | None = None,
                   denoiser=None) -> Iterator[Any]:
    """Run the queue in turn, yielding RunStarted, RunEvent, RunEnded per run, then ComparisonFinished.

    ``stop`` (or ``control.stop()``) ends the current run at its next step, keeping its finished
    samples, and skips the rest; ``control.cancel(i)`` does that to run ``i`` alone. A run whose
    settings are impossible is marked failed, one in which a sample diverged is marked diverged,
    and the queue goes on.
    """
    control = control or QueueControl(len(runs))
    comparison = Comparison.empty(measurement, runs)
    for i, spec in enumerate(runs):
        if (stop is not None and stop.is_set()) or control.cancelled(i):
            comparison.status[i] = "cancelled"
            yield RunEnded(i, "cancelled", None)
            continue
        yield RunStarted(i, spec)
        run_stop = control.run_event(i)
        relay = _Relay(run_stop, stop, control.stop_all)
        result, status, message = None, "cancelled", ""
        try:
            for event in run(measurement, spec.config(base_config), stop=relay, denoiser=denoiser):
                if isinstance(event, Finished):
                    result = event.result
                    status = "diverged" if divergence_of(result) else "done" if result.complete else "stopped"
                else:
                    yield RunEvent(i, event)
        except DiffreconError as err:
            status, message = "failed", str(err)
        if result is not None and result.measurement is None:
            result.measurement = measurement
        comparison.results[i], comparison.status[i], comparison.messages[i] = result, status, message
        yield RunEnded(i, status, result, message)
    yield ComparisonFinished(comparison)


class _Relay:
    """One ``is_set`` over the run's own cancel, the caller's stop and the queue's stop."""

    def __init__(self, *events):
        self.events = [e for e in events if e is not None]

    def is_set(self) -> bool:
        return any(e.is_set() for e in self.events)
