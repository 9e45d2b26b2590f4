"""The shapes of the problem registry: a forward model's facts, a named problem preset, their options.

A :class:`ForwardModel` holds what is true of every measurement of one operator kind (the kind a
file stores): how the window shows the measurement (:class:`Display`) and which sampling settings
can be changed afterwards (:class:`Resampling`). A :class:`Problem` is a named way of making a
measurement of such a kind from an image: its operator builder, its typed options (what
``diffrecon simulate --option`` accepts) and, for the demos, its units and noise (:class:`Demo`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from ..errors import InputError


@dataclass(frozen=True)
class Option:
    """One option of a problem: its type, default and valid values (inclusive unless ``open_*``)."""

    name: str
    default: Any
    kind: type = float  # int | float | str
    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False
    choices: tuple = ()
    optional: bool = False  # None means "automatic"
    help: str = ""

    def valid_text(self) -> str:
        if self.choices:
            text = ", ".join(map(str, self.choices[:-1])) + f" or {self.choices[-1]}" if len(self.choices) > 1 \
                else str(self.choices[0])
        else:
            what = "integers" if self.kind is int else "finite numbers"
            lo = "" if self.low is None else f"{'>' if self.open_low else '>='} {self.low:g}"
            hi = "" if self.high is None else f"{'<' if self.open_high else '<='} {self.high:g}"
            text = " and ".join([t for t in (lo, hi) if t]) or ""
            text = f"{what} {text}".strip()
        return text + (", or none (automatic)" if self.optional else "")

    def parse(self, text: str, problem: str) -> Any:
        """``text`` (a command-line value) as this option's type; refused with one sentence."""
        if self.kind is str:
            return text
        if self.optional and text.strip().lower() in ("none", "auto"):
            return None
        try:
            return int(text) if self.kind is int else float(text)
        except ValueError:
            want = "an integer" if self.kind is int else "a number" + (" or none" if self.optional else "")
            raise InputError(f"--option {self.name}={text}: {self.name} of {problem} must be {want}.") from None

    def check(self, value: Any, problem: str) -> Any:
        """``value`` if it is valid for this option (ints given as floats are accepted when whole)."""
        if value is None and self.optional:
            return None
        ok = True
        if self.kind is str:
            ok = isinstance(value, str)
        elif isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            ok = False
        else:
            if self.kind is int:
                ok = math.isfinite(value) and float(value) == int(value)
                value = int(value) if ok else value
            else:
                ok = math.isfinite(value)
                value = float(value)
            if ok and self.low is not None:
                ok = value > self.low if self.open_low else value >= self.low
            if ok and self.high is not None:
                ok = value < self.high if self.open_high else value <= self.high
        if ok and self.choices:
            ok = value in self.choices
        if not ok:
            raise InputError(f"Option {self.name}={value} of {problem} is invalid; valid values are "
                             f"{self.valid_text()}.")
        return value


@dataclass(frozen=True)
class Demo:
    """How ``diffrecon demo`` makes this problem: phantom scale and units, pixel size, relative noise."""

    title: str
    scale: float  # physical units per phantom unit
    units: str
    pixel_size: float
    pixel_unit: str
    noise_ref: str  # "max" | "rms" | "range": what the relative noise level refers to
    noise_rel: float
    options: Mapping[str, Any] = field(default_factory=dict)  # overrides of the problem's defaults
    size: int = 128  # default image side


@dataclass(frozen=True)
class Display:
    """How the window shows a measurement of this kind: ``mode`` is ``image`` (y in the image's
    units), ``sinogram`` or ``kspace`` (complex kept, shown as log magnitude first)."""

    title: str = "Measurement y"
    direct_title: str = "Direct reconstruction"
    mode: str = "image"

    @property
    def complex_view(self) -> str | None:
        """The first view of complex data (None: magnitude)."""
        return "log magnitude" if self.mode == "kspace" else None

    @property
    def in_image_units(self) -> bool:
        return self.mode == "image"


@dataclass(frozen=True)
class Setting:
    """One editable sampling parameter, with the file's value and the valid range (inclusive)."""

    name: str  # acceleration | center_fraction | missing_fraction | views
    label: str
    value: float | None  # the file's value; None: not determined (centre fraction of a random mask)
    low: float
    high: float
    integer: bool = False
    optional: bool = False  # blank means "automatic"
    help: str = ""


@dataclass(frozen=True)
class Resampling:
    """Changing the sampling of a stored measurement of one kind (see :mod:`diffrecon.resimulate`).

    ``settings(spec)``: the editable settings (empty: none); ``refused(spec)``: why, without a
    ground truth, nothing can be re-simulated; ``apply(spec, values, mask_kind, seed)``: the new
    operator arrays and a phrase saying what was done; ``from_data(spec)``: True when the file's
    own ``y`` holds all the new pattern measures (then ``y' = M' y``, see ``restrict``).
    """

    settings: Callable[..., tuple[Setting, ...]]
    refused: Callable[..., str]
    apply: Callable[..., tuple[dict, str]]
    from_data: Callable[..., bool] = lambda spec: False
    restrict: Callable[..., Any] | None = None  # (y, new_arrays) -> y' where from_data holds
    mask_kinds: tuple[str, ...] = ()  # choices of how the new mask is drawn, if any


@dataclass(frozen=True)
class ForwardModel:
    """What holds for every measurement of one operator kind."""

    kind: str
    display: Display = Display()
    resampling: Resampling | None = None


@dataclass(frozen=True)
class Problem:
    """A named problem preset: ``build(image_shape, options, *, noise, seed, pixel_size)`` makes its
    operator from the checked ``options``; ``simulate``: offered by ``diffrecon simulate``."""

    name: str
    kind: str  # the operator kind it builds (a key of FORWARD_MODELS)
    build: Callable[..., Any]
    options: tuple[Option, ...] = ()
    demo: Demo | None = None
    simulate: bool = True
    single_channel: bool = False

    def option(self, name: str) -> Option:
        for o in self.options:
            if o.name == name:
                return o
        raise InputError(f"Option {name!r} does not apply to {self.name}; valid options are "
                         f"{', '.join(o.name for o in self.options) or 'none'}.")

    @property
    def defaults(self) -> dict[str, Any]:
        return {o.name: o.default for o in self.options}

    def resolve(self, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The defaults updated by ``options``, each checked; unknown names are refused."""
        given = dict(options or {})
        for name in sorted(given):
            self.option(name)
        return {o.name: o.check(given.get(o.name, o.default), self.name) for o in self.options}
