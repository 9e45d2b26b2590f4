"""Solvers side by side: a queue of runs (solvers x step budgets x seeds), equal budgets, the
metrics table, the cost-quality Pareto front, and the files (grid PNG, table CSV, all runs HDF5).

Qt-free; the window (:mod:`diffrecon.gui.compare_window`) and ``diffrecon compare`` iterate the
same :func:`run_comparison` generator, which iterates :func:`diffrecon.engine.run` once per run.

Budgets. ``budget_nfe`` counts network evaluations of the whole run, all samples together (the
engine's ``metrics["nfe"]``): a solver with ``nfe_per_step`` evaluations per step and sample gets
``steps = floor(budget_nfe / (nfe_per_step * samples))``, so it spends at most the budget and less
than one step short of it. Classical baselines (no network) iterate to their own tolerance
whatever the budget (the steps only pace their progress reports), so they are compared converged.
``budget_seconds`` is wall time of the whole run, predicted by :func:`diffrecon.engine.plan`
(the median of a few probed steps times the steps and batches).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from .engine import Finished, RunConfig, plan, run
from .guard import divergence_of
from .errors import DiffreconError, InputError
from .grid_levels import outlier_warning, row_levels, shared_levels  # noqa: F401 - row_levels is public here
from .io.atomic import atomic_write
from .limits import check_seed
from .measurement import Measurement, Result

FORMAT = "comparison"
FORMAT_VERSION = 1
#: The columns of the metrics table after the run description, in order (Result.metrics keys).
METRIC_KEYS = ("psnr", "ssim", "residual_ratio", "coverage90", "std_error_corr", "nfe", "nfe_per_sample",
               "grad_evals", "seconds", "peak_memory_bytes")
RUN_KEYS = ("run", "solver", "steps", "samples", "seed", "status", "std_is_posterior")


# ------------------------------------------------------------------------------ specifications
@dataclass(frozen=True)
class RunSpec:
    """One run of the queue; ``params`` overrides the solver's defaults (as RunConfig.params)."""

    solver: str
    steps: int
    samples: int = 4
    seed: int = 0
    params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.solver} · {self.steps} steps · seed {self.seed}"

    def config(self, base: RunConfig) -> RunConfig:
        """``base`` (prior, device, precision, schedule ...) with this run's choices."""
        return dataclasses.replace(base, solver=self.solver, steps=int(self.steps), samples=int(self.samples),
                                   seed=int(self.seed), params=dict(self.params))

    def to_json(self) -> dict:
        return {"solver": self.solver, "steps": int(self.steps), "samples": int(self.samples),
                "seed": int(self.seed), "params": dict(self.params)}


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
class Comparison:
    """The queue and what became of each run: ``status`` is done, stopped (partial samples),
    diverged (a sample failed the divergence guard), cancelled, failed (``messages`` says why) or
    pending."""

    measurement: Measurement
    runs: list[RunSpec]
    results: list[Result | None]
    status: list[str]
    messages: list[str]

    @classmethod
    def empty(cls, measurement: Measurement, runs: Sequence[RunSpec]) -> "Comparison":
        n = len(runs)
        return cls(measurement, list(runs), [None] * n, ["pending"] * n, [""] * n)

    def finished(self) -> list[int]:
        """Indices of the runs that have a result."""
        return [i for i, r in enumerate(self.results) if r is not None]


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


# ------------------------------------------------------------------------------ table
def metrics_rows(comparison: Comparison) -> list[dict[str, Any]]:
    """One row per run: RUN_KEYS then METRIC_KEYS (NaN where a metric does not apply)."""
    rows = []
    for i, spec in enumerate(comparison.runs):
        r = comparison.results[i]
        row: dict[str, Any] = {"run": spec.label, "solver": spec.solver, "steps": spec.steps,
                               "samples": spec.samples, "seed": spec.seed, "status": comparison.status[i],
                               "std_is_posterior": "" if r is None else bool(r.std_is_posterior)}
        for key in METRIC_KEYS:
            row[key] = float(r.metrics.get(key, math.nan)) if r is not None else math.nan
        rows.append(row)
    return rows


