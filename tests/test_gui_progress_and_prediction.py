"""Progress and prediction, offscreen: the line-profile legend follows the theme, the first run's time
is predicted as soon as the window is shown (off the GUI thread), and the progress bar carries
the ETA, predicted before the first step and measured after. Each test checks numbers."""
import os

os.environ["QT_QPA_PLATFORM"] = "offscreen"

import threading  # noqa: E402
import time  # noqa: E402

import pytest  # noqa: E402

pytest.importorskip("PySide6")
from PySide6 import QtCore  # noqa: E402

from diffrecon.demo import make_demo  # noqa: E402
from diffrecon.engine import Planned, Progress, RunConfig  # noqa: E402
from diffrecon.gui.main_window import MainWindow  # noqa: E402
from diffrecon.gui.status_bar import format_duration  # noqa: E402

FAST = RunConfig(prior="gaussian", steps=50, samples=4, device="cpu", solver="dps")


class CountingPlan:
    def __init__(self, seconds=400.0):
        self.calls, self.threads, self.seconds = 0, [], seconds

    def __call__(self, measurement, config):
        self.calls += 1
        self.threads.append(threading.current_thread())
        time.sleep(0.05)
        return Planned(device="cpu", batches=[config.samples], steps=config.steps, nfe_per_sample=config.steps,
                       predicted_peak_bytes=None, std_is_posterior=True, normalization=(1.0, 0.0),
                       predicted_seconds=self.seconds)


@pytest.fixture
def make_window(qtbot, tmp_path):
    def make(plan_fn, engine_run=None):
        settings = QtCore.QSettings(str(tmp_path / "settings.ini"), QtCore.QSettings.Format.IniFormat)
        w = MainWindow(settings=settings, plan_fn=plan_fn, engine_run=engine_run)
        qtbot.addWidget(w)
        w.solver.set_config(FAST)
        w.set_measurement(make_demo("denoise", size=16))
        return w
    return make


def _legend_html(w):
    return [label.item.toHtml() for _sample, label in w.profile.plot.getPlotItem().legend.items]


def test_profile_legend_text_is_light_in_dark_theme_and_dark_in_light_theme(make_window):
    w = make_window(CountingPlan())
    w.set_theme("dark")
    html = _legend_html(w)
    assert len(html) == 2 and all("#c8c8c8" in h for h in html)  # (200, 200, 200)
    w.set_theme("light")
    assert all("#282828" in h for h in _legend_html(w))  # (40, 40, 40)


def test_time_is_predicted_once_off_the_gui_thread_when_the_window_is_first_shown(qtbot, make_window):
    plan = CountingPlan(seconds=400.0)
    w = make_window(plan)
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


def test_progress_bar_shows_predicted_eta_until_the_first_step_then_the_measured_one(qtbot, make_window):
    gate = threading.Event()

    def engine_run(measurement, config, *, stop):
        yield Planned(device="cpu", batches=[4], steps=50, nfe_per_sample=50, predicted_peak_bytes=None,
                      std_is_posterior=True, normalization=(1.0, 0.0))
        gate.wait(10)
        yield Progress(5, 50, 0, 4, 20, 20, 5, 2.0, 125.0)
        stop.wait(10)

    w = make_window(CountingPlan(seconds=400.0), engine_run)
    w.predict()
    qtbot.waitUntil(lambda: w.plan_panel.planned is not None, timeout=5000)
    assert w.start_run()  # the panel's settings, which the prediction is for
    assert w.progress_bar.format() == "%p% · ETA ≈ 6 min 40 s (predicted)" and w.progress_bar.value() == 0
    gate.set()
    qtbot.waitUntil(lambda: "(predicted)" not in w.progress_bar.format(), timeout=5000)
    assert w.progress_bar.format() == "%p% · ETA 2 min 05 s"
    assert w.progress_bar.value() == 10  # step 5 of 50 of one batch holding all 4 samples
    w.stop_run()
    w.worker.wait(5000)


def test_durations_read_as_seconds_minutes_or_hours():
    assert [format_duration(s) for s in (0.4, 42, 185, 3725)] == ["0 s", "42 s", "3 min 05 s", "1 h 02 min"]


def test_progress_bar_follows_the_engines_work_done_over_total_after_a_replan(qtbot, make_window):
    """Where Progress carries work_done/work_total (they stay true after an out-of-memory
    re-plan), the bar shows their ratio, not a count from the first plan's batches; a Replanned
    event updates the batches and says why in the log."""
    gate = threading.Event()

    class Replanned:  # the engine's event, by name: batches and the reason
        def __init__(self, batches, reason):
            self.batches, self.reason = batches, reason

    def engine_run(measurement, config, *, stop):
        yield Planned(device="cpu", batches=[4], steps=50, nfe_per_sample=50, predicted_peak_bytes=None,
                      std_is_posterior=True, normalization=(1.0, 0.0))
        yield Replanned([2, 2], "out of memory at batch 4")
        p = Progress(5, 50, 0, 4, 20, 20, 5, 2.0, 125.0)
        p.work_done, p.work_total = 30, 200
        yield p
        gate.set()
        stop.wait(10)

    w = make_window(CountingPlan(), engine_run)
    assert w.start_run()
    assert gate.wait(10)
    qtbot.waitUntil(lambda: w.progress_bar.value() == 15, timeout=5000)  # 30 of 200, not 5 of 50 steps
    assert w.status.batch_sizes == {0: 2, 2: 2}
    assert "Re-planned into batches [2, 2]: out of memory at batch 4" in w.log_view.toPlainText()
    w.stop_run()
    w.worker.wait(5000)
