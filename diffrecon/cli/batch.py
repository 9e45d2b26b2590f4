"""``diffrecon batch``: one recipe over many inputs (see docs/batch.md).

    diffrecon batch INPUTS --out FOLDER [--recipe RESULT.h5] [--solver NAME] [--steps N] ...
                   [--executor sequential|ray] [--address ADDR] [--workers N]
                   [--num-parts N --part-id K] [--overwrite]

INPUTS is a folder, a quoted glob pattern or a CSV manifest. Exit code 0 when every input has a
finished result, 1 when one failed, 130 when stopped (Ctrl-C, SIGTERM); the summary table is
written in every case.
"""
from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path

from ..errors import InputError, printable
from .options import add_run_options, non_negative, positive
from .progress import EXIT_INTERRUPTED, ctrl_c_stops

EXIT_FAILED = 1
_RUN_OPTIONS = ("solver", "steps", "samples", "seed", "prior", "schedule")


def add_batch_parser(subparsers) -> argparse.ArgumentParser:
    """The ``batch`` subcommand on ``subparsers`` (its ``func`` is :func:`run_batch`)."""
    b = subparsers.add_parser("batch", help="reconstruct many files with one recipe (resumable; Ray, job arrays)",
                              description="Apply one recipe to every input and write one result per input plus a "
                                          "summary table (batch_summary.csv and .h5). Finished outputs are skipped, "
                                          "so running the same command again resumes a stopped batch.")
    b.add_argument("inputs", help="a folder of measurement files, a quoted glob ('data/*.h5') or a CSV manifest")
    b.add_argument("--out", required=True, type=Path, help="folder for the results and the summary")
    b.add_argument("--recipe", type=Path, default=None,
                   help="a result file whose recipe (provenance) to apply; the run options below override it")
    # The recipe's options default to None: only those given override --recipe (or the engine's defaults).
    add_run_options(b, ("solver", "steps", "samples", "seed", "prior", "schedule", "param", "device", "precision",
                        "batch_size"),
                    solver=dict(default=None, help="solver name (default diffpir)"), steps=dict(default=None),
                    samples=dict(default=None), seed=dict(default=None), prior=dict(default=None),
                    schedule=dict(default=None), device=dict(help="auto, cpu, cuda, cuda:N or mps (in each worker)"))
    b.add_argument("--executor", choices=("sequential", "ray"), default="sequential",
                   help="sequential (this process) or ray (one task per input, one GPU each where there are GPUs)")
    b.add_argument("--address", default=None, help="Ray cluster to join (auto or host:port); default a local runtime")
    b.add_argument("--workers", type=positive, default=None, help="CPUs of the local Ray runtime (default: all)")
    b.add_argument("--num-parts", type=positive, default=1, help="split the manifest into this many parts (job arrays)")
    b.add_argument("--part-id", type=non_negative, default=0, help="the part to run, 0 .. num-parts - 1")
    b.add_argument("--overwrite", action="store_true", help="reconstruct every input again, replacing its result")
    b.set_defaults(func=run_batch)
    return b


def run_batch(args) -> int:
    """``diffrecon batch``: see the module's docstring for the exit codes."""
    from ..batch.manifest import read_manifest, split
    from ..batch.recipe import recipe_from_result, recipe_hash, with_overrides
    from ..batch.runner import run_manifest, summary_paths
    from ..engine import RunConfig

    if args.out.exists() and not args.out.is_dir():
        raise InputError(f"--out {args.out} is a file; give a folder for the results.")
    base = recipe_from_result(args.recipe) if args.recipe is not None else RunConfig()
    chosen = {k: getattr(args, k) for k in _RUN_OPTIONS if getattr(args, k) is not None}
    chosen.update(_param_overrides(args.param))
    config = with_overrides(base, chosen, "The run options")
    config = _runtime(config, args)
    items = split(read_manifest(args.inputs, args.out), args.num_parts, args.part_id)
    if args.executor != "ray" and (args.address or args.workers):
        raise InputError("--address and --workers are options of --executor ray.")
    part = f" (part {args.part_id} of 0 .. {args.num_parts - 1})" if args.num_parts > 1 else ""
    print(f"{len(items)} input(s){part}, recipe {recipe_hash(config)}: {config.solver}, {config.steps} steps, "
          f"{config.samples} samples, seed {config.seed}, prior {config.prior}; executor {args.executor}.",
          file=sys.stderr)
    stop = threading.Event()
    with ctrl_c_stops(stop, file=sys.stderr):
        summary = run_manifest(items, config, args.out, executor=args.executor, address=args.address,
                               workers=args.workers, overwrite=args.overwrite, stop=stop, progress=_print_progress,
                               summary=summary_paths(args.out, args.num_parts, args.part_id))
    counts = ", ".join(f"{n} {status}" for status, n in sorted(summary.counts.items()))
    print(f"Wrote {summary.csv} and {summary.h5}: {counts or 'no inputs'} in {summary.seconds:.1f} s.")
    if stop.is_set():
        return EXIT_INTERRUPTED
    return 0 if summary.ok else EXIT_FAILED


def _runtime(config, args):
    import dataclasses

    return dataclasses.replace(config, device=args.device, precision=args.precision,
                               batch_size=args.batch_size)


def _param_overrides(items) -> dict[str, str]:
    """``--param KEY=VALUE`` options as recipe overrides (``param.KEY``), typed later by the solver."""
    bad = [item for item in items if not item.partition("=")[0].strip() or "=" not in item]
    if bad:
        raise InputError(f"--param {bad[0]!r} is not KEY=VALUE; write for example --param lam=7.")
    return {f"param.{key.strip()}": value.strip() for key, _, value in (item.partition("=") for item in items)}


def _print_progress(p) -> None:
    if p.record is None:
        if p.skipped:
            print(f"{p.skipped} of {p.total} input(s) finished before; skipped.", file=sys.stderr)
        return
    r = p.record
    detail = f"{r.error}" if r.error else ", ".join(f"{k} {r.metrics[k]:.4g}" for k in ("psnr", "residual_ratio")
                                                    if k in r.metrics)
    eta = f"; about {p.eta:.0f} s left" if p.eta is not None and p.done < p.total else ""
    print(printable(f"[{p.done}/{p.total}] {r.name}: {r.status} in {r.seconds:.1f} s"
                    f"{' (' + detail + ')' if detail else ''}{eta}"), file=sys.stderr, flush=True)
