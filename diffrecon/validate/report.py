"""Runs the solvers on the exact-posterior problems through the engine, scores them and gives a verdict.

What is validated is what users run: each solver goes through :func:`diffrecon.engine.run` with
the exact prior passed as ``denoiser=`` and a :class:`~diffrecon.measurement.Measurement` built
from ``op.to_spec()``; the engine's samples are compared with the closed-form posterior
(:mod:`diffrecon.validate.exact`). Every statistic is pooled over several measurements (a truth
drawn from the prior and its noisy measurement each). An ``exact`` row, K draws from the exact
posterior through the same statistics (over more measurements, for a sharp floor), shows what a
perfect sampler scores with K samples.

A row passes when all of :data:`CRITERIA` hold: the variance ratio per pixel (median) and along the
posterior's eigen-directions (best- and least-measured quarter) within 0.9-1.1, the fraction of
pixels whose marginal a KS test rejects at most 0.10, the coverage of the t-interval within 0.03
of the exact sampler's, and the error of the mean at most 1.5 times its Monte-Carlo floor.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from ..engine import Finished, RunConfig, run
from ..solvers import SOLVERS
from .exact import exact_posterior
from .problems import ALL_KINDS, OPERATORS, PRIORS, Problem
from .stats import (eigen_variance_ratios, ks_reject_fraction, mean_error_squares, t_interval_covered,
                    variance_ratio)

EXACT = "exact"
REFERENCE = "reference"
#: seeds of the (truth, measurement) draws; measurement m uses TRUTH_SEED + m.
TRUTH_SEED = 1000
#: the pass criteria (variance ratio range, KS rejections, coverage gap, mean error over its floor).
CRITERIA = {"var": (0.9, 1.1), "ks": 0.10, "coverage": 0.03, "mean": 1.5}


@dataclass
class Settings:
    size: int = 8
    samples: int = 32
    steps: tuple[int, ...] = (50, 200)
    measurements: int = 4
    reference_steps: int = 2000
    #: measurements pooled for the exact row (cheap closed-form draws): a sharper floor.
    exact_measurements: int = 32
    #: solvers run at the first budget only (minutes per run at the larger one on a CPU).
    short: tuple[str, ...] = ("daps",)
    #: rows computed at once in separate processes (one thread each); 1: in this process.
    jobs: int = 1


@dataclass
class Row:
    """One solver at one step budget on one problem, pooled over the measurements."""

    problem: str
    solver: str
    steps: int
    posterior: bool
    mean_error: float = float("nan")  # ||mean_hat - mean|| over its Monte-Carlo floor, pooled
    var_ratio: tuple[float, float, float] = (float("nan"),) * 3  # per pixel: median, 10 %, 90 %
    var_best: float = float("nan")  # along the best-measured quarter of eigen-directions
    var_worst: float = float("nan")  # along the least-measured quarter
    ks_reject: float = float("nan")
    coverage: float = float("nan")  # t-interval, 90 %
    split_rhat: float | None = None
    ess: float | None = None
    reproducible: bool | None = None  # checked for deterministic samplers
    diverged: int = 0  # samples the engine's divergence guard dropped, over all measurements
    measurements: int = 0
    seconds: float = 0.0
    note: str = ""
    verdict: str = ""

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"


class _Pool:
    """Sums over measurements from which a Row's pooled statistics follow."""

    def __init__(self):
        self.ratios, self.best, self.worst, self.ks = [], [], [], []
        self.err2 = self.floor2 = 0.0
        self.covered = self.pixels = 0

    def add(self, samples: np.ndarray, post, truth: torch.Tensor) -> None:
        flat = samples.reshape(samples.shape[0], -1)
        self.ratios.append(flat.var(axis=0, ddof=1) / np.maximum(post.variance.numpy(), 1e-30))
        best, worst = eigen_variance_ratios(samples, post)
        self.best.append(best)
        self.worst.append(worst)
        self.ks.append(ks_reject_fraction(samples, post))
        err2, floor2 = mean_error_squares(samples, post)
        self.err2, self.floor2 = self.err2 + err2, self.floor2 + floor2
        covered, pixels = t_interval_covered(samples, truth[0].numpy())
        self.covered, self.pixels = self.covered + covered, self.pixels + pixels

    def fill(self, row: Row) -> None:
        if not self.ratios:  # every run diverged: nothing to score
            return
        ratio = np.mean(self.ratios, axis=0)
        lo, med, hi = np.quantile(ratio, [0.1, 0.5, 0.9])
        row.var_ratio = (float(med), float(lo), float(hi))
        row.var_best, row.var_worst = float(np.mean(self.best)), float(np.mean(self.worst))
        row.ks_reject = float(np.mean(self.ks))
        row.mean_error = math.sqrt(self.err2 / max(self.floor2, 1e-300))
        row.coverage = self.covered / max(self.pixels, 1)
        row.measurements = len(self.ratios)


