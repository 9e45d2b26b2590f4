"""The window without traps: export names and maps, the wheel over Setup, what is visible at
1600 x 1000, precision, Stop, stale numbers, recent files, the run log and the solver warnings."""
from __future__ import annotations

import dataclasses
import os
import re
import threading
import time

import numpy as np
import pytest

pytest.importorskip("PySide6")
from PySide6 import QtCore, QtGui, QtWidgets  # noqa: E402

from diffrecon.demo import make_demo  # noqa: E402
from diffrecon.engine import Planned, Progress, RunConfig, run  # noqa: E402
from diffrecon.errors import InputError  # noqa: E402
from diffrecon.gui.export import resolve_target  # noqa: E402
from diffrecon.gui.main_window import MainWindow  # noqa: E402
from diffrecon.gui.solver_panel import FULL_NAME_ROLE  # noqa: E402
from diffrecon.io import write_measurement  # noqa: E402
from diffrecon.operators import build_operator  # noqa: E402
import diffrecon.priors as priors  # noqa: E402
from diffrecon.priors import fitted  # noqa: E402

FAST = RunConfig(prior="gaussian", steps=10, samples=2, device="cpu", solver="diffpir")
STD_PNG = "Posterior std, PNG with colour bar (*.png)"


@pytest.fixture
def window(qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFRECON_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(fitted, "_memory", {})
    monkeypatch.setattr(priors, "FIT_PHANTOMS", 8)  # the fit's size is not the point here
    settings = QtCore.QSettings(str(tmp_path / "settings.ini"), QtCore.QSettings.Format.IniFormat)

    def make(engine_run=None):
        w = MainWindow(settings=settings, engine_run=engine_run,
                       plan_fn=lambda m, c, stop=None: Planned("cpu", [c.samples], c.steps, c.steps, None, True,
                                                               (1.0, 0.0), predicted_seconds=1.0))
        qtbot.addWidget(w)
        w.plan_panel.auto = False
        w.solver.set_config(FAST)
        w.set_measurement(make_demo("denoise", size=16))
        return w
    return make


# ------------------------------------------------------------------------------ export
def test_export_name_without_suffix_gets_the_filters_and_a_mismatch_keeps_the_chosen_map(tmp_path):
    assert resolve_target(tmp_path / "out", STD_PNG) == (tmp_path / "out.png", "std")
    assert resolve_target(tmp_path / "out.v2", STD_PNG) == (tmp_path / "out.v2.png", "std")
    assert resolve_target(tmp_path / "out.tif", STD_PNG) == (tmp_path / "out.tif", "std")  # std, as TIFF
    with pytest.raises(InputError, match="out.h5 has the suffix .h5, but the chosen export is the std map as PNG"):
        resolve_target(tmp_path / "out.h5", STD_PNG)
    with pytest.raises(InputError, match="whole result"):
        resolve_target(tmp_path / "out.png", "HDF5 result (*.h5)")


def test_export_failures_of_any_kind_are_shown_in_the_window(window, qtbot, tmp_path, monkeypatch):
    w = window()
    w.start_run()
    assert w.wait_for_run(60000) and w.result is not None
    assert not w.export(tmp_path / "missing" / "m.tif", "mean")
    assert "m.tif" in w.message_label.text() and w.message_label.styleSheet()

    def broken(*a, **k):
        raise ValueError("tifffile cannot write this")

    monkeypatch.setattr("diffrecon.session.model.export_map", broken)
    assert not w.export(tmp_path / "e.tif", "error")
    assert "tifffile cannot write this" in w.message_label.text()
    # the run's end is in the log: time, batches, warnings
    log = w.log_view.toPlainText()
    assert re.search(r"Run finished: 2 of 2 samples in [\d.]+ s, batches \[2\], NFE 20, \d+ warnings?\.", log)


# ------------------------------------------------------------------------------ setup panel
def _wheel(widget: QtWidgets.QWidget, dy: int = -120) -> None:
    pos = QtCore.QPointF(widget.width() / 2, widget.height() / 2)
    ev = QtGui.QWheelEvent(pos, widget.mapToGlobal(pos), QtCore.QPoint(), QtCore.QPoint(0, dy),
                           QtCore.Qt.MouseButton.NoButton, QtCore.Qt.KeyboardModifier.NoModifier,
                           QtCore.Qt.ScrollPhase.NoScrollPhase, False)
    QtWidgets.QApplication.sendEvent(widget, ev)


def test_wheel_scrolls_setup_and_changes_a_field_only_with_focus(window, qtbot):
    w = window()
    w.resize(1600, 700)  # short enough that Setup scrolls
    w.show()
    qtbot.waitExposed(w)
    scroll = w.setup_dock.findChild(QtWidgets.QScrollArea)
    bar = scroll.verticalScrollBar()
    assert bar.maximum() > 0
    steps_before, seed_box = w.solver.steps.value(), w.solver.seed
    _wheel(w.solver.steps)
    _wheel(seed_box)
    assert w.solver.steps.value() == steps_before and seed_box.value() == 0
    assert bar.value() > 0  # the panel scrolled instead
    w.solver.steps.setFocus()
    qtbot.waitUntil(w.solver.steps.hasFocus, timeout=2000)
    _wheel(w.solver.steps, 120)
    assert w.solver.steps.value() == steps_before + 1


def test_prior_solver_and_budget_visible_without_scrolling_at_1600_by_1000(window, qtbot):
    w = window()
    w.resize(1600, 1000)
    w.show()
    qtbot.waitExposed(w)
    viewport = w.setup_dock.findChild(QtWidgets.QScrollArea).viewport()
    for field in (w.solver.solver_box, w.solver.prior, w.solver.steps, w.solver.samples):
        bottom = field.mapTo(viewport, QtCore.QPoint(0, field.height())).y()
        assert 0 < bottom <= viewport.height(), field
    # solver names are never cut: the closed box shows the short name whole, the list and the
    # label under the box the full one
    box, view = w.solver.solver_box, w.solver.solver_box.view()
    metrics = box.fontMetrics()
    for row in range(box.count()):
        assert metrics.horizontalAdvance(box.itemText(row)) < box.width() - 30, box.itemText(row)
    longest = max(range(box.count()), key=lambda r: len(box.itemData(r, FULL_NAME_ROLE)))
    option = QtWidgets.QStyleOptionViewItem()
    view.itemDelegate().initStyleOption(option, box.model().index(longest, 0))
    assert option.text == box.itemData(longest, FULL_NAME_ROLE) and view.minimumWidth() >= view.sizeHintForColumn(0)
    assert w.solver.solver_info().title in w.solver.title.text()


def test_precision_shows_fp32_on_the_cpu_and_keeps_the_gpu_choice(window):
    w = window()
    w.solver.set_config(dataclasses.replace(FAST, precision="bf16", device="cpu"))
    assert w.solver.precision.currentText() == "fp32" and not w.solver.precision.isEnabled()
    assert w.solver.config().precision == "fp32"
    assert w.solver._gpu_precision == "bf16"


def test_ddnm_on_noisy_ct_has_no_obsolete_warning_but_pigdm_keeps_its_own(window):
    w = window()
    ct = make_demo("ct", size=32)
    assert ct.noise_sigma > 0
    w.solver.set_operator(build_operator(ct.operator))
    for name, warned in (("ddnm", False), ("pigdm", True)):
        w.solver.set_config(dataclasses.replace(FAST, solver=name, steps=50))
        assert ("amplifies" in w.solver.warning.text()) is warned, name


# ------------------------------------------------------------------------------ stop and stale numbers
def test_stop_before_any_sample_is_not_a_failure_and_old_metrics_are_cleared(window, qtbot):
    started = threading.Event()

    def engine_run(measurement, config, *, stop):
        yield Planned("cpu", [2], 50, 50, None, True, (1.0, 0.0))
        yield Progress(3, 50, 0, 2, 6, 0, 6, 0.3, 5.0)
        started.set()
        stop.wait(10)

    w = window(engine_run)
    w.metrics.set_metrics({"psnr": 31.0})
    w.pixel_label.setText("(3, 4) 0.5 ± 0.1")
    assert w.start_run()
    assert w.metrics.rowCount() == 0 and w.pixel_label.text() == ""
    qtbot.waitUntil(started.is_set, timeout=5000)
    qtbot.waitUntil(lambda: w.status.last_progress is not None, timeout=5000)
    qtbot.mouseClick(w.stop_button, QtCore.Qt.MouseButton.LeftButton)
    assert w.wait_for_run(10000)
    assert w.last_error == "" and "Stopped before any sample finished" in w.message_label.text()
    assert w.progress_label.text() == "stopped" and w.metrics.rowCount() == 0
    assert "Run stopped before any sample finished" in w.log_view.toPlainText()


def test_stop_with_finish_keeps_the_batch_in_progress_by_a_final_denoising_step(window, qtbot):
    prior = priors.load_prior("gaussian", (1, 16, 16))
    exact = prior.forward

    def slow(x, sigma):  # a few ms per evaluation, as a network's would be: Stop lands mid-batch
        time.sleep(0.004)
        return exact(x, sigma)

    prior.forward = slow

    def engine_run(measurement, config, *, stop, finish):
        yield from run(measurement, config, stop=stop, finish=finish, denoiser=prior)

    w = window(engine_run)
    w.solver.set_config(dataclasses.replace(FAST, steps=400))
    assert not w.finish_button.isEnabled()
    assert w.start_run()
    qtbot.waitUntil(lambda: w.status.last_progress is not None and w.status.last_progress.step >= 2, timeout=60000)
    assert w.finish_button.isEnabled()
    qtbot.mouseClick(w.finish_button, QtCore.Qt.MouseButton.LeftButton)
    assert w.wait_for_run(60000)
    r = w.result
    assert r is not None and r.n_samples == 2 and not r.complete and not r.std_is_posterior
    step, n = (int(v) for v in r.provenance["final_denoising_step"].split("/"))
    assert 2 <= step < n == 400
    assert np.isfinite(r.mean).all() and "final denoising step" in w.message_label.text()
    assert w.view.panels["std"].title() == "Spread (early finish, not posterior std)"
    assert w.view.panels["mean"].title() == f"Mean · 2 (final denoising step at {step}/{n})"


def test_recent_files_are_stored_with_absolute_paths(window, tmp_path, monkeypatch):
    w = window()
    write_measurement(tmp_path / "m.h5", make_demo("denoise", size=16))
    monkeypatch.chdir(tmp_path)
    assert w.open_file("m.h5")
    assert w.recent_files()[0] == str(tmp_path.resolve() / "m.h5") and os.path.isabs(w.recent_files()[0])
