"""The window and its runs, offscreen: closing during a step longer than the close wait ends the
process cleanly, a run's result is never shown against another file, and finished runs are not
kept alive by the window. Each test checks what happened, not just that nothing raised."""
import os

os.environ["QT_QPA_PLATFORM"] = "offscreen"

import gc  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import textwrap  # noqa: E402
import threading  # noqa: E402
import weakref  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

pytest.importorskip("PySide6")
from PySide6 import QtCore  # noqa: E402

from diffrecon import engine  # noqa: E402
from diffrecon.demo import make_demo  # noqa: E402
from diffrecon.engine import Planned, RunConfig  # noqa: E402
from diffrecon.gui import run_owner  # noqa: E402
from diffrecon.gui.main_window import MainWindow  # noqa: E402
from diffrecon.io import write_measurement  # noqa: E402
from diffrecon.measurement import Result  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TINY = RunConfig(prior="gaussian", steps=2, samples=2, device="cpu", solver="dps")


def _no_plan(measurement, config, stop=None):
    return Planned(device="cpu", batches=[config.samples], steps=config.steps, nfe_per_sample=config.steps,
                   predicted_peak_bytes=None, std_is_posterior=True, normalization=(1.0, 0.0), predicted_seconds=1.0)


@pytest.fixture
def make_window(qtbot, tmp_path):
    def make(engine_run=None):
        settings = QtCore.QSettings(str(tmp_path / "settings.ini"), QtCore.QSettings.Format.IniFormat)
        w = MainWindow(settings=settings, plan_fn=_no_plan, engine_run=engine_run)
        qtbot.addWidget(w)
        w.plan_panel.auto = False
        w.solver.set_config(TINY)
        return w
    return make


def _files(tmp_path, n):
    paths = []
    for i in range(n):
        paths.append(tmp_path / f"file{i}.h5")
        write_measurement(paths[-1], make_demo("denoise", size=16, seed=i))
    return paths


