"""``diffrecon validate``: the validity report against closed-form posteriors (CPU, minutes)."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..errors import InputError
from .options import add_run_options


def add_validate_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``validate`` to the CLI's subparsers; ``func`` is :func:`run_validate`."""
    p = subparsers.add_parser("validate", help="check the solvers against exact posteriors (CPU, minutes)")
    p.add_argument("--solvers", default="", help="comma-separated solver names (default: every diffusion solver)")
    p.add_argument("--out", default="validity_report.md", help="Markdown report; the chart goes beside it as .png")
    p.add_argument("--size", type=int, default=8, choices=(8, 16), help="image side in pixels")
    add_run_options(p, ("samples",), samples=dict(default=32, help="samples per run (at least 4)"))
    p.add_argument("--steps", default="50,200", help="comma-separated step budgets of the fast solvers")
    p.add_argument("--measurements", type=int, default=4, help="measurements pooled per row (at least 1)")
    p.add_argument("--reference-steps", type=int, default=2000, help="step budget of the reference sampler")
    p.add_argument("--short", default="daps",
                   help="comma-separated solvers run at the first budget only (slow on a CPU); empty for none")
    p.add_argument("--jobs", type=int, default=1,
                   help="rows computed at once in separate processes, one thread each (default 1)")
    p.add_argument("--kinds", action="store_true",
                   help="also check the reference sampler on every operator kind (minutes more)")
    p.set_defaults(func=run_validate)
    return p


def _check(args):
    """The solvers and the report's Settings from ``args``, each bad value refused naming its flag."""
    from ..solvers import SOLVERS
    from ..validate import Settings, default_solvers

    names = [s.strip() for s in args.solvers.split(",") if s.strip()] or default_solvers()
    for name in names:
        if name not in SOLVERS or not SOLVERS[name].uses_prior:
            valid = ", ".join(default_solvers())
            raise InputError(f"--solvers names {name!r}, which is not a diffusion solver; valid names are {valid}.")
    if args.samples < 4:
        raise InputError(f"--samples is {args.samples}; the statistics need at least 4 samples.")
    try:
        steps = tuple(int(s) for s in str(args.steps).split(",") if s.strip())
    except ValueError:
        steps = ()
    if not steps or min(steps) < 1 or args.measurements < 1 or args.reference_steps < 1:
        raise InputError(f"--steps ({args.steps!r}: whole numbers, comma-separated), --measurements "
                         f"({args.measurements}) and --reference-steps ({args.reference_steps}) must all be at least 1.")
    short = tuple(s.strip() for s in str(args.short).split(",") if s.strip())
    if not 1 <= args.jobs <= 256:
        raise InputError(f"--jobs is {args.jobs}; give a number of processes from 1 to 256.")
    return names, Settings(size=args.size, samples=args.samples, steps=steps, measurements=args.measurements,
                           reference_steps=args.reference_steps, short=short, jobs=args.jobs)


def _command(args, settings) -> str:
    """The command that reproduces the report, written at its top."""
    return (f"diffrecon validate --size {settings.size} --samples {settings.samples} "
            f"--steps {','.join(map(str, settings.steps))} --measurements {settings.measurements} "
            f"--reference-steps {settings.reference_steps} --short '{','.join(settings.short)}'"
            + (" --kinds" if args.kinds else "")
            + (f" --solvers {args.solvers}" if args.solvers else ""))


def run_validate(args) -> int:
    """Run the report as ``args`` say; print the tables, write the Markdown and the PNG."""
    from ..io.atomic import atomic_write
    from ..validate import REFERENCE, reference_on_every_kind, render_markdown, render_png, validate, validate_x_step

    names, settings = _check(args)
    out = Path(args.out)
    if out.parent and not out.parent.exists():
        raise InputError(f"--out {out}: the folder {out.parent} does not exist.")
    t0 = time.perf_counter()

    def progress(row) -> None:
        print(f"  {row.problem:18s} {row.solver:10s} {row.steps:5d} {row.seconds:6.1f} s  {row.verdict}",
              file=sys.stderr, flush=True)

    rows = validate(names, settings, progress=progress)
    kinds = reference_on_every_kind(settings, progress=progress) if args.kinds else None
    xstep = validate_x_step(settings.size) if REFERENCE in names else None
    text = render_markdown(rows, settings, _command(args, settings), kinds, xstep)
    png = out.with_suffix(".png")
    footer = f"\n![validity chart]({png.name})\n\nTotal {time.perf_counter() - t0:.0f} s.\n"
    atomic_write(out, lambda tmp: tmp.write_text(text + footer))
    atomic_write(png, lambda tmp: render_png(rows, tmp))
    print(text)
    print(f"wrote {out} and {png}")
    return 0
