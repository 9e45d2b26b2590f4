"""What a run's spread over samples is: a posterior std, a seed spread, prior samples or none.

One function, :func:`spread_of`, decides it from the solver *and its parameters*; the engine,
the result file, the window, the CLI and the validity report all ask it. Each registry entry
declares a :class:`SpreadRule`:

- ``design``: the spread at the solver's own settings. ``posterior`` means the algorithm is
  designed as a posterior sampler with these parameters; it does not mean its std is calibrated
  (most fast solvers are not: see ``diffrecon calibrate`` and the validity report).
- ``noise``: the parameters that scale the fresh noise of each step. When all are 0 the solver
  is deterministic given its starting noise (DDIM at eta = 0, DiffPIR at zeta = 0, DDNM+ at
  eta = 0, ...): the spread over samples is a *seed spread*.
- ``data``: how the measurement enters, either parameter names (any of them 0 or ``"none"``
  means ``y`` is ignored) or a callable ``params -> bool`` (True: ``y`` is used). A solver that
  ignores ``y`` draws *prior samples* (DPS at zeta = 0, PiGDM at weight = 0, ``ddpm`` always).

A registry entry without a rule falls back to its ``posterior`` flag (True: posterior sampler,
False: seed spread for solvers with a prior, point estimate for the classical baselines).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

POSTERIOR = "posterior"
SEED = "seed"
PRIOR = "prior"
POINT = "point"
UNKNOWN = "unknown"  # a result file that does not say (read as "not a posterior")
KINDS = (POSTERIOR, SEED, PRIOR, POINT, UNKNOWN)

#: Short name of each kind (CLI tables, file attributes' companion text, compare tables).
TEXT = {POSTERIOR: "posterior std", SEED: "seed spread", PRIOR: "prior samples", POINT: "point estimate",
        UNKNOWN: "spread of unknown kind"}
#: Title of the std map.
TITLE = {POSTERIOR: "Posterior std", SEED: "Seed spread (not a posterior std)",
         PRIOR: "Prior spread (ignores the measurement)", POINT: "Spread (point estimate: none expected)",
         UNKNOWN: "Spread (not known to be a posterior std)"}


def spread_text(kind: str) -> str:
    """``"posterior std"``, or the kind's name followed by "(not a posterior std)"."""
    return TEXT.get(kind, TEXT[UNKNOWN]) + ("" if kind == POSTERIOR else " (not a posterior std)")


@dataclass(frozen=True)
class SpreadRule:
    """A registry entry's declaration of what its spread is (see the module docstring)."""

    design: str = POSTERIOR
    noise: tuple[str, ...] = ()
    data: tuple[str, ...] | Callable[[Any], bool] = ()
    why: str = ""  # one sentence for the design kind when it is not a posterior
    seed_why: str = ""  # one sentence for the noise-off case where the generic one is not exact


@dataclass(frozen=True)
class Spread:
    """The verdict for one solver with one set of parameters."""

    kind: str
    reason: str  # one sentence, for warnings and tooltips

    @property
    def is_posterior(self) -> bool:
        return self.kind == POSTERIOR

    @property
    def text(self) -> str:
        return TEXT[self.kind]

    @property
    def title(self) -> str:
        return TITLE[self.kind]


def _values(params: Any) -> dict[str, Any]:
    return dataclasses.asdict(params) if dataclasses.is_dataclass(params) else dict(params or {})


def _switched_off(value: Any) -> bool:
    return value is None or value is False or value == 0 or (isinstance(value, str) and value.lower() == "none")


def _settings(names, values) -> str:
    return ", ".join(f"{n} = {values[n]!r}" if isinstance(values[n], str) else f"{n} = {values[n]:g}"
                     for n in names)


def rule_of(info) -> SpreadRule:
    """``info``'s declared rule, or the one its ``posterior`` flag implies."""
    rule = getattr(info, "spread", None)
    if rule is not None:
        return rule
    flag = getattr(info, "posterior", True)
    if callable(flag):
        return _FlagRule(flag=flag)
    if flag:
        return SpreadRule(POSTERIOR)
    return SpreadRule(SEED if getattr(info, "uses_prior", True) else POINT)


@dataclass(frozen=True)
class _FlagRule(SpreadRule):
    """A legacy callable ``posterior(params) -> bool``: False reads as a seed spread."""

    flag: Callable[[Any], bool] = lambda p: True