def write_table(path: str | os.PathLike, comparison: Comparison) -> Path:
    """The metrics table as CSV (a header of RUN_KEYS + METRIC_KEYS; empty cells where NaN)."""
    import csv

    rows = metrics_rows(comparison)
    columns = list(RUN_KEYS) + list(METRIC_KEYS)

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=columns)
            w.writeheader()
            for row in rows:
                w.writerow({k: ("" if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()})

    return atomic_write(path, write, action="export to")


# ------------------------------------------------------------------------------ figure
def _image(a: np.ndarray) -> np.ndarray:
    """The first channel of a (C, H, W) map (complex as magnitude), float32."""
    a = np.asarray(a)
    a = a[0] if a.ndim == 3 else a
    return np.abs(a).astype(np.float32) if np.iscomplexobj(a) else a.astype(np.float32)


def grid_rows(comparison: Comparison) -> tuple[list[int], dict[str, list[np.ndarray]]]:
    """The runs with a result and, per row (mean, std, error when ground truth), one map per run."""
    shown = comparison.finished()
    rows: dict[str, list[np.ndarray]] = {"mean": [], "std": []}
    truth = comparison.measurement.ground_truth
    if truth is not None:
        rows["error"] = []
    for i in shown:
        r = comparison.results[i]
        rows["mean"].append(_image(r.mean))
        rows["std"].append(_image(r.std))
        if truth is not None:
            rows["error"].append(_image(r.mean) - _image(truth))
    return shown, rows


ROW_TITLES = {"mean": "mean", "std": "std", "error": "error (mean − truth)"}
ROW_CMAPS = {"mean": "gray", "std": "inferno", "error": "RdBu_r"}


def std_title(result: Result) -> str:
    """What the std is: posterior std, seed spread, prior samples, ... (diffrecon.solvers.labels)."""
    from .solvers.labels import TEXT

    return TEXT.get(result.spread, TEXT["unknown"])


def write_figure(path: str | os.PathLike, comparison: Comparison) -> Path:
    """The grid as one PNG: a column per finished run, rows mean / std / error, shared colour
    levels per row and one colour bar per row in the measurement's units."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    shown, rows = grid_rows(comparison)
    if not shown:
        raise InputError("No run of this comparison has finished; there is nothing to draw.")
    m = comparison.measurement
    truth = None if m.ground_truth is None else _image(m.ground_truth)
    units = m.units or "a.u."
    ncols, nrows = len(shown), len(rows)
    fig = Figure(figsize=(2.4 * ncols + 1.4, 2.4 * nrows + 0.6), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    levels, outliers = shared_levels(rows, truth)
    for r, (row, maps) in enumerate(rows.items()):
        lo, hi = levels[row]
        image = None
        for c, (i, a) in enumerate(zip(shown, maps)):
            ax = axes[r, c]
            image = ax.imshow(a, cmap=ROW_CMAPS[row], vmin=lo, vmax=hi, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            result = comparison.results[i]
            if r == 0:
                spec = comparison.runs[i]
                state = "" if comparison.status[i] == "done" else f" ({comparison.status[i]})"
                state += " (outside shared levels)" if outliers[c] else ""
                ax.set_title(f"{spec.solver}{state}\n{spec.steps} steps, seed {spec.seed}", fontsize=9)
            if row == "std":
                ax.set_xlabel(std_title(result), fontsize=8)
            if c == 0:
                ax.set_ylabel(ROW_TITLES[row], fontsize=9)
        bar = fig.colorbar(image, ax=axes[r, :].tolist(), shrink=0.9, pad=0.02)
        bar.set_label(f"{ROW_TITLES[row]} [{units}]", fontsize=8)
    fig.suptitle(m.title or "comparison", fontsize=10)
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"), action="export to")


# ------------------------------------------------------------------------------ HDF5
def write_comparison(path: str | os.PathLike, comparison: Comparison) -> Path:
    """All runs in one HDF5 file, atomically. Root: ``diffrecon_format="comparison"``, the runs,
    their status and messages (JSON attributes) and the measurement (/measurement, /operator);
    ``/runs/NNN`` holds run NNN in the result-file layout (written by
    :func:`diffrecon.io.result_file.write_result_into`), absent for runs without a result."""
    from .io.h5 import atomic_h5
    from .io.measurement_file import write_measurement_into
    from .io.result_file import write_result_into

    path = Path(path)
    with atomic_h5(path) as f:
        write_measurement_into(f, comparison.measurement)
        f.attrs["diffrecon_format"] = FORMAT
        f.attrs["comparison_version"] = FORMAT_VERSION
        f.attrs["runs"] = json.dumps([s.to_json() for s in comparison.runs])
        f.attrs["status"] = json.dumps(comparison.status)
        f.attrs["messages"] = json.dumps(comparison.messages)
        group = f.create_group("runs", track_order=True)
        for i in comparison.finished():
            write_result_into(group.create_group(f"{i:03d}"), comparison.results[i])
    return path


def read_comparison(path: str | os.PathLike) -> Comparison:
    """A comparison written by :func:`write_comparison`, every run validated by
    :func:`diffrecon.io.result_file.read_result_from`."""
    from .io.h5 import attr_json, attr_str, open_readonly, require_group
    from .io.measurement_file import read_measurement_from
    from .io.result_file import read_result_from

    path = Path(path)
    with open_readonly(path) as f:
        kind = attr_str(f.attrs, "diffrecon_format")
        if kind != FORMAT:
            raise InputError(f"File {path} has diffrecon_format={kind!r}; expected 'comparison' "
                             "(written by diffrecon compare or the comparison window).")
        raw = attr_json(f.attrs, "runs", path, "/", default=None)
        if not isinstance(raw, list):
            raise InputError(f"File {path}: root attribute runs is missing or not a JSON list of runs.")
        try:
            runs = [RunSpec(str(d["solver"]), int(d["steps"]), int(d["samples"]), int(d["seed"]),
                            dict(d.get("params", {}))) for d in raw]
        except (KeyError, TypeError, ValueError):
            raise InputError(f"File {path}: root attribute runs does not describe runs "
                             "(each needs solver, steps, samples, seed).") from None
        status = list(attr_json(f.attrs, "status", path, "/", default=["done"] * len(runs)))
        messages = list(attr_json(f.attrs, "messages", path, "/", default=[""] * len(runs)))
        if len(status) != len(runs) or len(messages) != len(runs):
            raise InputError(f"File {path}: root attributes status and messages need one entry per run ({len(runs)}).")
        measurement = read_measurement_from(f, path)
        comparison = Comparison(measurement, runs, [None] * len(runs), [str(s) for s in status],
                                [str(m) for m in messages])
        group = require_group(f, "runs", path)
        for name in group:
            if not (name.isdigit() and int(name) < len(runs)):
                raise InputError(f"File {path}: group /runs/{name} is not a run number below {len(runs)}.")
            result = read_result_from(require_group(group, name, path), path)
            result.measurement = result.measurement or measurement
            comparison.results[int(name)] = result
    return comparison


# ------------------------------------------------------------------------------ command line
def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers") from None
    if not values:
        raise argparse.ArgumentTypeError("the list is empty")
    return values


def add_compare_parser(subparsers) -> argparse.ArgumentParser:
    """The ``compare`` subcommand on ``subparsers`` (its ``func`` is :func:`run_compare`)."""
    c = subparsers.add_parser("compare", help="run several solvers on one measurement and compare them")
    c.add_argument("file", type=Path, help="measurement (or result) file")
    c.add_argument("--solvers", default="dps,ddnm,diffpir", help="comma-separated solver names")
    c.add_argument("--steps", type=_int_list, default=[50], help="step budgets, comma-separated (e.g. 25,50)")
    budget = c.add_mutually_exclusive_group()
    budget.add_argument("--budget-nfe", type=float, default=None,
                        help="equal budget of network evaluations per run (all samples); overrides --steps")
    budget.add_argument("--budget-seconds", type=float, default=None,
                        help="equal predicted wall time per run in seconds; overrides --steps")
    c.add_argument("--samples", type=int, default=4, help="samples per run")
    c.add_argument("--seeds", type=_int_list, default=[0], help="seeds, comma-separated")
    c.add_argument("--prior", default="default", help="default, gaussian, or a prior folder")
    c.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    c.add_argument("--precision", choices=("bf16", "fp32"), default="bf16")
    c.add_argument("--out", required=True, type=Path, help="comparison file to write (.h5)")
    c.add_argument("--figure", type=Path, default=None, help="grid figure to write (.png)")
    c.add_argument("--table", type=Path, default=None, help="metrics table to write (.csv)")
    c.set_defaults(func=run_compare)
    return c


def run_compare(args) -> int:
    """``diffrecon compare``: 0 when every run finished, 1 when a run failed, 130 when stopped by Ctrl-C
    (the runs finished so far are still written)."""
    from tqdm import tqdm

    from .engine import Log, Preparing, Progress
    from .interrupts import ctrl_c_stops
    from .io import read_measurement
    from .io.atomic import check_output

    for flag, out in (("--out", args.out), ("--figure", args.figure), ("--table", args.table)):
        if out is not None:  # refused before any run: a folder, an unwritable place, the input itself
            check_output(out, inputs=[args.file], flag=flag)
    measurement = read_measurement(args.file)
    base = RunConfig(prior=args.prior, device=args.device, precision=args.precision)
    spec = CompareSpec(tuple(s.strip() for s in args.solvers.split(",") if s.strip()), tuple(args.steps),
                       tuple(args.seeds), args.samples, budget_nfe=args.budget_nfe, budget_seconds=args.budget_seconds)
    spec.runs()  # refuse unknown solvers and bad counts before timing anything
    budget_steps = None
    if args.budget_nfe is not None or args.budget_seconds is not None:
        budget_steps = equal_budget(spec.solvers, args.budget_nfe, args.budget_seconds, samples=args.samples,
                                    measurement=measurement, base_config=base)
        tqdm.write("Equal budget: " + ", ".join(f"{k} {v} steps" for k, v in budget_steps.items()))
    runs = spec.runs(budget_steps)
    stop = threading.Event()
    total = sum(r.steps * r.samples for r in runs)
    done_before, comparison, failed = 0, None, False

    # The first Ctrl-C also skips the runs not yet started, so the files are still written.
    with ctrl_c_stops(stop), tqdm(total=total, unit="step", desc="compare", dynamic_ncols=True) as bar:
        for ev in run_comparison(measurement, runs, base, stop):
            if isinstance(ev, RunStarted):
                bar.set_description(f"{ev.index + 1}/{len(runs)} {ev.run.solver}")
            elif isinstance(ev, RunEvent) and isinstance(ev.event, Progress):
                p, samples = ev.event, runs[ev.index].samples
                batch = max(1, min(samples - p.samples_done, samples))
                bar.n = min(total, done_before + p.samples_done * p.steps + p.step * batch)
                bar.refresh()
            elif isinstance(ev, RunEvent) and isinstance(ev.event, Preparing):
                bar.set_postfix_str(f"{ev.event.what}: {ev.event.done}/{ev.event.total}")
            elif isinstance(ev, RunEvent) and isinstance(ev.event, Log) and ev.event.level != "info":
                tqdm.write(f"run {ev.index + 1} ({runs[ev.index].label}) {ev.event.level}: {ev.event.message}")
            elif isinstance(ev, RunEnded):
                done_before += runs[ev.index].steps * runs[ev.index].samples
                bar.n = min(total, done_before)
                bar.refresh()
                failed = failed or ev.status == "failed"
                if ev.message:  # the window logs the same sentence as a warning
                    tqdm.write(f"run {ev.index + 1} ({runs[ev.index].label}) {ev.status}: {ev.message}")
            elif isinstance(ev, ComparisonFinished):
                comparison = ev.comparison
    for row in metrics_rows(comparison):
        memory = row["peak_memory_bytes"] / 2**20
        print(f"{row['run']:<36} {row['status']:<9} PSNR {row['psnr']:.2f}  SSIM {row['ssim']:.3f}  "
              f"NFE {row['nfe']:.0f}  {row['seconds']:.2f} s  {memory:.0f} MiB peak")
    shown, rows = grid_rows(comparison)
    if shown:
        truth = None if measurement.ground_truth is None else _image(measurement.ground_truth)
        for index, outlier in zip(shown, shared_levels(rows, truth)[1]):
            if outlier:
                print(f"warning: {outlier_warning(runs[index].label)}")
    write_comparison(args.out, comparison)
    print(f"Wrote {args.out}.")
    if comparison.finished():
        if args.figure is not None:
            write_figure(args.figure, comparison)
            print(f"Wrote {args.figure}.")
    if args.table is not None:
        write_table(args.table, comparison)
        print(f"Wrote {args.table}.")
    if stop.is_set():
        return 130
    return 1 if failed else 0