def run_solver(problem: Problem, solver: str, y: torch.Tensor, truth: torch.Tensor, settings: Settings,
               steps: int, seed: int = 0):
    """The engine's Result for one solver on one measurement (CPU, fp32, all samples kept)."""
    config = RunConfig(solver=solver, params=dict(SOLVERS[solver].posterior_mode), steps=steps,
                       samples=settings.samples, seed=seed, device="cpu",
                       precision="fp32", batch_size=settings.samples, keep_samples=settings.samples,
                       preview_interval=1e9)
    result = None
    for event in run(problem.measurement(y, truth), config, denoiser=problem.prior):
        if isinstance(event, Finished):
            result = event.result
    return result


def evaluate(problem: Problem, solver: str, settings: Settings, steps: int | None = None) -> Row:
    """Score ``solver`` (or ``"exact"``) at ``steps`` on ``problem``, pooled over the measurements;
    deterministic samplers are also re-run with the same seed."""
    steps = steps if steps is not None else settings.steps[-1]
    if solver == EXACT:
        row = Row(problem.name, EXACT, 0, True)
    else:
        info = SOLVERS[solver]
        row = Row(problem.name, solver, steps, info.is_posterior(info.Params(**dict(info.posterior_mode))))
        reason = info.unmet_need(problem.op)
        if reason:
            row.note = reason
            return row
    pool = _Pool()
    rhat, ess = [], []
    t0 = time.perf_counter()
    count = settings.exact_measurements if solver == EXACT else settings.measurements
    for m in range(count):
        truth, y = problem.draw(TRUTH_SEED + m)
        post = exact_posterior(problem.prior, problem.op, y)
        if solver == EXACT:
            samples = post.sample(settings.samples, torch.Generator().manual_seed(m)).numpy()
        else:
            # a seed per measurement: with one seed a Gaussian posterior's samples would repeat the
            # same centred cloud for every measurement and pooling would not reduce their noise
            result = run_solver(problem, solver, y, truth, settings, steps, seed=m)
            samples = result.samples
            row.diverged += settings.samples - samples.shape[0]
            if "split_rhat" in result.metrics:
                rhat.append(result.metrics["split_rhat"])
                ess.append(result.metrics["ess"])
            if m == 0 and not row.posterior:
                again = run_solver(problem, solver, y, truth, settings, steps, seed=m)
                row.reproducible = bool(np.array_equal(again.samples, samples))
        if samples.shape[0] >= 2:
            pool.add(samples.reshape(samples.shape[0], *problem.op.image_shape), post, truth)
    pool.fill(row)
    if rhat:
        row.split_rhat, row.ess = float(np.max(rhat)), float(np.min(ess))
    row.seconds = time.perf_counter() - t0
    return row


def verdict(row: Row, exact: Row) -> str:
    """``"pass"`` or ``"fail: ..."`` naming every criterion the row misses (see :data:`CRITERIA`)."""
    if row.note.startswith("error"):
        return "fail: " + row.note
    if row.note:
        return "n/a"
    if not row.posterior and row.solver != EXACT:
        return "fail: not a posterior sampler"
    lo, hi = CRITERIA["var"]
    misses = [f"{row.diverged} samples diverged"] if row.diverged else []
    for name, value in (("var/pixel", row.var_ratio[0]), ("var/best dirs", row.var_best),
                        ("var/least dirs", row.var_worst)):
        if not lo <= value <= hi:
            misses.append(f"{name} {value:.2f}")
    if not row.ks_reject <= CRITERIA["ks"]:
        misses.append(f"KS {row.ks_reject:.2f}")
    if not abs(row.coverage - exact.coverage) <= CRITERIA["coverage"]:
        misses.append(f"coverage {row.coverage:.2f}")
    if not row.mean_error <= CRITERIA["mean"]:
        misses.append(f"mean {row.mean_error:.1f}x")
    return "pass" if not misses else "fail: " + ", ".join(misses)


