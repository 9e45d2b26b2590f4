"""Main windows for the GUI tests, offscreen: ``window`` on the CT demo (the denoising demo where
no CT operator is installed) with a 3-step DPS run, and ``make_window()``, a factory of windows
on a 16 px denoising demo with a 10-step DiffPIR run, its own prior cache and a fixed prediction.
Import the fixtures a test file uses into it (pytest finds fixtures in the module namespace)."""
import os

os.environ["QT_QPA_PLATFORM"] = "offscreen"

import pytest  # noqa: E402

pytest.importorskip("PySide6")
from PySide6 import QtCore  # noqa: E402

import diffrecon.priors as priors  # noqa: E402
from diffrecon.demo import make_demo  # noqa: E402
from diffrecon.engine import Planned, RunConfig  # noqa: E402
from diffrecon.errors import InputError  # noqa: E402
from diffrecon.gui.main_window import MainWindow  # noqa: E402
from diffrecon.priors import fitted  # noqa: E402

FAST = RunConfig(prior="gaussian", steps=3, samples=2, device="cpu", solver="dps")
FAST_DIFFPIR = RunConfig(prior="gaussian", steps=10, samples=2, device="cpu", solver="diffpir")


def _demo():
    """The CT demo where the CT operator is installed, else the denoising demo."""
    try:
        return make_demo("ct", size=32)
    except InputError:
        return make_demo("denoise", size=32)


@pytest.fixture
def window(qtbot, tmp_path):
    settings = QtCore.QSettings(str(tmp_path / "settings.ini"), QtCore.QSettings.Format.IniFormat)
    w = MainWindow(settings=settings)
    qtbot.addWidget(w)
    w.set_measurement(_demo())
    w.solver.set_config(FAST)
    yield w
    if w.is_running():
        w.worker.request_stop()
        w.worker.wait(10000)


def _run(qtbot, w, config=FAST, timeout=60000):
    assert w.start_run(config)
    qtbot.waitUntil(lambda: w._run_done, timeout=timeout)
    w.worker.wait(5000)
    return w.result


@pytest.fixture
def make_window(qtbot, tmp_path, monkeypatch):
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
        w.solver.set_config(FAST_DIFFPIR)
        w.set_measurement(make_demo("denoise", size=16))
        return w
    return make
