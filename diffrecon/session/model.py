"""The window's model without Qt: the current measurement (and the file's own one it may be
derived from), the run settings, the prediction and the result, with the operations a front end
offers on them. Changes reach subscribers as the plain events of :mod:`.events`."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import InputError
from ..io.export import export_map
from ..measurement import Measurement, Result
from .events import MeasurementChanged, PlanChanged, RecipeChanged, ResultChanged
from .opening import Opened, read_file

Subscriber = Callable[[Any], None]
#: Suffixes the whole result file is written to; any other export writes one map (io.export).
RESULT_SUFFIXES = (".h5", ".hdf5", ".nxs")
NO_RESULT = "There is no result to export yet; run a reconstruction first."


def config_from_provenance(prov: dict, runtime=None):
    """The settings that made a result: its recipe (:meth:`~diffrecon.engine.Recipe.from_provenance`)
    with ``runtime`` (default: the engine's runtime defaults, since where a result ran need not
    exist here); the engine's defaults when the provenance holds no valid recipe."""
    from ..engine import Recipe, RunConfig, RuntimeOptions

    try:
        recipe = Recipe.from_provenance(prov)
    except InputError:
        return RunConfig()
    return RunConfig.from_parts(recipe, runtime if runtime is not None else RuntimeOptions())


def direct_reconstruction(measurement: Measurement, op=None) -> np.ndarray:
    """The operator's own inverse (FBP, zero-filled, pseudo-inverse) as (C, H, W) numpy; ``op``
    the measurement's forward model where already built."""
    import torch

    from ..operators import build_operator

    op = op if op is not None else build_operator(measurement.operator)
    y = torch.as_tensor(np.asarray(measurement.y))[None].to(op.meas_dtype)
    with torch.no_grad():
        x = op.direct(y)[0]
    return x.detach().cpu().numpy()


class Session:
    """``subscribe(callback)`` to receive every event; the operations change the state and tell."""

    def __init__(self) -> None:
        self.measurement: Measurement | None = None  # the current one, derived or the file's
        self.file_measurement: Measurement | None = None  # what the file (or demo) held
        self.path: Path | None = None
        self.note = ""  # the importer's default choices, for the window to show
        self.config = None  # RunConfig of the last run or of an opened result
        self.planned = None
        self.result: Result | None = None
        self._operator = None  # (measurement, built operator), built on demand
        self._subscribers: list[Subscriber] = []

    # ------------------------------------------------------------------ events
    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call ``callback(event)`` on every change; returns the function that unsubscribes."""
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback) if callback in self._subscribers else None

    def _tell(self, event) -> None:
        for callback in list(self._subscribers):
            callback(event)

    # ------------------------------------------------------------------ measurement
    def open(self, path: str | Path, **options) -> Opened:
        """Open any supported file; a result file also restores its settings and result. ``options``
        go to the file's importer (:func:`.opening.read_file`)."""
        return self.use_opened(read_file(path, **options), path)

    def read_file(self, path: str | Path, **options) -> Opened:
        """What ``path`` holds read with the importer ``options``, without opening it (an import
        dialog's preview); :meth:`use_opened` then makes it current."""
        return read_file(path, **options)

    def use_opened(self, opened: Opened, path: str | Path) -> Opened:
        """Make what :meth:`read_file` read from ``path`` current, as :meth:`open` does."""
        if opened.measurement is None:
            raise InputError(f"{Path(path).name} holds a result without its measurement; open the measurement file.")
        self.set_measurement(opened.measurement, Path(path), note=opened.note)
        if opened.result is not None:
            self.set_config(config_from_provenance(opened.result.provenance))
            self.set_result(opened.result, from_file=True)
        return opened

    def set_measurement(self, m: Measurement, path: Path | None = None, origin: str = "file", note: str = "") -> None:
        """A new file's (or the demo's) measurement: the result and prediction of the old one go."""
        self.file_measurement, self.path, self.note = m, path, note
        self._replace(m, origin)

    def use(self, m: Measurement) -> None:
        """Make ``m`` current: a measurement derived from the file's (origin ``derived``), or the
        file's own one again (``original``)."""
        self._replace(m, "original" if m is self.file_measurement else "derived")

    def _replace(self, m: Measurement, origin: str) -> None:
        self.measurement, self.result, self.planned = m, None, None
        self._tell(MeasurementChanged(m, self.path, origin, self.note))
        self._tell(ResultChanged(None))

    def resimulate(self, values: dict, mask_kind: str = "random") -> Measurement:
        """Measure the file's image again with other sampling (:mod:`diffrecon.resimulate`) and use it."""
        from .. import resimulate as rs

        if self.file_measurement is None:
            raise InputError("Open a measurement before re-simulating it.")
        derived = rs.resimulate(self.file_measurement, values, mask_kind=mask_kind)
        self.use(derived)
        return derived

    def operator(self):
        """The current measurement's forward model, built once per measurement."""
        from ..operators import build_operator

        if self.measurement is None:
            raise InputError("Open a measurement first; there is no forward model yet.")
        if self._operator is None or self._operator[0] is not self.measurement:
            self._operator = (self.measurement, build_operator(self.measurement.operator))
        return self._operator[1]

    def compatible_solvers(self) -> dict[str, str | None]:
        """Every registered solver, with the reason it cannot serve this forward model (None: it can)."""
        from ..solvers import SOLVERS

        op = self.operator() if self.measurement is not None else None
        return {name: (info.unmet_need(op) if op is not None else None) for name, info in SOLVERS.items()}

    def direct_reconstruction(self) -> np.ndarray:
        """The classical reconstruction (FBP, zero-filled, pseudo-inverse) of the current measurement."""
        if self.measurement is None:
            raise InputError("Open a measurement first; there is nothing to reconstruct.")
        return direct_reconstruction(self.measurement, self.operator())

    # ------------------------------------------------------------------ settings, plan, result
    def set_config(self, config) -> None:
        """New settings from outside the form (a result's provenance): the form follows the event."""
        self.config = config
        self._tell(RecipeChanged(config))

    def remember_config(self, config) -> None:
        """The settings a run starts with, read from the form that shows them (no event)."""
        self.config = config

    def set_planned(self, planned) -> None:
        self.planned = planned
        self._tell(PlanChanged(planned))

    def set_result(self, result: Result | None, from_file: bool = False) -> None:
        self.result = result
        self._tell(ResultChanged(result, from_file))

    def export(self, path: str | Path, what: str = "mean", *, title: str | None = None,
               levels: tuple[float, float] | None = None, cmap: str = "viridis") -> Path:
        """Write ``what`` (mean, std, samples, error, or result) of the current result to ``path``:
        the whole result file for .h5/.hdf5/.nxs, else one map by :func:`diffrecon.io.export.export_map`."""
        if self.result is None:
            raise InputError(NO_RESULT)
        path = Path(path)
        if path.suffix.lower() in RESULT_SUFFIXES:
            from ..io import write_result

            write_result(path, self.result)
            return path
        return export_map(self.result, what, path, cmap=cmap, title=title, levels=levels)
