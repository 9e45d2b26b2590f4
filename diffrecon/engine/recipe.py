"""What a run is, in two halves.

* :class:`Recipe`: everything that decides the answer. The same recipe on the same measurement
  gives the same posterior mean and std on any machine, whatever the batch size or device: the
  solver and its typed params, steps, schedule, samples, seed, prior, warm start, whether a stored
  calibration scales the std, how the weight was chosen, and the quality preset the solver, steps
  and params came from (:mod:`.presets`; the recipe holds them in full, so a re-run does not
  depend on the preset table). ``to_dict`` / ``from_dict`` is its
  one serialisation: a result's provenance, saved settings and a re-run from a result all use it.
* :class:`RuntimeOptions`: how and where it runs, which does not change a healthy run's answer:
  device, precision, network mode, channels-last, checkpointing, batch size, how many samples
  the result keeps, preview rate, the divergence policy (what a sample that goes wrong stops,
  and whether to retry once with a smaller weight; a retry's params are recorded in its recipe)
  and the prior-fit measurement (a diagnostic metric).
* :class:`RunConfig`: the two side by side in one flat, frozen dataclass (the form front ends
  fill in); ``.recipe`` and ``.runtime`` split it, checked; ``from_parts`` joins them.

Every check names the setting and what would be valid, in one sentence (InputError).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from ..errors import InputError
from ..guard import ON_DIVERGENCE
from ..limits import check_seed
from ..priors.acceleration import MODES as COMPILE_MODES
from ..schedule import SCHEDULES
from ..warm_start import WARM_STARTS
from .presets import FULL, NAMES as PRESET_NAMES

PRECISIONS = ("bf16", "fp32")
_KINDS = {float: "a number", int: "a whole number", bool: "true or false", str: "text"}


# ---------------------------------------------------------------------------------- checks
def _whole(key: str, value: Any, minimum: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer, float, np.floating)) \
            or not float(value).is_integer():
        raise InputError(f"{key} must be a whole number (got {value!r}).")
    if value < minimum:
        raise InputError(f"{key} must be at least {minimum} (got {int(value)}).")
    return int(value)


def _number(key: str, value: Any, positive: bool = False) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer, float, np.floating)) \
            or not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise InputError(f"{key} must be a finite number {'above' if positive else 'of at least'} 0 (got {value!r}).")
    return float(value)


def _flag(key: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise InputError(f"{key} must be true or false (got {value!r}).")
    return bool(value)


def _choice(label: str, value: Any, valid: tuple[str, ...]) -> str:
    if value not in valid:
        raise InputError(f"{label} {value!r} is not known; valid values are {', '.join(valid)}.")
    return str(value)


def _text(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise InputError(f"{key} must be a non-empty name (got {value!r}).")
    return value


def _params(info, value: Any) -> Any:
    """``info``'s Params from an instance, or from a mapping of overrides (values typed, or text
    as the CLI's --param gives them); every value checked against its declared range."""
    from ..solvers import parse_params, validate_params

    if value is None:
        value = {}
    if isinstance(value, info.Params):
        validate_params(value, info.name)
        return value
    if not isinstance(value, Mapping):
        raise InputError(f"params of {info.name} must be a mapping of parameter names to values (got {value!r}).")
    fields = {f.name: f for f in dataclasses.fields(info.Params)}
    typed = {}
    for key, raw in value.items():
        kind = type(fields[key].default) if key in fields else None
        number = isinstance(raw, (int, float, np.integer, np.floating)) and not isinstance(raw, (bool, np.bool_))
        if kind is float and number:
            raw = float(raw)
        elif kind is int and number and float(raw).is_integer():
            raw = int(raw)
        elif kind is bool and isinstance(raw, np.bool_):
            raw = bool(raw)
        elif kind is not None and (not isinstance(raw, (str, kind)) or kind is int and isinstance(raw, bool)):
            raise InputError(f"{info.name} parameter {key} must be {_KINDS.get(kind, kind.__name__)} (got {raw!r}).")
        typed[key] = raw
    return parse_params(info.Params, typed, info.name)


def _unknown_keys(where: str, data: Any, known: tuple[str, ...]) -> None:
    if not isinstance(data, Mapping):
        raise InputError(f"{where[0].upper() + where[1:]} must be a mapping of setting names to values (got "
                         f"{type(data).__name__}).")
    unknown = [k for k in data if k not in known]
    if unknown:
        raise InputError(f"{unknown[0]!r} is not a setting of {where}; valid settings are {', '.join(known)}.")


def _to_dict(obj) -> dict[str, Any]:
    """Plain JSON-able values by field, unset (None) ones left out."""
    out = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if value is None:
            continue
        if dataclasses.is_dataclass(value):
            value = dataclasses.asdict(value)
        elif isinstance(value, Mapping):
            value = dict(value)
        out[f.name] = value
    return out


