"""``diffrecon reconstruct`` and ``diffrecon solvers``."""
from __future__ import annotations

import contextlib
import dataclasses
import sys
import threading
from pathlib import Path

from ..errors import InputError
from .options import (ALL, EXIT_DIVERGED, PRESET_DEFAULTS, add_run_options, check_out_folder, run_config,
                      with_posterior_mode)
from .progress import EXIT_INTERRUPTED, RunBar, ctrl_c_stops, memory_text, say, status, write_final


def add_reconstruct_parser(sub) -> None:
    r = sub.add_parser("reconstruct", help="reconstruct a measurement file and write a result file")
    r.add_argument("file", type=Path, help="measurement (or result) file")
    r.add_argument("--out", required=True, type=Path, help="result file to write (.h5)")
    add_run_options(r, ALL, **PRESET_DEFAULTS)
    r.add_argument("--posterior", action="store_true",
                   help="the solver's posterior mode (the parameters the validity report checks; --param "
                        "values still override them); refused for a solver without one")
    r.set_defaults(func=run_reconstruct)


def add_solvers_parser(sub) -> None:
    s = sub.add_parser("solvers", help="list the solvers and their parameters")
    s.set_defaults(func=run_solvers)


def _check_result_suffix(out: Path) -> None:
    """A result is an HDF5 file; an image suffix is refused before any work, not written as HDF5."""
    if out.suffix.lower() not in (".h5", ".hdf5", ".nxs"):
        raise InputError(f"--out {out}: reconstruct writes an HDF5 result file (.h5, .hdf5 or .nxs); write "
                         f"{out.with_suffix('.h5').name} and export images from it with "
                         f"'diffrecon export {out.with_suffix('.h5').name} --what mean --out {out.name}'.")


def _choose_weight(measurement, config, solver: str):
    from ..weights import choose_weight

    status(f"Choosing the {solver} data weight by the discrepancy principle ...")
    choice = choose_weight(measurement, config, progress=lambda k, n, v, r: status(
        f"  trial {k}: value {v:.4g}, residual ratio {r:.3f}"))
    status(f"Chose {choice.param} = {choice.value:.4g} (residual ratio {choice.residual_ratio:.3f}).")
    return dataclasses.replace(config, params={**config.params, choice.param: choice.value},
                               weight_choice=choice.provenance())


def run_reconstruct(args) -> int:
    from .. import engine
    from ..guard import Diverged
    from ..io import read_measurement

    check_out_folder(args.out, args.file)
    _check_result_suffix(args.out)
    measurement = read_measurement(args.file, allow_external=args.allow_external)
    config = run_config(args)  # refuses bad --param values before any work
    if args.posterior:
        config = with_posterior_mode(config, args)
    if args.weight == "auto":
        config = _choose_weight(measurement, config, config.solver)

    stop = threading.Event()
    result = None
    with ctrl_c_stops(stop, file=sys.stderr), contextlib.ExitStack() as stack:
        bar = RunBar(stack, config.solver)
        bar.start_run(config.samples, config.steps)
        fitting = None
        for event in engine.run(measurement, config, stop=stop):
            if isinstance(event, engine.Planned):  # the settings passed their checks: say what runs
                bar.planned(event)
                changed = _overrides(config)
                warm = f", warm-started from {config.warm_start.upper()}" if config.warm_start != "none" else ""
                say(f"Quality {config.preset}: {config.solver}, {config.steps} steps{warm}"
                    + (f" ({', '.join(changed)} overridden)" if changed else "") + ".")
                say(f"{event.device}: {len(bar.batches)} batch(es) of {bar.batches}, "
                    f"{event.nfe_per_sample} network evaluations per sample.")
            elif isinstance(event, engine.Progress):
                bar.progress(event, f"NFE {event.nfe}, mem {memory_text(event.memory)}")
            elif bar.event(event):
                pass
            elif isinstance(event, engine.Log):
                say(f"{event.level}: {event.message}")
            elif isinstance(event, engine.Preparing):  # a prior fitted, a budget schedule searched: before the plan
                if fitting is None or fitting.total != event.total:
                    from tqdm import tqdm

                    from ..engine.budget import WHAT
                    desc = "budget schedule" if event.what == WHAT else "fitting the prior"
                    fitting = stack.enter_context(tqdm(total=event.total, desc=desc,
                                                       file=sys.stderr, dynamic_ncols=True, leave=False))
                fitting.n = event.done
                fitting.set_postfix_str(event.what, refresh=True)
            elif isinstance(event, Diverged):
                say(f"warning: {event.message}")
            elif isinstance(event, engine.Finished):
                result = event.result
    return _report(args, measurement, result, stop)


def _overrides(config) -> list[str]:
    from ..engine.presets import overridden

    return overridden(config.recipe)


def _report(args, measurement, result, stop: threading.Event) -> int:
    """Print the metrics, write the result file, and say how the run ended (the exit code)."""
    from ..calibration import status_text
    from ..guard import divergence_of, metric_notes, summary
    from ..io import write_result
    from ..solvers.labels import spread_text

    if result is None or result.n_samples < 1:
        print("diffrecon: stopped before any sample finished; no result written.", file=sys.stderr)
        return EXIT_INTERRUPTED
    if result.measurement is None:
        result.measurement = measurement
    notes = metric_notes(result)
    for key, value in result.metrics.items():
        print(f"{key:>24}: {value:.6g}" + (f"  ({notes[key]})" if key in notes else ""))
    print(f"{'std':>24}: {spread_text(result.spread)}, {status_text(result.provenance)}")
    interrupted = write_final(args.out, lambda: write_result(args.out, result))
    diverged = divergence_of(result)
    state = ("diverged" if diverged else "complete" if result.complete else
             f"stopped early, {result.n_samples} of {result.provenance.get('samples', args.samples)} samples")
    print(f"Wrote {args.out} ({state}).")
    if summary(result):
        print(f"diffrecon: {summary(result)}", file=sys.stderr)
    if stop.is_set() or interrupted or not (result.complete or diverged):
        return EXIT_INTERRUPTED
    return EXIT_DIVERGED if diverged and not args.keep_going else 0


def run_solvers(args) -> int:
    from ..solvers import SOLVERS

    if not SOLVERS:
        print("No solvers are registered.")
        return 0
    from ..solvers.labels import switches_text

    print(f"{'NAME':<12} {'SPREAD':<16} {'NEEDS':<14} TITLE")
    for name, info in SOLVERS.items():
        defaults = info.Params()
        output = info.spread_of(defaults).text
        needs = ",".join(sorted(info.needs)) or "-"
        print(f"{name:<12} {output:<16} {needs:<14} {info.title}")
        for f in dataclasses.fields(info.Params):
            lo, hi = f.metadata.get("range", (None, None))
            choices = f.metadata.get("choices")
            valid = ("{" + ", ".join(map(str, choices)) + "}") if choices else \
                (f"[{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}]" if (lo, hi) != (None, None) else "")
            help_ = f.metadata.get("help", "")
            print(f"    {f.name}={getattr(defaults, f.name)!r:<10} {valid:<18} {help_}".rstrip())
        for switch in switches_text(info):
            print(f"    spread with {switch}")
    return 0
