"""Runs the solvers on the exact-posterior problems through the engine and scores them.

What is validated is what users run: each solver goes through :func:`diffrecon.engine.run` with
the exact prior passed as ``denoiser=`` and a :class:`~diffrecon.measurement.Measurement` built
from ``op.to_spec()``; the engine's samples, mean and std are compared with the closed-form
posterior (:mod:`diffrecon.validate.exact`). An ``exact`` row, K draws from that posterior through
the same statistics, shows what a perfect sampler scores with K samples.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from ..engine import Finished, RunConfig, run
from ..metrics import coverage
from ..solvers import SOLVERS
from .exact import exact_posterior
from .problems import Problem
from .stats import ks_reject_fraction, mean_error, variance_ratio

EXACT = "exact"
#: seeds of the (truth, measurement) draws; trial t uses TRUTH_SEED + t.
TRUTH_SEED = 1000


@dataclass
class Settings:
    size: int = 8
    samples: int = 32
    steps: int = 20
    trials: int = 3


@dataclass
class Row:
    """One solver on one problem."""

    problem: str
    solver: str
    posterior: bool
    mean_error: float = float("nan")
    var_ratio: tuple[float, float, float] = (float("nan"),) * 3  # median, 10 %, 90 %
    ks_reject: float = float("nan")
    coverage: list[float] = field(default_factory=list)  # one per trial
    reproducible: bool | None = None  # checked for deterministic samplers
    seconds: float = 0.0
    note: str = ""

    @property
    def mean_coverage(self) -> float:
        return float(np.mean(self.coverage)) if self.coverage else float("nan")


def run_solver(problem: Problem, solver: str, y: torch.Tensor, truth: torch.Tensor, settings: Settings,
               seed: int = 0):
    """The engine's Result for one solver on one measurement (CPU, fp32, all samples kept)."""
    config = RunConfig(solver=solver, steps=settings.steps, samples=settings.samples, seed=seed, device="cpu",
                       precision="fp32", batch_size=settings.samples, keep_samples=settings.samples,
                       preview_interval=1e9)
    result = None
    for event in run(problem.measurement(y, truth), config, denoiser=problem.prior):
        if isinstance(event, Finished):
            result = event.result
    return result


def _score(row: Row, samples: np.ndarray, problem: Problem, post) -> None:
    prior_mean = _prior_mean(problem.prior)
    row.mean_error = mean_error(samples, post, prior_mean)
    row.var_ratio = variance_ratio(samples, post)
    row.ks_reject = ks_reject_fraction(samples, post)


def _prior_mean(prior) -> np.ndarray:
    if hasattr(prior, "num_components"):
        return torch.einsum("k,kchw->chw", prior.weights, prior.means).numpy()
    return prior.mean.numpy()


def _trial_coverage(samples: np.ndarray, truth: torch.Tensor) -> float:
    mean, std = samples.mean(axis=0), samples.std(axis=0, ddof=1)
    return coverage(mean, std, truth[0].numpy(), len(samples), 0.9)


def evaluate(problem: Problem, solver: str, settings: Settings) -> Row:
    """Score ``solver`` (or ``"exact"``) on ``problem``: trial 0 gives the posterior statistics,
    every trial a coverage; deterministic samplers are also re-run with the same seed."""
    if solver == EXACT:
        row = Row(problem.name, EXACT, True)
    else:
        info = SOLVERS[solver]
        row = Row(problem.name, solver, info.is_posterior(info.Params()))
        reason = info.unmet_need(problem.op)
        if reason:
            row.note = reason
            return row
    t0 = time.perf_counter()
    for t in range(settings.trials):
        truth, y = problem.draw(TRUTH_SEED + t)
        if solver == EXACT:
            post = exact_posterior(problem.prior, problem.op, y)
            g = torch.Generator().manual_seed(t)
            samples = post.sample(settings.samples, g).numpy().reshape(settings.samples, *problem.op.image_shape)
        else:
            result = run_solver(problem, solver, y, truth, settings)
            samples = result.samples
            if t == 0:
                post = exact_posterior(problem.prior, problem.op, y)
            if t == 0 and not row.posterior:
                again = run_solver(problem, solver, y, truth, settings)
                row.reproducible = bool(np.array_equal(again.samples, samples))
        if t == 0:
            _score(row, samples, problem, post)
        row.coverage.append(_trial_coverage(samples, truth))
    row.seconds = time.perf_counter() - t0
    return row


def default_solvers() -> list[str]:
    """Every diffusion solver (the classical baselines have no posterior to check)."""
    return [name for name, info in SOLVERS.items() if info.uses_prior]


def validate(solvers: list[str], settings: Settings, problems: list[Problem] | None = None,
             progress=None) -> list[Row]:
    """Rows for every problem and solver, the exact reference first in each problem."""
    from .problems import OPERATORS, PRIORS

    problems = problems or [Problem(p, o, settings.size) for p in PRIORS for o in OPERATORS]
    rows = []
    for problem in problems:
        for solver in [EXACT, *solvers]:
            row = evaluate(problem, solver, settings)
            if progress is not None:
                progress(row)
            rows.append(row)
    return rows
