"""The weight assistant: each solver's data weight chosen by the discrepancy principle.

Morozov's discrepancy principle picks the regularisation weight at which the reconstruction
explains the data to the noise level and no further: ``||A x - y|| = tau sigma sqrt(m)`` (``m``
measured real degrees of freedom, ``tau`` = 1). No ground truth is used. The residual grows
monotonically with the TV and Tikhonov weights and with DiffPIR's ``lam``, and falls with DPS's
``zeta``, so a bisection in log scale finds the weight in a few short runs of the engine (the
diffusion solvers on a short budget: few steps, one sample).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Callable

from . import engine
from .errors import InputError, RunError
from .measurement import Measurement


@dataclass(frozen=True)
class Weighted:
    param: str
    lo: float
    hi: float
    increasing: bool  # the residual grows with the weight
    when: tuple[tuple[str, str], ...] = ()  # (param, value) the weight needs (the few-step samplers' guidance)


#: the few-step samplers' lam is the proximal data step's prior weight, as DiffPIR's
_PROXIMAL = Weighted("lam", 0.1, 1e3, True, (("guidance", "proximal"),))

#: Solvers with a data weight that sets the residual, the weight's bracket and direction.
WEIGHTED: dict[str, Weighted] = {
    "tv": Weighted("lam", 1e-3, 1e2, True),
    "cg": Weighted("lam", 1e-2, 1e5, True),
    "diffpir": Weighted("lam", 0.1, 1e3, True),
    "dps": Weighted("zeta", 0.01, 30.0, False),
    "dpmpp_3m_sde": _PROXIMAL,  # the fast preset's solver
    "fvfo": _PROXIMAL,
    "mlem": _PROXIMAL,
}


@dataclass
class WeightChoice:
    solver: str
    param: str
    value: float
    residual_ratio: float  # ||A x - y|| / (sigma sqrt(m)) at the chosen value
    tried: list[tuple[float, float]] = field(default_factory=list)  # (value, residual ratio)
    bracketed: bool = True  # False: the target lies outside the bracket; the nearest end was taken
    trial_metrics: list[dict] = field(default_factory=list, repr=False)  # every trial's metrics (benchmarks)

    def provenance(self) -> dict:
        return {"solver": self.solver, "param": self.param, "value": self.value, "rule": "discrepancy",
                "residual_ratio": self.residual_ratio, "bracketed": self.bracketed,
                "tried": [list(t) for t in self.tried]}


def run_metrics(measurement: Measurement, config: engine.RunConfig, denoiser=None) -> dict[str, float]:
    """The metrics of one engine run; ``residual_ratio`` inf if it diverged."""
    try:
        for event in engine.run(measurement, config, denoiser=denoiser):
            if isinstance(event, engine.Finished):
                return dict(event.result.metrics)
    except RunError:
        pass
    return {"residual_ratio": math.inf}


def choose_weight(measurement: Measurement, config: engine.RunConfig, *, denoiser=None, iterations: int = 7,
                  short_steps: int = 12, target: float = 1.0,
                  progress: Callable[[int, int, float, float], None] | None = None) -> WeightChoice:
    """The discrepancy-principle weight of ``config.solver`` for ``measurement``; diffusion
    solvers run ``short_steps`` steps with one sample per trial, the baselines their own
    tolerance. ``progress(k, n, value, ratio)`` is called after each trial."""
    spec = WEIGHTED.get(config.solver)
    if spec is None:
        raise InputError(f"Automatic weight is available for {', '.join(WEIGHTED)}, not {config.solver!r}.")
    given = dataclasses.asdict(config.recipe.params)
    for name, value in spec.when:
        if given.get(name) != value:
            raise InputError(f"Automatic weight of {config.solver} sets its {spec.param} of the {value} {name}; this "
                             f"run's {name} is {given.get(name)!r}: choose {name} {value} or set the weight by hand.")
    if not float(measurement.noise_sigma) > 0:
        raise InputError("Automatic weight needs the measurement's noise level; this file states sigma = 0, so set "
                         "the noise level or the weight by hand.")
    from .solvers import get_solver

    short = dataclasses.replace(config, samples=1, keep_samples=0, preview_interval=1e9,
                                steps=min(config.steps, short_steps) if get_solver(config.solver).uses_prior
                                else config.steps)
    tried: list[tuple[float, float]] = []
    metrics: list[dict] = []

    def trial(value: float) -> float:
        params = {**dict(config.params), spec.param: value}
        metrics.append(run_metrics(measurement, dataclasses.replace(short, params=params), denoiser))
        ratio = float(metrics[-1].get("residual_ratio", math.inf))
        tried.append((value, ratio))
        if progress is not None:
            progress(len(tried), iterations + 2, value, ratio)
        return ratio

    def too_high(ratio: float) -> bool:  # the weight must move toward more data fidelity
        return ratio > target

    lo, hi = math.log(spec.lo), math.log(spec.hi)
    r_lo, r_hi = trial(spec.lo), trial(spec.hi)
    weak_end, strong_end = (r_hi, r_lo) if spec.increasing else (r_lo, r_hi)  # weak: least data fidelity
    bracketed = strong_end <= target <= weak_end
    if bracketed:
        for _ in range(iterations):
            mid = 0.5 * (lo + hi)
            r = trial(math.exp(mid))
            if too_high(r) == spec.increasing:
                hi = mid
            else:
                lo = mid
    finite = [(v, r) for v, r in tried if math.isfinite(r) and r > 0]
    if not finite:
        raise InputError(f"Every trial run of {config.solver} diverged; set the weight by hand.")
    value, ratio = min(finite, key=lambda vr: abs(math.log(vr[1] / target)))
    return WeightChoice(config.solver, spec.param, value, ratio, tried, bracketed, metrics)
