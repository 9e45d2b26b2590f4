"""The panels before and between runs, offscreen: empty image panels show no made-up axes, the
corner tab opens on the error map when there is a ground truth, the line profile's axes, the
memory read-out follows the run's device, a new user's window starts on the engine's defaults,
and windows leave cycle collection to the GUI thread. Each test checks numbers."""
import os

os.environ["QT_QPA_PLATFORM"] = "offscreen"

import dataclasses  # noqa: E402
import re  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

pytest.importorskip("PySide6")
from PySide6 import QtCore  # noqa: E402

from gui_windows import make_window_without_measurement, no_plan  # noqa: E402,F401,F811 - fixture

from diffrecon.demo import make_demo  # noqa: E402
from diffrecon.engine import Planned, RunConfig  # noqa: E402
from diffrecon.engine.presets import FAST as FAST_PRESET, overridden  # noqa: E402
from diffrecon.gui.main_window import MainWindow  # noqa: E402
from diffrecon.gui.result_view import ResultView  # noqa: E402

FAST = RunConfig(prior="gaussian", steps=50, samples=2, device="cpu", solver="dps")
STEP_SECONDS = 0.25


def _axes_shown(panel):
    return [panel.plot.getAxis(a).isVisible() for a in ("left", "bottom")] + [panel.colorbar.isVisible()]


def test_empty_result_panels_hide_axes_and_span_the_measurement_image_until_a_result(qtbot):
    view = ResultView()
    qtbot.addWidget(view)
    view.resize(900, 600)
    view.show()
    mean = view.panels["mean"]
    assert _axes_shown(mean) == [False, False, False] and mean.placeholder.isVisible()
    assert mean.placeholder.toPlainText() == "no result yet"
    view.show_measurement(make_demo("denoise", size=24))
    qtbot.wait(20)
    for key in ("mean", "std", "estimate", "error", "samples"):
        panel = view.panels[key]
        assert _axes_shown(panel) == [False, False, False] and panel.placeholder.isVisible(), key
        assert panel.empty_shape == (24, 24)
    (x0, x1), (y0, y1) = mean.plot.vb.viewRange()
    assert min(x1 - x0, y1 - y0) == pytest.approx(24, rel=0.02) and x0 <= 0.5 and y0 <= 0.5  # not -0.5..0.5
    assert (mean.placeholder.pos().x(), mean.placeholder.pos().y()) == (12.0, 12.0)
    assert _axes_shown(view.panels["direct"]) == [True, True, True]  # inputs have data at once
    view.show_statistics(np.ones((24, 24)), np.full((24, 24), 0.1), 1)
    assert _axes_shown(mean) == [True, True, True] and not mean.placeholder.isVisible()
    assert _axes_shown(view.panels["estimate"]) == [False, False, False]  # still empty
    view.begin_run(False)
    assert _axes_shown(mean) == [False, False, False] and mean.placeholder.isVisible()


def test_corner_tab_starts_on_error_with_ground_truth_and_on_samples_without(qtbot):
    view = ResultView()
    qtbot.addWidget(view)
    with_truth = make_demo("denoise", size=16)
    assert with_truth.ground_truth is not None
    view.show_measurement(with_truth)
    assert view.corner.tabText(view.corner.currentIndex()) == "Error" and view.corner.isTabEnabled(0)
    view.show_measurement(dataclasses.replace(with_truth, ground_truth=None))
    assert view.corner.tabText(view.corner.currentIndex()) == "Samples" and not view.corner.isTabEnabled(0)
    view.show_measurement(with_truth)
    assert view.corner.currentIndex() == 0


def test_line_profile_shows_axis_values_only_once_it_has_a_profile(qtbot):
    from diffrecon.gui.profile_panel import ProfilePanel
    from diffrecon.gui.image_panel import ImagePanel

    source = ImagePanel("mean")
    profile = ProfilePanel(source)
    qtbot.addWidget(source)
    qtbot.addWidget(profile)
    axis = profile.plot.getAxis("left")
    assert axis.style["showValues"] is False
    ramp = np.linspace(0, 1, 20, dtype=np.float32)
    mean = ramp[:, None] + ramp[None, :]  # rises along rows and columns, whatever the axis order
    source.set_image(mean)
    profile.set_data(mean, np.full_like(mean, 0.1), None)
    assert axis.style["showValues"] is True and profile.plot.getAxis("bottom").style["showValues"] is True
    assert profile.profiles()["mean"][-1] > profile.profiles()["mean"][0] + 0.5  # left to right up the ramp


