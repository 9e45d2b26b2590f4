"""``diffrecon validate``: do the solvers sample the posterior? A report against closed forms.

For the exact Gaussian and Gaussian-mixture priors with linear forward models (inpainting and
sparse-view CT, small images) the posterior is known in closed form. Per solver and problem the
report gives the relative error of the posterior mean, the per-pixel ratio of sample variance to
true variance (median and 10-90 % range), the fraction of pixels whose marginal a
Kolmogorov-Smirnov test rejects at 5 %, the empirical coverage of the 90 % credible intervals
(mean +- t_{K-1} sqrt(1 + 1/K) std, :func:`diffrecon.metrics.coverage`, the engine's ``coverage90``) on held-out truths drawn from the prior over
several trials, and for deterministic samplers whether the same seed reproduces the same image.
Output: a Markdown table and a PNG bar chart. CPU only; the default run takes minutes.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

from ..errors import InputError
from ..solvers import SOLVERS
from .report import EXACT, Row, Settings, default_solvers, validate

__all__ = ["add_validate_parser", "run_validate", "validate", "render_markdown", "render_png", "Settings", "Row"]


def _fmt(v: float, digits: int = 2) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def render_markdown(rows: list[Row], settings: Settings, command: str = "") -> str:
    """The report as Markdown: settings, how to read it, one table per problem."""
    out = [
        "# diffrecon validity report", "",
        f"`{command}`" if command else "",
        f"Images {settings.size}x{settings.size}, {settings.samples} samples, {settings.steps} steps, "
        f"{settings.trials} coverage trials per solver and problem (CPU, fp32).", "",
        "- **mean err**: ||sample mean - posterior mean|| / ||posterior mean - prior mean|| (0 exact, ~1 ignores the data).",
        "- **var ratio**: per-pixel sample variance / posterior variance, median [10 %, 90 %] over pixels (1 calibrated).",
        "- **KS rej.**: fraction of pixels whose samples a one-sample Kolmogorov-Smirnov test against the exact "
        "marginal rejects at 5 % (about 0.05 for an exact sampler).",
        "- **cov90**: fraction of pixels whose held-out truth lies in mean +- t(K-1, 0.95) sqrt(1 + 1/K) std "
        "(the prediction interval of K samples), averaged over trials (0.90 calibrated).",
        "- **same seed**: deterministic samplers re-run with the same seed give the identical image; their spread is a "
        "seed spread, not a posterior std.",
        "- **exact**: draws from the closed-form posterior through the same statistics: the floor set by the sample count.", "",
    ]
    problems = list(dict.fromkeys(r.problem for r in rows))
    for problem in problems:
        out += [f"## {problem}", "",
                "| solver | output | mean err | var ratio | KS rej. | cov90 | same seed | s |",
                "|---|---|---|---|---|---|---|---|"]
        for r in (r for r in rows if r.problem == problem):
            if r.note:
                out.append(f"| {r.solver} | n/a | {r.note} | | | | | |")
                continue
            med, lo, hi = r.var_ratio
            kind = "exact draws" if r.solver == EXACT else SOLVERS[r.solver].spread_of().text
            same = "" if r.reproducible is None else ("yes" if r.reproducible else "NO")
            out.append(f"| {r.solver} | {kind} | {_fmt(r.mean_error)} | {_fmt(med)} [{_fmt(lo)}, {_fmt(hi)}] | "
                       f"{_fmt(r.ks_reject)} | {_fmt(r.mean_coverage)} | {same} | {r.seconds:.1f} |")
        out.append("")
    return "\n".join(out)


def render_png(rows: list[Row], path: Path) -> None:
    """Bar charts: mean error and variance ratio (with its 10-90 % range) per solver and problem."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    problems = list(dict.fromkeys(r.problem for r in rows))
    solvers = list(dict.fromkeys(r.solver for r in rows))
    width = 0.8 / max(len(problems), 1)
    fig, axes = plt.subplots(2, 1, figsize=(max(8, 0.7 * len(solvers) + 2), 7), sharex=True)
    for j, problem in enumerate(problems):
        by = {r.solver: r for r in rows if r.problem == problem and not r.note}
        xs = np.arange(len(solvers)) + (j - (len(problems) - 1) / 2) * width
        err = [by[s].mean_error if s in by else np.nan for s in solvers]
        med = np.array([by[s].var_ratio[0] if s in by else np.nan for s in solvers])
        lo = np.array([by[s].var_ratio[1] if s in by else np.nan for s in solvers])
        hi = np.array([by[s].var_ratio[2] if s in by else np.nan for s in solvers])
        axes[0].bar(xs, err, width, label=problem)
        floor = 1e-3  # a deterministic sampler's zero variance, drawn at the bottom of the log axis
        med_c = np.maximum(med, floor)
        axes[1].bar(xs, med_c, width, label=problem)
        axes[1].errorbar(xs, med_c, yerr=[med_c - np.maximum(lo, floor), np.maximum(hi, floor) - med_c],
                         fmt="none", ecolor="black", capsize=2, linewidth=0.8)
    axes[0].set_ylabel("relative error of the mean")
    axes[0].legend(fontsize=8)
    axes[1].set_yscale("log")
    axes[1].axhline(1.0, color="black", linestyle="--", linewidth=0.8)
    axes[1].set_ylabel("variance ratio (median, 10-90 %)")
    axes[1].set_xticks(np.arange(len(solvers)))
    axes[1].set_xticklabels(solvers, rotation=30, ha="right")
    fig.suptitle("diffrecon validity report: solvers against the exact posterior")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def add_validate_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``validate`` to the CLI's subparsers; ``func`` is :func:`run_validate`."""
    p = subparsers.add_parser("validate", help="check the solvers against exact posteriors (CPU, minutes)")
    p.add_argument("--solvers", default="", help="comma-separated solver names (default: every diffusion solver)")
    p.add_argument("--out", default="validity_report.md", help="Markdown report; the chart goes beside it as .png")
    p.add_argument("--size", type=int, default=8, choices=(8, 16), help="image side in pixels")
    p.add_argument("--samples", type=int, default=32, help="samples per run (at least 4)")
    p.add_argument("--steps", type=int, default=20, help="solver steps (at least 1)")
    p.add_argument("--trials", type=int, default=3, help="held-out truths for the coverage (at least 1)")
    p.set_defaults(func=run_validate)
    return p