# ---------------------------------------------------------------------------- class 1
def test_closing_during_a_step_longer_than_the_close_wait_ends_the_process_cleanly(tmp_path):
    """A run and a prediction probe each inside a step that ignores Stop for longer than the close
    wait: closing and deleting the window must neither abort ("QThread: Destroyed while thread is
    still running") nor block; the process waits for the steps and exits 0."""
    script = textwrap.dedent("""
        import gc, os, sys, threading, time
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
        from PySide6 import QtCore, QtWidgets
        from diffrecon.demo import make_demo
        from diffrecon.engine import RunConfig
        from diffrecon.gui import closing
        from diffrecon.gui.main_window import MainWindow

        gate, inside = threading.Event(), threading.Semaphore(0)

        def long_step(*args, **kwargs):  # one step that does not look at Stop, like a slow network call
            inside.release()
            gate.wait(60)
            sys.stdout.write("step ended\\n")  # one write: print's text and newline can interleave between threads
            sys.stdout.flush()
            raise RuntimeError("stopped")
            yield

        app = QtWidgets.QApplication([])
        w = MainWindow(settings=QtCore.QSettings(sys.argv[1], QtCore.QSettings.Format.IniFormat),
                       engine_run=long_step, plan_fn=lambda m, c, stop=None: next(long_step()))
        w.CLOSE_WAIT_MS = 100
        w.plan_panel.auto = False
        w.set_measurement(make_demo("denoise", size=16))
        w.show()
        w.predict()
        assert inside.acquire(timeout=30)
        assert w.start_run(RunConfig(prior="gaussian", steps=2, samples=1, device="cpu"))
        assert inside.acquire(timeout=30)
        started = time.monotonic()
        w.close()
        print(f"closed in {time.monotonic() - started:.1f} s, kept {len(closing.kept_threads())}", flush=True)
        w.deleteLater()
        app.processEvents()
        del w
        gc.collect()
        app.processEvents()
        print("exiting", flush=True)
        threading.Timer(0.5, gate.set).start()  # the steps end only once the script is done
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "QT_QPA_PLATFORM": "offscreen"}
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path / "s.ini")], capture_output=True, text=True,
                          env=env, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Destroyed while thread" not in proc.stderr
    lines = proc.stdout.split()
    out = proc.stdout.splitlines()
    assert out[0].startswith("closed in") and out[0].endswith("kept 2"), proc.stdout
    assert float(lines[2]) < 5  # the window did not wait for the step
    assert out[1:] == ["exiting", "step ended", "step ended"], proc.stdout  # the process waited for both


# ---------------------------------------------------------------------------- class 3
def _gated_run(gate: threading.Event, started: threading.Event):
    """Statistics at once, then the result of the measurement it was given once ``gate`` opens."""
    def run(measurement, config, *, stop=None):
        shape = measurement.image_shape
        mean = np.asarray(measurement.ground_truth, np.float32) + 0.25  # recognisably this measurement's
        yield engine.Statistics(mean=mean, std=np.full(shape, 0.1, np.float32), samples_done=1)
        started.set()
        gate.wait(30)
        yield engine.Finished(Result(mean=mean, std=np.full(shape, 0.1, np.float32), samples=None, n_samples=2,
                                     metrics={"psnr": 30.0}, provenance={"solver": config.solver, "samples": 2},
                                     units=measurement.units, measurement=measurement))
    return run


def test_opening_another_file_during_a_run_never_shows_the_run_against_it(qtbot, make_window, tmp_path, monkeypatch):
    a, b, c = _files(tmp_path, 3)
    gate, started = threading.Event(), threading.Event()
    w = make_window(_gated_run(gate, started))
    assert w.open_file(a) and w.start_run()
    assert started.wait(30)
    qtbot.waitUntil(lambda: w.view.mean is not None, timeout=5000)  # A's statistics are shown, bound to A
    asked = []
    monkeypatch.setattr(run_owner, "ask_to_stop", lambda parent, running, opening: asked.append(opening) or False)
    assert not w.open_file(c)  # declined: A stays open and its run goes on
    assert asked == ["file2.h5"] and w.is_running() and w.windowTitle().endswith("file0.h5")
    monkeypatch.setattr(run_owner, "ask_to_stop", lambda parent, running, opening: asked.append(opening) or True)
    worker = w.worker
    assert w.open_file(b)
    assert asked[-1] == "file1.h5" and worker.stop_event.is_set() and not w.is_running()
    ended = []  # the abandoned worker deletes itself once finished: watch its signal, not the object
    worker.finished.connect(lambda: ended.append(True))
    gate.set()
    qtbot.waitUntil(lambda: bool(ended), timeout=10000)
    qtbot.wait(100)  # A's result and finished signals would be delivered now
    assert w.windowTitle().endswith("file1.h5")
    assert w.result is None and w.view.mean is None and w.view.panels["mean"].data is None
    assert not w.export(tmp_path / "err.tif", "error") and "no result" in w.last_error
    gate.clear()
    started.clear()
    assert w.start_run()  # B's own run is shown with B
    assert started.wait(30)
    gate.set()
    qtbot.waitUntil(lambda: w.result is not None, timeout=10000)
    np.testing.assert_allclose(w.result.mean, w.measurement.ground_truth + 0.25)
    assert w.windowTitle().endswith("file1.h5") and w.result.measurement.title == w.measurement.title
    w.worker.wait(5000)


# ---------------------------------------------------------------------------- class 10
def test_finished_runs_and_predictions_are_not_kept_alive_by_the_window(qtbot, make_window, tmp_path):
    w = make_window()  # the real engine: its caches count too
    files = _files(tmp_path, 4)
    measurements, results = [], []
    for path in files[:3]:
        assert w.open_file(path)
        w.predict()
        qtbot.waitUntil(lambda: not w.plan_panel.is_busy() and w.plan_panel.planned is not None, timeout=10000)
        assert w.start_run()
        qtbot.waitUntil(lambda: w._run_done, timeout=60000)
        w.worker.wait(5000)
        assert w.result is not None and w.result.n_samples == 2
        measurements.append(weakref.ref(w.measurement))
        results.append(weakref.ref(w.result.mean))
    assert w.open_file(files[3])
    w.tree.wait(5000)
    qtbot.wait(50)  # deferred deletions
    gc.collect()
    assert [r() is None for r in measurements] == [True] * 3
    assert [r() is None for r in results] == [True] * 3
    assert len(w.findChildren(QtCore.QThread)) <= 2  # the last run's and the last probe's, not one per run
