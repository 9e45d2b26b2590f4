"""The progress bar, offscreen: the ETA predicted before the first step and measured after, the
engine's work done over total after an out-of-memory re-plan, and durations as people read them."""
import os

os.environ["QT_QPA_PLATFORM"] = "offscreen"

import threading  # noqa: E402

import pytest  # noqa: E402

pytest.importorskip("PySide6")

from gui_windows import CountingPlan, make_denoise16_window  # noqa: E402,F401,F811 - fixture

from diffrecon.engine import Planned, Progress, Replanned  # noqa: E402
from diffrecon.gui.status_bar import format_duration  # noqa: E402

def test_progress_bar_shows_predicted_eta_until_the_first_step_then_the_measured_one(qtbot, make_denoise16_window):
    gate = threading.Event()

    def engine_run(measurement, config, *, stop):
        yield Planned(device="cpu", batches=[4], steps=50, nfe_per_sample=50, predicted_peak_bytes=None,
                      std_is_posterior=True, normalization=(1.0, 0.0))
        gate.wait(10)
        yield Progress(5, 50, 0, 4, 20, 20, 5, 2.0, 125.0)
        stop.wait(10)

    w = make_denoise16_window(CountingPlan(seconds=400.0), engine_run)
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


def test_progress_bar_follows_the_engines_work_done_over_total_after_a_replan(qtbot, make_denoise16_window):
    """Where Progress carries work_done/work_total (they stay true after an out-of-memory
    re-plan), the bar shows their ratio, not a count from the first plan's batches; a Replanned
    event updates the batches and says why in the log."""
    gate = threading.Event()

    def engine_run(measurement, config, *, stop):
        yield Planned(device="cpu", batches=[4], steps=50, nfe_per_sample=50, predicted_peak_bytes=None,
                      std_is_posterior=True, normalization=(1.0, 0.0))
        yield Replanned([2, 2], "out of memory at batch 4")
        p = Progress(5, 50, 0, 4, 20, 20, 5, 2.0, 125.0)
        p.work_done, p.work_total = 30, 200
        yield p
        gate.set()
        stop.wait(10)

    w = make_denoise16_window(CountingPlan(), engine_run)
    assert w.start_run()
    assert gate.wait(10)
    qtbot.waitUntil(lambda: w.progress_bar.value() == 15, timeout=5000)  # 30 of 200, not 5 of 50 steps
    assert w.status.batch_sizes == {0: 2, 2: 2}
    assert "Re-planned into batches [2, 2]: out of memory at batch 4" in w.log_view.toPlainText()
    w.stop_run()
    w.worker.wait(5000)
