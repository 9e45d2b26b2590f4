"""Opening another measurement in the main window, offscreen: the previous result's line profile
and A/B pair do not linger over it, even when the new image has another size."""
import os

os.environ["QT_QPA_PLATFORM"] = "offscreen"

import numpy as np  # noqa: E402
import pytest  # noqa: E402

pytest.importorskip("PySide6")
from PySide6 import QtCore  # noqa: E402

from diffrecon.demo import make_demo  # noqa: E402
from diffrecon.engine import RunConfig  # noqa: E402
from diffrecon.gui.main_window import MainWindow  # noqa: E402

TINY = RunConfig(prior="gaussian", steps=2, samples=2, device="cpu")


@pytest.fixture
def ran_window(qtbot, tmp_path):
    """A window that has finished a tiny real run on the 32 × 32 CT demo and pinned it as A."""
    settings = QtCore.QSettings(str(tmp_path / "settings.ini"), QtCore.QSettings.Format.IniFormat)
    w = MainWindow(settings=settings)
    qtbot.addWidget(w)
    w.set_measurement(make_demo("ct", size=32))
    assert w.start_run(TINY)
    qtbot.waitUntil(lambda: w._run_done, timeout=60000)
    w.worker.wait(5000)
    assert w.result is not None and len(w.profile.mean_curve.getData()[1]) > 10  # a profile to clear
    assert w.pin_result_as_a()
    yield w
    if w.is_running():
        w.worker.request_stop()
        w.worker.wait(10000)


def _curve_lengths(w) -> list[int]:
    curves = (w.profile.mean_curve, w.profile.truth_curve, w.profile.band_hi, w.profile.band_lo)
    return [0 if c.getData()[1] is None else len(c.getData()[1]) for c in curves]


def test_opening_a_48px_measurement_after_a_32px_run_empties_profile_and_unpins_mismatched_a(qtbot, ran_window):
    w = ran_window
    w.last_error = ""
    with qtbot.captureExceptions() as raised:
        w.set_measurement(make_demo("inpaint", size=48))
        qtbot.wait(50)  # let queued slots (hover, links, refreshes) run
    assert not raised and w.last_error == ""
    assert _curve_lengths(w) == [0, 0, 0, 0]
    assert w.profile.profiles() == {} and not w.profile.line.isVisible()
    assert w.view.ab.a is None and w.view.ab.b is None  # 32 × 32 A cannot face a 48 × 48 result
    assert w.view.ab.difference.data is None and w.view.ab.swipe.data is None


def test_opening_a_same_size_measurement_keeps_pinned_a_but_drops_old_b_and_difference(qtbot, ran_window):
    w = ran_window
    pinned = w.view.ab.a.copy()
    w.set_measurement(make_demo("denoise", size=32))
    assert _curve_lengths(w) == [0, 0, 0, 0]
    np.testing.assert_array_equal(w.view.ab.a, pinned)
    assert w.view.ab.b is None and w.view.ab.difference.data is None