def _names(cls) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


# ---------------------------------------------------------------------------------- recipe
@dataclass(frozen=True)
class Recipe:
    """Everything that decides a reconstruction's answer besides the measurement (checked)."""

    solver: str = FULL["solver"]
    params: Any = None  # the solver's Params (frozen dataclass); None or a mapping of overrides: its defaults
    steps: int = FULL["steps"]
    schedule: str = "karras"  # karras | vp_uniform | vp_quadratic | vp_sde (diffrecon.schedule)
    samples: int = 4
    seed: int = 0
    prior: str = "default"  # "default" (bundled), "gaussian", or a prior folder
    warm_start: str = "none"  # none | tv: start from the TV reconstruction noised to sigma_start (warm_start.py)
    sigma_start: float | None = None  # warm start level in the prior's units; None: from the error estimate
    use_calibration: bool = True  # scale the std by a stored calibration of this setting (diffrecon calibrate)
    weight_choice: Mapping[str, Any] | None = None  # how the weight was chosen (weights.py), for the provenance
    preset: str = "full"  # the quality preset (presets.py) solver, steps and params came from, unless overridden

    def __post_init__(self):
        from ..solvers import get_solver

        info = get_solver(self.solver)
        seed = int(self.seed) if isinstance(self.seed, np.integer) else self.seed
        checked = {
            "params": _params(info, self.params), "steps": _whole("steps", self.steps, 1),
            "schedule": _choice("schedule", self.schedule, SCHEDULES),
            "samples": _whole("samples", self.samples, 1), "seed": check_seed(seed),
            "prior": _text("prior", self.prior), "warm_start": _choice("warm start", self.warm_start, WARM_STARTS),
            "sigma_start": None if self.sigma_start is None else
            _number("sigma_start", self.sigma_start, positive=True),
            "use_calibration": _flag("use_calibration", self.use_calibration),
            "preset": _choice("quality preset", self.preset, PRESET_NAMES),
        }
        if self.weight_choice is not None and not isinstance(self.weight_choice, Mapping):
            raise InputError(f"weight_choice must be a mapping (rule, param, value, ...) or unset (got "
                             f"{self.weight_choice!r}).")
        for key, value in checked.items():
            object.__setattr__(self, key, value)

    @property
    def info(self):
        """The solver's registry entry."""
        from ..solvers import get_solver

        return get_solver(self.solver)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values (params in full); unset values (None) are left out."""
        return _to_dict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "the recipe") -> "Recipe":
        """The recipe ``data`` describes (as :meth:`to_dict` writes it; missing keys take their
        defaults, params may be a partial mapping of overrides), checked: InputError naming the
        setting otherwise."""
        _unknown_keys(where, data, RECIPE_KEYS)
        return cls(**dict(data))

    @classmethod
    def from_provenance(cls, provenance: Mapping[str, Any]) -> "Recipe":
        """The recipe that made a result, from its provenance (which holds more than the recipe)."""
        return cls.from_dict({k: v for k, v in provenance.items() if k in RECIPE_KEYS},
                             "the result's provenance")


# ---------------------------------------------------------------------------------- runtime
@dataclass(frozen=True)
class RuntimeOptions:
    """How and where a run goes; none of it changes a healthy run's answer (checked, except
    whether the device exists here, which :func:`~diffrecon.engine.check_settings` asks)."""

    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    precision: str = "bf16"  # bf16 | fp32: the network's autocast dtype on GPU
    compile: str = "auto"  # auto | none | graphs | compile: how the network runs on CUDA (auto: see auto_mode)
    channels_last: bool = False  # network weights and inputs channels-last on CUDA
    checkpointing: bool = False  # gradient checkpointing for solvers that backpropagate (DPS memory)
    batch_size: int | None = None  # None: as many samples per batch as memory allows
    keep_samples: int = 16  # samples stored in the result
    preview_interval: float = 0.25  # seconds between previews
    on_divergence: str = "sample"  # sample | all | continue: what a diverged sample stops (diffrecon.guard)
    retry_on_divergence: bool = False  # once, with a smaller guidance weight (guard.retry_config)
    prior_fit: bool = True  # measure the prior-fit indicator before and after the run (prior_fit.py)

    def __post_init__(self):
        checked = {
            "device": _text("device", self.device), "precision": _choice("precision", self.precision, PRECISIONS),
            "compile": _choice("compile mode", self.compile, COMPILE_MODES),
            "channels_last": _flag("channels_last", self.channels_last),
            "checkpointing": _flag("checkpointing", self.checkpointing),
            "batch_size": None if self.batch_size is None else _whole("batch size", self.batch_size, 1),
            "keep_samples": _whole("keep_samples", self.keep_samples, 0),
            "preview_interval": _number("preview_interval", self.preview_interval),
            "on_divergence": _choice("on_divergence", self.on_divergence, ON_DIVERGENCE),
            "retry_on_divergence": _flag("retry_on_divergence", self.retry_on_divergence),
            "prior_fit": _flag("prior_fit", self.prior_fit),
        }
        for key, value in checked.items():
            object.__setattr__(self, key, value)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values; unset values (None) are left out."""
        return _to_dict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "the runtime options") -> "RuntimeOptions":
        """The options ``data`` describes (missing keys take their defaults), checked."""
        _unknown_keys(where, data, RUNTIME_KEYS)
        return cls(**dict(data))