def default_solvers() -> list[str]:
    """Every diffusion solver (the classical baselines have no posterior to check)."""
    return [name for name, info in SOLVERS.items() if info.uses_prior]


def _budgets(solver: str, settings: Settings) -> tuple[int, ...]:
    if solver == REFERENCE:
        return (settings.reference_steps,)
    return tuple(settings.steps[:1]) if solver in settings.short else tuple(settings.steps)


def _evaluate_task(prior_kind: str, operator_kind: str, solver: str, settings: Settings, steps: int | None) -> Row:
    """:func:`evaluate` in a worker process (one thread: the rows run side by side); an error becomes
    the row's note, so one failing run does not lose the others."""
    torch.set_num_threads(1)
    problem = Problem(prior_kind, operator_kind, settings.size)
    try:
        return evaluate(problem, solver, settings, steps)
    except Exception as exc:  # noqa: BLE001 - reported in the row, the report goes on
        return Row(problem.name, solver, steps or 0, False, note=f"error: {type(exc).__name__}: {exc}")


def validate(solvers: list[str], settings: Settings, problems: list[Problem] | None = None,
             progress=None) -> list[Row]:
    """Rows for every problem, solver and step budget, the exact reference first in each problem,
    each with its verdict. With ``settings.jobs > 1`` the rows are computed in that many processes
    (the same rows: every run is seeded by its measurement)."""
    problems = problems or [Problem(p, o, settings.size) for p in PRIORS for o in OPERATORS]
    tasks = [(problem, solver, steps) for problem in problems
             for solver, steps in [(EXACT, None)] + [(s, k) for s in solvers for k in _budgets(s, settings)]]
    if settings.jobs > 1:
        import concurrent.futures as cf
        import multiprocessing

        with cf.ProcessPoolExecutor(settings.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(_evaluate_task, p.prior_kind, p.operator_kind, s, settings, k) for p, s, k in tasks]
            computed = [f.result() for f in futures]
    else:
        computed = (evaluate(p, s, settings, k) for p, s, k in tasks)
    rows, exact = [], None
    for row in computed:
        if row.solver == EXACT:
            exact = row
        row.verdict = verdict(row, exact)
        if progress is not None:
            progress(row)
        rows.append(row)
    return rows


def reference_on_every_kind(settings: Settings, kinds=ALL_KINDS, progress=None) -> list[Row]:
    """The reference sampler against the exact posterior on one forward model of every kind, both priors."""
    problems = [Problem(p, k, settings.size) for p in PRIORS for k in kinds]
    return validate([REFERENCE], settings, problems, progress)


@dataclass
class XStepRow:
    """The reference sampler's inner sampler (the x-step) against the exact ``p(x | z)``."""

    prior: str
    level: float
    steps: int
    var_ratio: float
    mean_error: float  # over its Monte-Carlo floor
    ks_reject: float
    draws: int = 0
    extra: dict = field(default_factory=dict)


def validate_x_step(size: int = 8, level: float = 0.05, steps: int = 20, draws: int = 1000) -> list[XStepRow]:
    """Draws of the x-step from one noisy image per prior, scored against the closed form."""
    from ..operators import Denoise
    from ..solvers import SampleRNG
    from ..solvers.reference import reverse_diffusion
    from .problems import make_prior

    rows = []
    for kind in PRIORS:
        prior = make_prior(kind, size)
        g = torch.Generator().manual_seed(7)
        z = prior.sample(1, g) + level * torch.randn(1, 1, size, size, generator=g)
        post = exact_posterior(prior, Denoise((1, size, size), level), z)
        with torch.no_grad():
            *_, (x, _, _) = reverse_diffusion(prior, z.expand(draws, -1, -1, -1), level, steps,
                                              SampleRNG(0, range(draws)))
        samples = x.numpy()
        err2, floor2 = mean_error_squares(samples, post)
        total = float(samples.reshape(draws, -1).var(axis=0, ddof=1).sum() / post.variance.sum())
        rows.append(XStepRow(kind, level, steps, total, math.sqrt(err2 / floor2), ks_reject_fraction(samples, post),
                             draws, {"pixel_ratio": variance_ratio(samples, post)}))
    return rows
