"""Problem presets: every forward model a measurement can be made with, in one registry.

Read by ``diffrecon demo`` (:mod:`diffrecon.demo`), ``diffrecon simulate``
(:func:`diffrecon.io.importers.simulate`), re-simulation (:mod:`diffrecon.resimulate`) and the
window (how a measurement is shown). :data:`FORWARD_MODELS` holds the facts of each operator kind a
file can store (display, changeable sampling); :data:`PROBLEMS` the named presets (operator
builder, typed options, demo units and noise). Adding a forward model: see docs/architecture.md.
"""
from __future__ import annotations

from typing import Any, Mapping

from ..errors import InputError
from .base import Demo, Display, ForwardModel, Option, Problem, Resampling, Setting
from .presets import FORWARD_MODELS, PROBLEMS


def problem(name: str) -> Problem:
    """The preset ``name``; an unknown one is refused with the list of valid ones."""
    try:
        return PROBLEMS[name]
    except (KeyError, TypeError):
        raise InputError(f"Unknown problem {name!r}; valid problems are {', '.join(PROBLEMS)}.") from None


def forward_model(kind: str) -> ForwardModel:
    """The facts of operator kind ``kind`` (a kind without an entry: shown as an image, no resampling)."""
    return FORWARD_MODELS.get(kind) or ForwardModel(kind)


def display_of(measurement_or_kind) -> Display:
    """How the window shows a measurement (or a measurement of an operator kind)."""
    kind = measurement_or_kind if isinstance(measurement_or_kind, str) else measurement_or_kind.operator.kind
    return forward_model(kind).display


def demo_names() -> tuple[str, ...]:
    """The presets ``diffrecon demo`` makes, in order."""
    return tuple(name for name, p in PROBLEMS.items() if p.demo is not None)


def simulate_names() -> tuple[str, ...]:
    """The presets ``diffrecon simulate --operator`` accepts, in order."""
    return tuple(name for name, p in PROBLEMS.items() if p.simulate)


def simulate_options() -> dict[str, dict[str, Any]]:
    """``{preset: {option: default}}`` of the presets ``diffrecon simulate`` accepts."""
    return {name: PROBLEMS[name].defaults for name in simulate_names()}


def options_help(name: str) -> str:
    """One line naming the options of ``name`` with their defaults and valid values."""
    return "; ".join(f"{o.name}={o.default} ({o.valid_text()})" for o in problem(name).options) or "no options"


def parse_options(name: str, texts: Mapping[str, str]) -> dict[str, Any]:
    """Command-line ``{key: text}`` typed by the options of ``name``; unknown keys stay text (the
    build then names them with the valid ones)."""
    p = problem(name)
    known = {o.name: o for o in p.options}
    return {key: known[key].parse(text, name) if key in known else text for key, text in texts.items()}


def build(name: str, image_shape, options: Mapping[str, Any] | None = None, *, noise: float = 0.0, seed: int = 0,
          pixel_size: float = 1.0):
    """The operator of preset ``name`` on ``image_shape`` ``(C, H, W)`` with the checked ``options``."""
    p = problem(name)
    shape = tuple(int(s) for s in image_shape)
    if p.single_channel and shape[0] != 1:
        raise InputError(f"Simulated {name} needs a single-channel image; this one has {shape[0]} channels.")
    return p.build(shape, p.resolve(options), noise=float(noise), seed=int(seed), pixel_size=float(pixel_size))


__all__ = [
    "Demo", "Display", "ForwardModel", "Option", "Problem", "Resampling", "Setting", "FORWARD_MODELS", "PROBLEMS",
    "build", "demo_names", "display_of", "forward_model", "options_help", "parse_options", "problem",
    "simulate_names", "simulate_options",
]