RECIPE_KEYS = _names(Recipe)
RUNTIME_KEYS = _names(RuntimeOptions)


# ---------------------------------------------------------------------------------- the pair
@dataclass(frozen=True)
class RunConfig:
    """A Recipe and RuntimeOptions side by side, flat (what forms and scripts fill in). Qt-free.
    Not checked until used: ``.recipe`` and ``.runtime`` check their halves."""

    solver: str = FULL["solver"]
    params: Mapping[str, Any] = field(default_factory=dict)  # overrides of the solver's defaults
    steps: int = FULL["steps"]
    samples: int = 4
    seed: int = 0
    prior: str = "default"  # "default" (bundled), "gaussian", or a prior folder
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    precision: str = "bf16"  # bf16 | fp32: the network's autocast dtype on GPU
    compile: str = "auto"  # auto | none | graphs | compile: how the network runs on CUDA (auto: see auto_mode)
    channels_last: bool = False  # network weights and inputs channels-last on CUDA
    checkpointing: bool = False  # gradient checkpointing for solvers that backpropagate (DPS memory)
    schedule: str = "karras"  # karras | vp_uniform | vp_quadratic | vp_sde (diffrecon.schedule)
    batch_size: int | None = None  # None: as many samples per batch as memory allows
    keep_samples: int = 16  # samples stored in the result
    preview_interval: float = 0.25  # seconds between previews
    on_divergence: str = "sample"  # sample | all | continue: what a diverged sample stops (diffrecon.guard)
    retry_on_divergence: bool = False  # once, with a smaller guidance weight (guard.retry_config)
    use_calibration: bool = True  # scale the std by a stored calibration of this setting (diffrecon calibrate)
    warm_start: str = "none"  # none | tv: start from the TV reconstruction noised to sigma_start (warm_start.py)
    sigma_start: float | None = None  # warm start level in the prior's units; None: from the error estimate
    prior_fit: bool = True  # measure the prior-fit indicator before and after the run (prior_fit.py)
    weight_choice: Mapping[str, Any] | None = None  # how the weight was chosen (weights.py), for the provenance
    preset: str = "full"  # the quality preset (presets.py) solver, steps and params came from, unless overridden

    @property
    def recipe(self) -> Recipe:
        """The half that decides the answer, checked (InputError naming the setting)."""
        return Recipe(**{k: getattr(self, k) for k in RECIPE_KEYS})

    @property
    def runtime(self) -> RuntimeOptions:
        """The half that decides how it runs, checked."""
        return RuntimeOptions(**{k: getattr(self, k) for k in RUNTIME_KEYS})

    @classmethod
    def from_preset(cls, preset: str, solver: str | None = None, steps: int | None = None,
                    params: Mapping[str, Any] | None = None, warm_start: str | None = None,
                    **fields: Any) -> "RunConfig":
        """The settings of the quality preset ``preset`` with the solver, steps, params and warm
        start given (not None) in place of its own (:func:`.presets.resolve`), and ``fields``."""
        from .presets import resolve

        return cls(**resolve(preset, solver, steps, params, warm_start), **fields)

    @classmethod
    def from_parts(cls, recipe: Recipe, runtime: RuntimeOptions | None = None) -> "RunConfig":
        parts = {**recipe.to_dict(), **(runtime or RuntimeOptions()).to_dict()}
        return cls(**parts)

    def to_dict(self) -> dict[str, Any]:
        """The recipe's and the runtime's dicts in one (their keys never overlap), checked."""
        return {**self.recipe.to_dict(), **self.runtime.to_dict()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "the settings") -> "RunConfig":
        """The inverse of :meth:`to_dict` (missing keys take their defaults), checked."""
        _unknown_keys(where, data, RECIPE_KEYS + RUNTIME_KEYS)
        return cls.from_parts(Recipe.from_dict({k: v for k, v in data.items() if k in RECIPE_KEYS}, where),
                              RuntimeOptions.from_dict({k: v for k, v in data.items() if k in RUNTIME_KEYS}, where))
