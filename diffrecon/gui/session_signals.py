"""The one adapter between the Qt-free session and the widgets: each session event becomes a Qt
signal (queued to the GUI thread whatever thread the session changed in), and
:func:`connect_panels` is where the window's panels subscribe to them."""
from __future__ import annotations

from pathlib import Path

from PySide6 import QtCore

from ..errors import DiffreconError
from ..session import MeasurementChanged, PlanChanged, RecipeChanged, ResultChanged, Session


class SessionSignals(QtCore.QObject):
    measurement_changed = QtCore.Signal(object)  # session.MeasurementChanged
    result_changed = QtCore.Signal(object)  # session.ResultChanged
    recipe_changed = QtCore.Signal(object)  # session.RecipeChanged
    plan_changed = QtCore.Signal(object)  # session.PlanChanged

    def __init__(self, session: Session, parent: QtCore.QObject | None = None):
        super().__init__(parent)
        self._routes = {MeasurementChanged: self.measurement_changed, ResultChanged: self.result_changed,
                        RecipeChanged: self.recipe_changed, PlanChanged: self.plan_changed}
        self.unsubscribe = session.subscribe(self._on_event)

    def _on_event(self, event) -> None:
        self._routes[type(event)].emit(event)


def connect_panels(w) -> None:
    """The window's panels listen to the session (``w.events``): a new panel adds one line here."""
    e = w.events
    e.measurement_changed.connect(w._stop_run_of_other_measurement)
    e.measurement_changed.connect(lambda ev: w.forward.set_measurement(ev.measurement)
                                  if ev.origin in ("file", "demo") else None)
    e.measurement_changed.connect(lambda ev: w.forward.set_import_note(ev.note)
                                  if ev.origin in ("file", "demo") else None)
    e.measurement_changed.connect(lambda ev: w.view.show_measurement(ev.measurement, w.session.direct_reconstruction))
    e.measurement_changed.connect(lambda ev: w.banner.clear())
    e.measurement_changed.connect(lambda ev: w.profile.clear())  # the old result's profile would read as the new one's
    e.measurement_changed.connect(lambda ev: _load_tree(w.tree, ev))
    e.measurement_changed.connect(lambda ev: _offer_solvers(w, ev))
    e.measurement_changed.connect(lambda ev: _unpin_off_grid(w, ev))
    e.measurement_changed.connect(lambda ev: _announce(w, ev))
    e.result_changed.connect(lambda ev: w.view.show_result(ev.result) if ev.result is not None else None)
    e.result_changed.connect(lambda ev: w.metrics.set_metrics({}) if ev.result is None else _show_metrics(w, ev))
    e.result_changed.connect(lambda ev: w.roi.clear() if ev.result is None else w.roi.set_maps(w.view.mean, w.view.std))
    e.result_changed.connect(lambda ev: w.pixel_label.clear() if ev.result is None else
                             w.profile.set_data(w.view.mean, w.view.std, w.view.truth, ev.result.units))
    e.result_changed.connect(lambda ev: w._show_outcome(ev.result, ev.from_file) if ev.result is not None else None)
    e.recipe_changed.connect(lambda ev: w.solver.set_config(ev.config))


def _load_tree(tree, ev: MeasurementChanged) -> None:
    path, m = ev.path, ev.measurement
    if path is not None and str(path).lower().endswith((".h5", ".hdf5", ".nxs")):
        tree.load(path)
    elif m.source is not None and Path(m.source).exists() and ev.origin != "derived":
        tree.load(m.source)


def _offer_solvers(w, ev: MeasurementChanged) -> None:
    try:
        w.solver.set_operator(w.session.operator())
    except DiffreconError as err:
        w.report_error(str(err))


def _unpin_off_grid(w, ev: MeasurementChanged) -> None:
    shape = tuple(w.view.panels["mean"].empty_shape or ev.measurement.image_shape[-2:])
    if w.view.ab.reset_for_image(shape):
        w.log("Unpinned A: it is not on the new measurement's pixel grid.")


def _announce(w, ev: MeasurementChanged) -> None:
    m = ev.measurement
    if ev.origin in ("derived", "original"):
        w.show_message(f"Using {m.title}." if ev.origin == "derived" else "Using the file's measurement again.")
        w.log(f"Measurement: {m.title}")
    else:
        name = ev.path.name if ev.path else (m.title or "demo")
        w.setWindowTitle(f"diffrecon — {name}")
        w.show_message(f"Opened {name}: {m.operator.kind}, image {' × '.join(map(str, m.image_shape))}."
                       + (f" {ev.note}" if ev.note else ""))
        if ev.note:
            w.log(f"{name}: {ev.note}")
    w._update_enabled()


def _show_metrics(w, ev: ResultChanged) -> None:
    from ..guard import metric_notes

    r = ev.result
    w.metrics.set_metrics(dict(r.metrics), {"samples": r.n_samples}, metric_notes(r))
