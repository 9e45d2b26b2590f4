"""The budget schedule from the window's solver settings: chosen in Solver → Schedule, its search
shown as a preparing bar before the first step, recorded in the result (exact Gaussian prior, 16 px)."""
import os

os.environ["QT_QPA_PLATFORM"] = "offscreen"

import pytest  # noqa: E402

pytest.importorskip("PySide6")

from gui_windows import make_window  # noqa: E402,F401 - fixture

from diffrecon.engine.budget import WHAT  # noqa: E402


def test_budget_schedule_chosen_in_the_window_searches_with_progress_and_is_recorded(qtbot, make_window):
    w = make_window()
    panel = w.solver
    panel.apply_preset("fast")
    panel.steps.setValue(2)
    panel.samples.setValue(1)
    panel.schedule.setCurrentText("budget")
    assert panel.config().schedule == "budget" and "budget" in panel.schedule.toolTip()
    assert panel.config().warm_start == "none"  # the budget schedule is searched for runs from noise
    shown = []
    w.status.show_preparing = lambda p, show=w.status.show_preparing: (shown.append((p.what, p.done, p.total)), show(p))
    assert w.start_run()
    qtbot.waitUntil(lambda: w._run_done, timeout=120_000)
    w.worker.wait(5000)
    searched = [s for s in shown if s[0] == WHAT]
    assert searched and searched[-1][1] == searched[-1][2] == 81
    assert w.result.provenance["schedule"] == "budget"
    assert w.result.provenance["budget_schedule"]["cached"] is False
    assert w.result.provenance["preset"] == "fast"
    assert w.result.provenance["preset_overridden"] == ["steps", "warm_start"]