def _check(args) -> tuple[list[str], Settings]:
    from ..solvers import SOLVERS

    names = [s.strip() for s in args.solvers.split(",") if s.strip()] or default_solvers()
    for name in names:
        if name not in SOLVERS or not SOLVERS[name].uses_prior:
            valid = ", ".join(default_solvers())
            raise InputError(f"--solvers names {name!r}, which is not a diffusion solver; valid names are {valid}.")
    if args.samples < 4:
        raise InputError(f"--samples is {args.samples}; the statistics need at least 4 samples.")
    if args.steps < 1 or args.trials < 1:
        raise InputError(f"--steps ({args.steps}) and --trials ({args.trials}) must both be at least 1.")
    return names, Settings(size=args.size, samples=args.samples, steps=args.steps, trials=args.trials)


def run_validate(args) -> int:
    """Run the report as ``args`` say; print the tables, write the Markdown and the PNG."""
    names, settings = _check(args)
    out = Path(args.out)
    from ..io.atomic import check_output

    check_output(out)  # a folder, an unwritable place: refused before minutes of runs
    t0 = time.perf_counter()

    def progress(row: Row) -> None:
        print(f"  {row.problem:18s} {row.solver:10s} {row.seconds:6.1f} s", file=sys.stderr, flush=True)

    rows = validate(names, settings, progress=progress)
    command = (f"diffrecon validate --size {settings.size} --samples {settings.samples} --steps {settings.steps} "
               f"--trials {settings.trials}" + (f" --solvers {args.solvers}" if args.solvers else ""))
    text = render_markdown(rows, settings, command)
    png = out.with_suffix(".png")
    out.write_text(text + f"\n![validity chart]({png.name})\n\nTotal {time.perf_counter() - t0:.0f} s.\n")
    render_png(rows, png)
    print(text)
    print(f"wrote {out} and {png}")
    return 0
