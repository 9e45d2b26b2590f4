"""The Setup panel, offscreen: the noise level, the solver form (predicted NFE, deterministic
warnings, solvers the forward model cannot serve, network mode, checkpointing, schedule,
precision), the wheel over Setup, and what is visible at 1600 x 1000 without scrolling."""
import os

os.environ["QT_QPA_PLATFORM"] = "offscreen"

import dataclasses  # noqa: E402

import pytest  # noqa: E402

pytest.importorskip("PySide6")
from PySide6 import QtCore, QtGui, QtWidgets  # noqa: E402

from gui_windows import FAST_DIFFPIR, make_window, window  # noqa: E402,F401,F811 - fixtures
from diffrecon.demo import make_demo  # noqa: E402
from diffrecon.engine import RunConfig  # noqa: E402
from diffrecon.gui.solver_panel import FULL_NAME_ROLE  # noqa: E402
from diffrecon.operators import build_operator  # noqa: E402
from diffrecon.solvers import SOLVERS  # noqa: E402


def _wheel(widget: QtWidgets.QWidget, dy: int = -120) -> None:
    pos = QtCore.QPointF(widget.width() / 2, widget.height() / 2)
    ev = QtGui.QWheelEvent(pos, widget.mapToGlobal(pos), QtCore.QPoint(), QtCore.QPoint(0, dy),
                           QtCore.Qt.MouseButton.NoButton, QtCore.Qt.KeyboardModifier.NoModifier,
                           QtCore.Qt.ScrollPhase.NoScrollPhase, False)
    QtWidgets.QApplication.sendEvent(widget, ev)


def test_invalid_noise_level_disables_run_and_valid_one_reaches_the_measurement(window):
    window.forward.noise.setText("-1")
    assert not window.run_button.isEnabled() and window.forward.noise_error.isVisibleTo(window.forward)
    window.forward.noise.setText("0.05")
    assert window.run_button.isEnabled()
    edited = window.forward.edited_measurement()
    assert edited.noise_sigma == 0.05 and edited.operator.noise_sigma == 0.05


def test_solver_panel_predicts_nfe_and_warns_for_deterministic_solvers(window):
    panel = window.solver
    per_step = SOLVERS["dps"].evaluations_per_step()  # 1 at the paper's step, 2 with variance_correction
    assert panel.predicted_nfe() == 3 * 2 * per_step
    assert f"= {6 * per_step} network evaluations" in panel.cost.text()
    assert "point estimate" not in panel.warning.text() and "seed spread" not in panel.warning.text()
    panel.set_config(RunConfig(solver="direct", steps=3, samples=2))
    assert panel.is_deterministic() and panel.warning.isVisibleTo(panel) and "point estimate" in panel.warning.text()


def test_solvers_the_operator_cannot_serve_are_disabled_with_reason(window):
    class NoSvd:
        has_svd, kind = False, "fake"

    window.solver.set_operator(NoSvd())
    model = window.solver.solver_box.model()
    rows = {model.item(i).data(QtCore.Qt.ItemDataRole.UserRole): model.item(i) for i in range(model.rowCount())}
    assert not rows["ddrm"].isEnabled() and "SVD" in rows["ddrm"].toolTip()
    assert rows["dps"].isEnabled()


def test_solver_panel_carries_network_mode_and_checkpointing_to_the_run_and_settings(window, tmp_path):
    panel = window.solver
    panel.set_config(RunConfig(solver="dps", steps=3, samples=2, compile="compile", checkpointing=True))
    assert panel.compile.currentText() == "compile" and panel.checkpointing.isChecked()
    config = panel.config()
    assert (config.compile, config.checkpointing) == ("compile", True)
    settings = QtCore.QSettings(str(tmp_path / "s.ini"), QtCore.QSettings.Format.IniFormat)
    panel.save_settings(settings)
    panel.set_config(RunConfig(solver="dps", steps=3, samples=2))
    assert panel.compile.currentText() == "auto" and not panel.checkpointing.isChecked()
    panel.restore_settings(settings)
    assert (panel.config().compile, panel.config().checkpointing) == ("compile", True)


def test_solver_panel_schedule_reaches_the_run_settings_and_a_results_rerun(window, tmp_path):
    from diffrecon.session import config_from_provenance
    from diffrecon.schedule import SCHEDULES

    panel = window.solver
    assert [panel.schedule.itemText(i) for i in range(panel.schedule.count())] == list(SCHEDULES)
    panel.set_config(RunConfig(solver="diffpir", steps=3, samples=2, schedule="vp_quadratic"))
    assert panel.schedule.currentText() == "vp_quadratic" and panel.config().schedule == "vp_quadratic"
    settings = QtCore.QSettings(str(tmp_path / "s.ini"), QtCore.QSettings.Format.IniFormat)
    panel.save_settings(settings)
    panel.set_config(RunConfig(solver="diffpir", steps=3, samples=2))
    assert panel.config().schedule == "karras"
    panel.restore_settings(settings)
    assert panel.config().schedule == "vp_quadratic"
    assert config_from_provenance({"solver": "dps", "schedule": "vp_sde"}).schedule == "vp_sde"


def test_wheel_scrolls_setup_and_changes_a_field_only_with_focus(make_window, qtbot):
    w = make_window()
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


def test_prior_solver_and_budget_visible_without_scrolling_at_1600_by_1000(make_window, qtbot):
    w = make_window()
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


def test_precision_shows_fp32_on_the_cpu_and_keeps_the_gpu_choice(make_window):
    w = make_window()
    w.solver.set_config(dataclasses.replace(FAST_DIFFPIR, precision="bf16", device="cpu"))
    assert w.solver.precision.currentText() == "fp32" and not w.solver.precision.isEnabled()
    assert w.solver.config().precision == "fp32"
    assert w.solver._gpu_precision == "bf16"


def test_ddnm_on_noisy_ct_has_no_obsolete_warning_but_pigdm_keeps_its_own(make_window):
    w = make_window()
    ct = make_demo("ct", size=32)
    assert ct.noise_sigma > 0
    w.solver.set_operator(build_operator(ct.operator))
    for name, warned in (("ddnm", False), ("pigdm", True)):
        w.solver.set_config(dataclasses.replace(FAST_DIFFPIR, solver=name, steps=50))
        assert ("amplifies" in w.solver.warning.text()) is warned, name

