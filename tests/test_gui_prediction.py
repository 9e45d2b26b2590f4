"""The prediction of time, network evaluations and memory, offscreen: it appears off the GUI
thread while the window stays responsive, follows settings changes once they settle, comes from
the real engine's plan, is made once when the window is first shown, and a run cancels a probe in
flight within one probe step (a shown prediction stays when none is in flight)."""
import os

os.environ["QT_QPA_PLATFORM"] = "offscreen"

import dataclasses  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

import pytest  # noqa: E402

pytest.importorskip("PySide6")
from PySide6 import QtCore  # noqa: E402

from gui_windows import (CountingPlan, fake_plan, make_denoise16_window, make_shown_window,  # noqa: E402,F401,F811
                         make_window_without_measurement)
from qt_latency import event_loop_gaps  # noqa: E402
from diffrecon import engine  # noqa: E402
from diffrecon.demo import make_demo  # noqa: E402
from diffrecon.solvers import SOLVERS, SolverInfo, Step  # noqa: E402
from diffrecon.solvers._common import param  # noqa: E402

STEP_SECONDS = 0.25


@dataclasses.dataclass(frozen=True)
class _SlowParams:
    unused: float = param(1.0, lo=0.0, hi=2.0, help="no effect")


def test_prediction_appears_in_the_panel_and_event_loop_keeps_200ms_latency(qtbot, make_shown_window):
    w = make_shown_window(plan_fn=fake_plan(delay=0.8))
    w.plan_panel.auto = False
    w.plan_panel.timer.stop()
    qtbot.wait(300)  # the first paint of the freshly shown window is not what is measured
    with event_loop_gaps() as gaps:
        qtbot.mouseClick(w.plan_panel.button, QtCore.Qt.MouseButton.LeftButton)
        assert w.plan_panel.is_busy() and "Predicting" in w.plan_panel.text.text()
        qtbot.waitUntil(lambda: w.plan_panel.planned is not None, timeout=10000)
    assert len(gaps) > 20 and max(gaps[1:]) < 0.2  # the window ran while the probe slept 0.8 s
    text = w.plan_panel.text.text()
    assert "≈ 12.5 s on cpu" in text and f"{7 * 3 * 2} network evaluations" in text and "3.0 GiB" in text


def test_settings_change_triggers_one_debounced_prediction_with_the_new_settings(qtbot, make_shown_window):
    calls = []

    def plan(m, config):
        calls.append(config.steps)
        return fake_plan()(m, config)

    w = make_shown_window(plan_fn=plan)
    qtbot.waitUntil(lambda: w.plan_panel.planned is not None, timeout=5000)
    calls.clear()
    for steps in (5, 6, 7):
        w.solver.steps.setValue(steps)
    qtbot.waitUntil(lambda: bool(calls) and not w.plan_panel.is_busy(), timeout=5000)
    qtbot.wait(100)
    assert calls == [7]
    assert f"{7 * 7 * 2} network evaluations" in w.plan_panel.text.text()


def test_real_engine_plan_reports_nfe_from_solver_info(qtbot, make_shown_window):
    from diffrecon.engine import plan
    from diffrecon.solvers import get_solver

    w = make_shown_window(plan_fn=plan)
    w.predict()
    qtbot.waitUntil(lambda: w.plan_panel.planned is not None, timeout=30000)
    planned = w.plan_panel.planned
    assert planned.nfe_per_sample == 3 * get_solver("dps").evaluations_per_step()
    assert planned.predicted_seconds > 0 and planned.predicted_peak_bytes is None
    assert f"{planned.nfe_per_sample * 2} network evaluations" in w.plan_panel.text.text()


def test_time_is_predicted_once_off_the_gui_thread_when_the_window_is_first_shown(qtbot, make_denoise16_window):
    plan = CountingPlan(seconds=400.0)
    w = make_denoise16_window(plan)
    w.plan_panel.timer.stop()  # no debounced request: the prediction must come from showing the window
    assert plan.calls == 0
    w.show()
    qtbot.waitUntil(lambda: w.plan_panel.planned is not None, timeout=5000)
    qtbot.wait(100)
    assert plan.calls == 1 and plan.threads[0] is not threading.main_thread()
    assert "≈ 6.7 min on cpu" in w.plan_panel.text.text()
    w.hide()
    w.show()  # showing again does not probe again
    qtbot.wait(100)
    assert plan.calls == 1


def test_reconstruct_cancels_a_prediction_in_flight_within_one_probe_step(qtbot, make_window_without_measurement,
                                                                          monkeypatch):
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

    w = make_window_without_measurement(plan_fn, engine_run)
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


def test_cancel_with_no_probe_in_flight_keeps_the_shown_prediction(qtbot, make_window_without_measurement):
    w = make_window_without_measurement()
    w.set_measurement(make_demo("denoise", size=16))
    w.predict()
    qtbot.waitUntil(lambda: w.plan_panel.planned is not None and not w.plan_panel.is_busy(), timeout=5000)
    shown = w.plan_panel.text.text()
    assert "≈ 1.0 s on cpu" in shown
    assert w.plan_panel.cancel() is False
    assert w.plan_panel.text.text() == shown and w.plan_panel.planned.predicted_seconds == 1.0
