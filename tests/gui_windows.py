"""Main windows for the GUI tests, offscreen: ``window`` on the CT demo (the denoising demo where
no CT operator is installed) with a 3-step DPS run, and ``make_window()``, a factory of windows
on a 16 px denoising demo with a 10-step DiffPIR run, its own prior cache and a fixed prediction.
``make_shown_window``, ``make_window_without_measurement`` and ``make_denoise16_window`` are the
factories the result-view, panel and progress tests use, with stand-ins for the prediction
(``fake_plan``, ``no_plan``, ``CountingPlan``). Import the fixtures a test file uses into it
(pytest finds fixtures in the module namespace)."""
import os

os.environ["QT_QPA_PLATFORM"] = "offscreen"

import threading  # noqa: E402
import time  # noqa: E402

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
FAST_50_STEPS = RunConfig(prior="gaussian", steps=50, samples=2, device="cpu", solver="dps")
FAST_50_STEPS_4_SAMPLES = RunConfig(prior="gaussian", steps=50, samples=4, device="cpu", solver="dps")


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


def fake_plan(delay=0.0):
    def plan(measurement, config):
        time.sleep(delay)  # releases the GIL like a real probe's torch work
        return Planned(device="cpu", batches=[config.samples], steps=config.steps, nfe_per_sample=7 * config.steps,
                       predicted_peak_bytes=3 * 2**30, std_is_posterior=True, normalization=(1.0, 0.0),
                       predicted_seconds=12.5)
    return plan


def no_plan(measurement, config):
    return Planned(device="cpu", batches=[config.samples], steps=config.steps, nfe_per_sample=config.steps,
                   predicted_peak_bytes=None, std_is_posterior=True, normalization=(1.0, 0.0), predicted_seconds=1.0)


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
def make_shown_window(qtbot, tmp_path):
    def make(measurement=None, plan_fn=None):
        settings = QtCore.QSettings(str(tmp_path / "settings.ini"), QtCore.QSettings.Format.IniFormat)
        w = MainWindow(settings=settings, plan_fn=plan_fn or fake_plan())
        qtbot.addWidget(w)
        w.resize(1400, 900)
        w.show()
        w.set_measurement(measurement or make_demo("denoise", size=32))
        w.solver.set_config(FAST)
        return w
    return make


@pytest.fixture
def make_window_without_measurement(qtbot, tmp_path):
    def make(plan_fn=no_plan, engine_run=None):
        settings = QtCore.QSettings(str(tmp_path / "settings.ini"), QtCore.QSettings.Format.IniFormat)
        w = MainWindow(settings=settings, plan_fn=plan_fn, engine_run=engine_run)
        qtbot.addWidget(w)
        w.solver.set_config(FAST_50_STEPS)
        return w
    return make


@pytest.fixture
def make_denoise16_window(qtbot, tmp_path):
    def make(plan_fn, engine_run=None):
        settings = QtCore.QSettings(str(tmp_path / "settings.ini"), QtCore.QSettings.Format.IniFormat)
        w = MainWindow(settings=settings, plan_fn=plan_fn, engine_run=engine_run)
        qtbot.addWidget(w)
        w.solver.set_config(FAST_50_STEPS_4_SAMPLES)
        w.set_measurement(make_demo("denoise", size=16))
        return w
    return make