def spread_of_run(info, params: Any = None, warm_start: str = "none") -> Spread:
    """:func:`spread_of` for a run that may be warm-started: a warm start (``warm_start`` other
    than ``"none"``, for a solver with a prior) makes a posterior sampler's spread a seed spread,
    since every sample starts near the one classical reconstruction instead of from the prior."""
    spread = spread_of(info, params)
    if warm_start == "none" or spread.kind != POSTERIOR or not getattr(info, "uses_prior", True):
        return spread
    name = getattr(info, "name", "this solver")
    return Spread(SEED, f"{name} was warm-started from the {warm_start.upper()} reconstruction: every sample starts "
                        "near that one image rather than from the prior, so the spread over samples is a seed "
                        "spread, not a posterior standard deviation (it is too narrow; calibrate it, or choose warm "
                        "start none for a posterior std).")


def spread_of(info, params: Any = None) -> Spread:
    """What the spread over samples of solver ``info`` (a registry entry) with ``params`` (its
    Params dataclass; None: the defaults) is, with the reason in one sentence."""
    name = getattr(info, "name", "this solver")
    if params is None:
        params = info.Params()
    rule = rule_of(info)
    values = _values(params)
    if isinstance(rule, _FlagRule):
        if rule.flag(params):
            return Spread(POSTERIOR, _posterior_reason(name))
        return Spread(SEED, f"{name} with these settings is deterministic given its starting noise: the spread "
                            "over samples is a seed spread, not a posterior standard deviation.")
    if rule.design == POINT:
        return Spread(POINT, rule.why or f"{name} is a point estimate: every sample is the same image, so the "
                                          "spread is not an uncertainty.")
    if rule.design == PRIOR:
        return Spread(PRIOR, rule.why or f"{name} ignores the measurement: its samples are prior samples and "
                                          "their spread is the prior's, not a posterior standard deviation.")
    if callable(rule.data):
        uses_data, off = bool(rule.data(params)), ()
    else:
        off = tuple(n for n in rule.data if n in values and _switched_off(values[n]))
        uses_data = not off
    if not uses_data:
        setting = f" with {_settings(off, values)}" if off else " with these settings"
        return Spread(PRIOR, f"{name}{setting} ignores the measurement: its samples are prior samples and "
                             "their spread is the prior's, not a posterior standard deviation.")
    noise = tuple(n for n in rule.noise if n in values)
    if noise and all(_switched_off(values[n]) for n in noise):
        return Spread(SEED, rule.seed_why or (
            f"{name} with {_settings(noise, values)} is deterministic given its starting noise: the spread over "
            "samples is a seed spread, not a posterior standard deviation."))
    if rule.design == SEED:
        return Spread(SEED, rule.why or f"{name} is not a posterior sampler: the spread over samples is a seed "
                                         "spread, not a posterior standard deviation.")
    return Spread(POSTERIOR, _posterior_reason(name))


def _posterior_reason(name: str) -> str:
    return (f"{name} with these settings is designed as a posterior sampler; whether its std is calibrated "
            "for this problem is what `diffrecon calibrate` measures.")


def switch_cases(info) -> list[dict[str, Any]]:
    """The parameter settings that its rule says change ``info``'s label (noise off, data off)."""
    rule = rule_of(info)
    fields = {f.name for f in dataclasses.fields(info.Params)}
    cases: list[dict[str, Any]] = []
    noise = [n for n in rule.noise if n in fields]
    if noise:
        cases.append({n: 0 for n in noise})
    if callable(rule.data):
        if "guidance" in fields:  # the accelerated samplers' guidance switch
            cases += [{"guidance": "none"}, {"guidance": "dps", "zeta": 0.0}]
    else:
        cases += [{d: 0} for d in rule.data if d in fields]
    return cases


def switches_text(info) -> list[str]:
    """``"zeta=0: seed spread"`` for each setting that changes ``info``'s label from its defaults."""
    default = spread_of(info).kind
    out = []
    for case in switch_cases(info):
        try:
            kind = spread_of(info, dataclasses.replace(info.Params(), **case)).kind
        except (TypeError, ValueError):
            continue
        if kind != default:
            out.append(f"{', '.join(f'{k}={v}' for k, v in case.items())}: {TEXT[kind]}")
    return out
