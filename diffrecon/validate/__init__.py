"""Do the solvers sample the posterior? A report against closed forms (``diffrecon validate``).

For the exact Gaussian and Gaussian-mixture priors with linear forward models (inpainting and
sparse-view CT, small images) the posterior is known in closed form. Per solver, step budget and
problem the report pools over several measurements: the error of the posterior mean in units of
its Monte-Carlo floor, the variance ratio per pixel and along the posterior's eigen-directions,
the fraction of pixels whose marginal a Kolmogorov-Smirnov test rejects, the coverage of the 90 %
t-interval on the held-out truths, chain diagnostics where the solver reports them, and a verdict
against stated criteria. The reference sampler is also checked on every operator kind, and its
inner sampler on its own. Output: a Markdown report and a PNG chart. CPU only; minutes.
"""
from __future__ import annotations

import math
from pathlib import Path

from .report import (CRITERIA, EXACT, REFERENCE, Row, Settings, XStepRow, default_solvers, reference_on_every_kind,
                     validate, validate_x_step)

__all__ = ["CORE", "REFERENCE", "Row", "Settings", "XStepRow", "default_solvers", "reference_on_every_kind",
           "render_markdown", "render_png", "summary", "validate", "validate_x_step"]

#: the problems the "done" summary needs a fast solver to pass.
CORE = ("gaussian / inpaint", "gaussian / ct", "gmm / inpaint", "gmm / ct")


