"""What a :class:`~diffrecon.session.Session` tells its subscribers. Plain dataclasses: a front
end turns them into its own notifications (the window into Qt signals, in one adapter)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..measurement import Measurement, Result


@dataclass(frozen=True)
class MeasurementChanged:
    """Another measurement is current. ``origin`` is ``file`` (opened), ``demo``, ``derived``
    (re-simulated from the file's) or ``original`` (the file's own one again); ``note`` names the choices an
    importer made for the user (slice, size, acceleration), empty for the project's own files."""

    measurement: Measurement
    path: Path | None
    origin: str
    note: str = ""


@dataclass(frozen=True)
class ResultChanged:
    """A result is current (a finished run, or one opened from a file), or none (``None``)."""

    result: Result | None
    from_file: bool = False


@dataclass(frozen=True)
class RecipeChanged:
    """The run settings (a :class:`~diffrecon.engine.RunConfig`) were replaced, e.g. by opening a
    result whose provenance made them."""

    config: Any


@dataclass(frozen=True)
class PlanChanged:
    """A prediction (:class:`~diffrecon.engine.Planned`) for the current settings, or ``None``
    when the settings changed and the old one no longer holds."""

    planned: Any


EVENTS = (MeasurementChanged, ResultChanged, RecipeChanged, PlanChanged)