def test_memory_read_out_follows_the_run_device_with_auto_and_a_gpu_display_name(
        qtbot, make_window_without_measurement):
    planned_seen = []

    def engine_run(measurement, config, *, stop):
        # the engine names the device for people ("cuda:0 (NVIDIA H200)"), not for torch.device
        yield Planned(device="cuda:0 (NVIDIA H200)", batches=[2], steps=50, nfe_per_sample=50,
                      predicted_peak_bytes=None, std_is_posterior=True, normalization=(1.0, 0.0))
        planned_seen.append(True)
        stop.wait(10)

    w = make_window_without_measurement(engine_run=engine_run)
    w.plan_panel.auto = False
    w.set_measurement(make_demo("denoise", size=16))
    assert w.start_run(dataclasses.replace(FAST, device="auto"))
    qtbot.waitUntil(lambda: bool(planned_seen), timeout=5000)
    qtbot.wait(50)
    assert w._device == "cpu"  # auto on a machine without a GPU
    w.memory_label.clear()
    w._on_memory_tick()  # raised on "auto" and on the display name before
    assert re.fullmatch(r"RAM [\d.]+ [MG]iB \(peak [\d.]+ [MG]iB\)", w.memory_label.text())
    w.stop_run()
    w.worker.wait(5000)


def test_a_new_users_window_starts_on_the_fast_preset_with_full_quality_one_click_away(qtbot, tmp_path):
    settings = QtCore.QSettings(str(tmp_path / "fresh.ini"), QtCore.QSettings.Format.IniFormat)
    w = MainWindow(settings=settings, plan_fn=no_plan)
    qtbot.addWidget(w)
    shown, fast, default = w.solver.config(), RunConfig.from_preset("fast"), RunConfig()
    assert shown.preset == "fast" and not w.solver.full_quality.isChecked()
    # before any run the maps do not claim a posterior: the fast preset's spread is a seed spread
    assert (w.view.panels["mean"].title(), w.view.panels["std"].title()) == ("Mean", "Std over samples")
    assert w.solver.solver_name() == fast.solver == FAST_PRESET["solver"] and shown.recipe == fast.recipe
    assert (shown.samples, shown.seed, shown.prior, shown.device) == \
        (default.samples, default.seed, default.prior, default.device)
    # the check box sits beside Reconstruct and switches to DiffPIR at 50 steps with its parameters
    assert w.solver.full_quality.parentWidget() is w.run_button.parentWidget()
    w.solver.full_quality.click()
    full = w.solver.config()
    assert (full.preset, full.solver, full.steps, full.params["lam"]) == ("full", "diffpir", 50, 7.0)
    # fast warm-starts from TV (a seed spread), full runs from noise (a posterior std)
    assert (shown.warm_start, full.warm_start) == ("tv", "none")
    assert w.solver.spread().kind == "posterior" and w.solver.warm_start.currentText() == "none"
    assert "50 steps" in w.solver.cost.text()
    w.solver.steps.setValue(20)  # an edit overrides the preset, which stays recorded
    assert w.solver.config().preset == "full" and overridden(w.solver.config().recipe) == ["steps"]
    w.solver.full_quality.click()
    assert w.solver.config().recipe == fast.recipe and w.solver.spread().kind == "seed"
    edited = next(f.name for f in dataclasses.fields(fast.recipe.params)
                  if type(f.default) is float and f.name not in FAST_PRESET["params"])
    w.solver.form.set_values({edited: 0.5 * getattr(fast.recipe.params, edited) + 0.25})  # an edit ...
    assert w.solver.config().recipe != fast.recipe
    w.solver.apply_preset("fast")  # ... does not stay when the preset is applied again
    assert w.solver.config().recipe == fast.recipe
    # the preset is kept with the settings
    w.solver.save_settings(settings)
    w2 = MainWindow(settings=settings, plan_fn=no_plan)
    qtbot.addWidget(w2)
    assert w2.solver.config().preset == "fast" and not w2.solver.full_quality.isChecked()


def test_windows_leave_cycle_collection_to_the_gui_thread(qtbot, make_window_without_measurement):
    import gc
    import threading

    from diffrecon.gui import gc_guard

    w = make_window_without_measurement()
    assert gc_guard._guard is not None and not gc.isenabled() and gc_guard._guard.timer.isActive()

    class Node:
        pass

    def make_cycles(n):
        for _ in range(n):
            a, b = Node(), Node()
            a.other, b.other = b, a

    gc.collect()
    worker = threading.Thread(target=make_cycles, args=(5000,))  # far past the gen-0 threshold
    worker.start()
    worker.join()
    assert gc.get_count()[0] > gc.get_threshold()[0]  # the worker's allocations collected nothing
    assert gc_guard._guard.collect() >= 10000  # the GUI thread's tick finds every node
    assert gc.get_count()[0] < gc.get_threshold()[0]
    assert w.isWindow()