def _fmt(v: float | None, digits: int = 2) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def _table(rows: list[Row]) -> list[str]:
    out = ["| solver | steps | output | mean err / floor | var ratio pixels | var best dirs | var least dirs | "
           "KS rej. | cov90 (t) | R-hat / ESS | verdict | s |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r.note:
            out.append(f"| {r.solver} | {r.steps} | n/a | {r.note} | | | | | | | n/a | |")
            continue
        med, lo, hi = r.var_ratio
        kind = "exact draws" if r.solver == EXACT else ("posterior" if r.posterior else "point/seed spread")
        if r.reproducible is not None:
            kind += " (same seed: " + ("identical)" if r.reproducible else "DIFFERENT)")
        chain = "" if r.split_rhat is None else f"{r.split_rhat:.2f} / {r.ess:.0f}"
        out.append(f"| {r.solver} | {r.steps or ''} | {kind} | {_fmt(r.mean_error)} | {_fmt(med)} [{_fmt(lo)}, {_fmt(hi)}] | "
                   f"{_fmt(r.var_best)} | {_fmt(r.var_worst)} | {_fmt(r.ks_reject)} | {_fmt(r.coverage, 3)} | {chain} | "
                   f"{r.verdict} | {r.seconds:.1f} |")
    return out + [""]


def summary(rows: list[Row]) -> list[str]:
    """Which fast posterior solvers pass every core problem at some budget of at most 200 steps."""
    fast = [s for s in dict.fromkeys(r.solver for r in rows) if s not in (EXACT, REFERENCE)]
    passing, lines = [], []
    for s in fast:
        ok = {r.problem for r in rows if r.solver == s and r.passed and r.steps <= 200}
        if all(p in ok for p in CORE):
            passing.append(s)
        lines.append(f"- {s}: passes {len(ok & set(CORE))} of {len(CORE)} problems"
                     + (f" ({', '.join(sorted(ok & set(CORE)))})" if ok else ""))
    ref = [r for r in rows if r.solver == REFERENCE and not r.note]
    head = [f"**Fast posterior solvers passing all four problems at <= 200 steps: {len(passing)}"
            f"{' (' + ', '.join(passing) + ')' if passing else ''}.**"]
    if ref:
        head.append(f"**Reference sampler: passes {sum(r.passed for r in ref)} of {len(ref)} problems.**")
    return head + [""] + lines + [""]


def _posterior_modes() -> dict:
    """``{solver: its posterior_mode parameters}`` for the solvers that have one."""
    from ..solvers import SOLVERS

    return {name: info.posterior_mode for name, info in SOLVERS.items() if info.posterior_mode}


def _posterior_mode_solvers() -> str:
    names = list(_posterior_modes())
    return ", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else "".join(names)


def _posterior_mode_lines() -> list[str]:
    return [f"- {name} posterior mode: `" + " ".join(f"{k}={v}" for k, v in mode).lower() + "`"
            for name, mode in _posterior_modes().items()]


def render_markdown(rows: list[Row], settings: Settings, command: str = "", kinds: list[Row] | None = None,
                    xstep: list[XStepRow] | None = None) -> str:
    """The report as Markdown: settings, criteria, a summary, one table per problem."""
    lo, hi = CRITERIA["var"]
    out = [
        "# diffrecon validity report", "",
        f"`{command}`" if command else "",
        f"Images {settings.size}x{settings.size}, {settings.samples} samples per run, pooled over "
        f"{settings.measurements} measurements (truth drawn from the prior, noisy measurement simulated); "
        f"fast solvers at {', '.join(map(str, settings.steps))} steps at their default parameters, except "
        f"{_posterior_mode_solvers()}, which run in posterior mode (their registry entry's posterior_mode parameters, "
        "listed below; their defaults are the papers'), the reference "
        f"sampler at {settings.reference_steps}"
        + (f", {', '.join(settings.short)} at {settings.steps[0]} only (slow on a CPU)" if settings.short else "")
        + f"; the exact row pools {settings.exact_measurements} measurements "
        "(CPU, fp32).", "",
        *_posterior_mode_lines(), "",
        "**Criteria** (a row passes when all hold):", "",
        f"- **var ratio** sample variance / posterior variance within {lo}-{hi}: per pixel (median over pixels, "
        "[10 %, 90 %] shown), and along the posterior covariance's eigenvectors, averaged over the best-measured "
        "quarter (smallest posterior variance) and the least-measured quarter (largest) of them: the joint "
        "covariance, not only the marginals.",
        f"- **KS rej.** fraction of pixels whose K samples a one-sample Kolmogorov-Smirnov test against the exact "
        f"marginal rejects at 5 %: at most {CRITERIA['ks']:.2f} (about 0.05 for an exact sampler).",
        f"- **cov90 (t)** fraction of pixels whose held-out truth lies in mean +- t_(K-1) sqrt(1 + 1/K) s (90 %): "
        f"within {CRITERIA['coverage']} of the exact row's.",
        f"- **mean err / floor** ||sample mean - posterior mean|| over its expectation for K exact draws "
        f"(sqrt(tr cov / K)), pooled: at most {CRITERIA['mean']} (about 1 for an exact sampler).",
        "- Deterministic samplers (their spread is a seed spread, not a posterior std) fail by definition; "
        "same seed shows whether a re-run reproduces them.",
        "- **R-hat / ESS** split-R-hat (largest over measurements) and effective sample size (smallest) of the "
        "reference sampler's chains after burn-in, over four linear summaries of the image.", "",
        "## Summary", "", *summary(rows),
    ]
    for problem in dict.fromkeys(r.problem for r in rows):
        out += [f"## {problem}", "", *_table([r for r in rows if r.problem == problem])]
    if kinds:
        out += ["## Reference sampler on every operator kind", "",
                f"One forward model of each kind, noise 5 % of ||A||, {settings.size}x{settings.size}, "
                "both priors; same criteria.", ""]
        for problem in dict.fromkeys(r.problem for r in kinds):
            out += [f"### {problem}", "", *_table([r for r in kinds if r.problem == problem])]
    if xstep:
        out += ["## The reference sampler's inner sampler (x-step)", "",
                "Draws of p(x | z), z = x + rho e, by the variance-corrected reverse diffusion, against the exact "
                "posterior given z (the prior with identity forward model and noise rho).", "",
                "| prior | rho | steps | draws | total var ratio | pixel var ratio median [10 %, 90 %] | "
                "mean err / floor | KS rej. |", "|---|---|---|---|---|---|---|---|"]
        for x in xstep:
            med, lo_, hi_ = x.extra["pixel_ratio"]
            out.append(f"| {x.prior} | {x.level} | {x.steps} | {x.draws} | {x.var_ratio:.3f} | "
                       f"{med:.3f} [{lo_:.3f}, {hi_:.3f}] | {x.mean_error:.2f} | {x.ks_reject:.3f} |")
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
