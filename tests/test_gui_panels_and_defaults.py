"""The panels before and between runs, and a new user's defaults, offscreen: empty image panels show no made-up axes, the corner tab opens on
the error map when there is a ground truth, and Reconstruct cancels a prediction in flight at
the probe's next solver step. Each test checks numbers."""
import os

os.environ["QT_QPA_PLATFORM"] = "offscreen"

import dataclasses  # noqa: E402
import re  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

pytest.importorskip("PySide6")
from PySide6 import QtCore  # noqa: E402

from diffrecon import engine  # noqa: E402
from diffrecon.demo import make_demo  # noqa: E402
from diffrecon.engine import Planned, RunConfig  # noqa: E402
from diffrecon.gui.main_window import MainWindow  # noqa: E402
from diffrecon.gui.result_view import ResultView  # noqa: E402
from diffrecon.solvers import SOLVERS, SolverInfo, Step  # noqa: E402
from diffrecon.solvers._common import param  # noqa: E402

FAST = RunConfig(prior="gaussian", steps=50, samples=2, device="cpu", solver="dps")
STEP_SECONDS = 0.25


def _no_plan(measurement, config):
    return Planned(device="cpu", batches=[config.samples], steps=config.steps, nfe_per_sample=config.steps,
                   predicted_peak_bytes=None, std_is_posterior=True, normalization=(1.0, 0.0), predicted_seconds=1.0)


@pytest.fixture
def make_window(qtbot, tmp_path):
    def make(plan_fn=_no_plan, engine_run=None):
        settings = QtCore.QSettings(str(tmp_path / "settings.ini"), QtCore.QSettings.Format.IniFormat)
        w = MainWindow(settings=settings, plan_fn=plan_fn, engine_run=engine_run)
        qtbot.addWidget(w)
        w.solver.set_config(FAST)
        return w
    return make


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


@dataclasses.dataclass(frozen=True)
class _SlowParams:
    unused: float = param(1.0, lo=0.0, hi=2.0, help="no effect")


def test_reconstruct_cancels_a_prediction_in_flight_within_one_probe_step(qtbot, make_window, monkeypatch):
    steps_done = []

    def slow(denoiser, op, y, sigmas, x_init, *, params, generator):
        n = len(sigmas) - 1
        for i in range(n):
            time.sleep(STEP_SECONDS)  # releases the GIL like a real probe's torch work
            steps_done.append(time.monotonic())
            yield Step(i, n, float(sigmas[i + 1]), x_init, x_init, i + 1)

    monkeypatch.setitem(SOLVERS, "slow", SolverInfo("slow", slow, _SlowParams, "slow", "test", posterior=True))

    def plan_fn(measurement, config, stop=None):  # the real engine.plan, on a solver of known step time
        return engine.plan(measurement, dataclasses.replace(config, solver="slow", params={}), probe_steps=40, stop=stop)

    def engine_run(measurement, config, *, stop):
        stop.wait(10)
        return
        yield

    w = make_window(plan_fn, engine_run)
    w.plan_panel.auto = False
    w.set_measurement(make_demo("denoise", size=16))
    w.predict()
    qtbot.waitUntil(lambda: len(steps_done) >= 2, timeout=10000)  # the probe is well under way
    clicked = time.monotonic()
    qtbot.mouseClick(w.run_button, QtCore.Qt.MouseButton.LeftButton)
    assert w.is_running()
    qtbot.waitUntil(lambda: not w.plan_panel.is_busy(), timeout=5000)
    ended = time.monotonic()
    after = [t for t in steps_done if t > clicked]
    assert len(after) <= 1 and len(steps_done) < 10  # the probe asked for 40 steps
    assert ended - clicked < 2 * STEP_SECONDS + 0.5
    qtbot.wait(50)
    assert w.plan_panel.planned is None and "cancelled" in w.plan_panel.text.text()
    w.stop_run()
    w.worker.wait(5000)


def test_cancel_with_no_probe_in_flight_keeps_the_shown_prediction(qtbot, make_window):
    w = make_window()
    w.set_measurement(make_demo("denoise", size=16))
    w.predict()
    qtbot.waitUntil(lambda: w.plan_panel.planned is not None and not w.plan_panel.is_busy(), timeout=5000)
    shown = w.plan_panel.text.text()
    assert "≈ 1.0 s on cpu" in shown
    assert w.plan_panel.cancel() is False
    assert w.plan_panel.text.text() == shown and w.plan_panel.planned.predicted_seconds == 1.0


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


def test_memory_read_out_follows_the_run_device_with_auto_and_a_gpu_display_name(qtbot, make_window):
    planned_seen = []

    def engine_run(measurement, config, *, stop):
        # the engine names the device for people ("cuda:0 (NVIDIA H200)"), not for torch.device
        yield Planned(device="cuda:0 (NVIDIA H200)", batches=[2], steps=50, nfe_per_sample=50,
                      predicted_peak_bytes=None, std_is_posterior=True, normalization=(1.0, 0.0))
        planned_seen.append(True)
        stop.wait(10)

    w = make_window(engine_run=engine_run)
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


def test_a_new_users_window_starts_on_the_engines_default_solver_and_settings(qtbot, tmp_path):
    settings = QtCore.QSettings(str(tmp_path / "fresh.ini"), QtCore.QSettings.Format.IniFormat)
    w = MainWindow(settings=settings, plan_fn=_no_plan)
    qtbot.addWidget(w)
    shown, default = w.solver.config(), RunConfig()
    assert default.solver == "diffpir" and w.solver.solver_name() == "diffpir"  # not the registry's first (dps)
    assert (shown.steps, shown.samples, shown.seed, shown.prior, shown.device) == \
        (default.steps, default.samples, default.seed, default.prior, default.device)
    assert shown.params["lam"] == 7.0  # the form shows DiffPIR's parameters (the paper's defaults)


def test_windows_leave_cycle_collection_to_the_gui_thread(qtbot, make_window):
    import gc
    import threading

    from diffrecon.gui import gc_guard

    w = make_window()
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
