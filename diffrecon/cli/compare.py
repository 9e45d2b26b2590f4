"""``diffrecon compare``: several solvers on one measurement, the table, the figure and the file."""
from __future__ import annotations

import argparse
import contextlib
import sys
import threading
from pathlib import Path

from .options import add_run_options, check_out_folder, int_list, run_config
from .progress import EXIT_INTERRUPTED, RunBar, ctrl_c_stops, say


def add_compare_parser(subparsers) -> argparse.ArgumentParser:
    """The ``compare`` subcommand on ``subparsers`` (its ``func`` is :func:`run_compare`)."""
    c = subparsers.add_parser("compare", help="run several solvers on one measurement and compare them")
    c.add_argument("file", type=Path, help="measurement (or result) file")
    c.add_argument("--solvers", default="dps,ddnm,diffpir", help="comma-separated solver names")
    c.add_argument("--steps", type=int_list, default=[50], help="step budgets, comma-separated (e.g. 25,50)")
    budget = c.add_mutually_exclusive_group()
    budget.add_argument("--budget-nfe", type=float, default=None,
                        help="equal budget of network evaluations per run (all samples); overrides --steps")
    budget.add_argument("--budget-seconds", type=float, default=None,
                        help="equal predicted wall time per run in seconds; overrides --steps")
    add_run_options(c, ("samples",), samples=dict(help="samples per run"))
    c.add_argument("--seeds", type=int_list, default=[0], help="seeds, comma-separated")
    add_run_options(c, ("prior", "device", "precision"))
    c.add_argument("--out", required=True, type=Path, help="comparison file to write (.h5)")
    c.add_argument("--figure", type=Path, default=None, help="grid figure to write (.png)")
    c.add_argument("--table", type=Path, default=None, help="metrics table to write (.csv)")
    c.set_defaults(func=run_compare)
    return c


def _spec(args):
    from ..compare import CompareSpec

    return CompareSpec(tuple(s.strip() for s in args.solvers.split(",") if s.strip()), tuple(args.steps),
                       tuple(args.seeds), args.samples, budget_nfe=args.budget_nfe,
                       budget_seconds=args.budget_seconds)


def run_compare(args) -> int:
    """``diffrecon compare``: 0 when every run finished, 1 when a run failed, 130 when stopped by Ctrl-C
    (the runs finished so far are still written)."""
    from .. import compare
    from ..engine import Log, Preparing
    from ..io import read_measurement

    for flag, out in (("--out", args.out), ("--figure", args.figure), ("--table", args.table)):
        if out is not None:  # refused before any run: a folder, an unwritable place, the input itself
            check_out_folder(out, args.file, flag=flag)
    measurement = read_measurement(args.file)
    base = run_config(args)
    spec = _spec(args)
    spec.runs()  # refuse unknown solvers and bad counts before timing anything
    budget_steps = None
    if args.budget_nfe is not None or args.budget_seconds is not None:
        budget_steps = compare.equal_budget(spec.solvers, args.budget_nfe, args.budget_seconds,
                                            samples=args.samples, measurement=measurement, base_config=base)
        say("Equal budget: " + ", ".join(f"{k} {v} steps" for k, v in budget_steps.items()), sys.stdout)
    runs = spec.runs(budget_steps)
    stop = threading.Event()
    comparison, failed = None, False

    # The first Ctrl-C also skips the runs not yet started, so the files are still written.
    with ctrl_c_stops(stop), contextlib.ExitStack() as stack:
        bar = RunBar(stack, "compare", total=sum(r.steps * r.samples for r in runs))
        bar.open()
        for ev in compare.run_comparison(measurement, runs, base, stop):
            if isinstance(ev, compare.RunStarted):
                bar.start_run(ev.run.samples, ev.run.steps, f"{ev.index + 1}/{len(runs)} {ev.run.solver}")
            elif isinstance(ev, compare.RunEvent) and bar.event(ev.event):
                pass
            elif isinstance(ev, compare.RunEvent) and isinstance(ev.event, Preparing):
                bar.postfix(f"{ev.event.what}: {ev.event.done}/{ev.event.total}")
            elif isinstance(ev, compare.RunEvent) and isinstance(ev.event, Log) and ev.event.level != "info":
                say(f"run {ev.index + 1} ({runs[ev.index].label}) {ev.event.level}: {ev.event.message}", sys.stdout)
            elif isinstance(ev, compare.RunEnded):
                bar.end_run(runs[ev.index].steps * runs[ev.index].samples)
                failed = failed or ev.status == "failed"
                if ev.message:  # the window logs the same sentence as a warning
                    say(f"run {ev.index + 1} ({runs[ev.index].label}) {ev.status}: {ev.message}", sys.stdout)
            elif isinstance(ev, compare.ComparisonFinished):
                comparison = ev.comparison
    _report(args, measurement, runs, comparison)
    if stop.is_set():
        return EXIT_INTERRUPTED
    return 1 if failed else 0


def _report(args, measurement, runs, comparison) -> None:
    """Print the table and the outlier warnings; write the comparison, the figure and the table."""
    from ..grid_levels import outlier_warning, shared_levels
    from ..io.comparison_file import metrics_rows, write_comparison, write_table
    from ..io.figures import first_channel, grid_rows, write_figure

    for row in metrics_rows(comparison):
        memory = row["peak_memory_bytes"] / 2**20
        print(f"{row['run']:<36} {row['status']:<9} PSNR {row['psnr']:.2f}  SSIM {row['ssim']:.3f}  "
              f"NFE {row['nfe']:.0f}  {row['seconds']:.2f} s  {memory:.0f} MiB peak")
    shown, rows = grid_rows(comparison)
    if shown:
        truth = None if measurement.ground_truth is None else first_channel(measurement.ground_truth)
        for index, outlier in zip(shown, shared_levels(rows, truth)[1]):
            if outlier:
                print(f"warning: {outlier_warning(runs[index].label)}")
    write_comparison(args.out, comparison)
    print(f"Wrote {args.out}.")
    if comparison.finished() and args.figure is not None:
        write_figure(args.figure, comparison)
        print(f"Wrote {args.figure}.")
    if args.table is not None:
        write_table(args.table, comparison)
        print(f"Wrote {args.table}.")
