"""The window when a run goes wrong: a banner over the result says which samples diverged at
which step and what to try, the metrics are not shown as calibration, and the prediction shown
always belongs to the current settings. Offscreen, tiny CT: a NaN-producing prior, or DPS with
10 steps and a huge guidance weight."""
import os

os.environ["QT_QPA_PLATFORM"] = "offscreen"

import functools  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

pytest.importorskip("PySide6")
from PySide6 import QtCore  # noqa: E402

from diffrecon.demo import make_demo  # noqa: E402
from diffrecon.engine import Planned, RunConfig  # noqa: E402
from diffrecon.engine import run as engine_run  # noqa: E402
from diffrecon.gui.main_window import MainWindow  # noqa: E402
from diffrecon.priors import load_prior  # noqa: E402
from test_guard import BadPrior  # noqa: E402



@pytest.fixture(autouse=True)
def _no_prior_fit_probe(monkeypatch):
    """The prior-fit indicator calls the prior once before the run; these tests count the prior's calls."""
    monkeypatch.setattr("diffrecon.prior_fit.before_run", lambda setup: None)

def _window(qtbot, tmp_path, measurement, engine=None, plan_fn=None):
    settings = QtCore.QSettings(str(tmp_path / "settings.ini"), QtCore.QSettings.Format.IniFormat)
    w = MainWindow(settings=settings, engine_run=engine, plan_fn=plan_fn)
    qtbot.addWidget(w)
    w.set_measurement(measurement)
    return w


def _run(qtbot, w, config, timeout=120000):
    w.solver.set_config(config)
    assert w.start_run()
    qtbot.waitUntil(lambda: w._run_done, timeout=timeout)
    w.worker.wait(5000)
    return w.result


def test_nan_prior_shows_a_banner_naming_the_step_and_metrics_not_as_calibration(qtbot, tmp_path):
    m = make_demo("ct", size=16)
    bad = BadPrior(load_prior("gaussian", tuple(m.image_shape)), bad_from=3, samples=[1])
    w = _window(qtbot, tmp_path, m, functools.partial(engine_run, denoiser=bad))
    result = _run(qtbot, w, RunConfig(solver="dps", prior="gaussian", steps=6, samples=3, device="cpu"))
    assert result is not None and result.n_samples == 2 and np.isfinite(w.view.panels["mean"].data).all()
    text = w.banner.text()
    assert not w.banner.isHidden() and "step 3 of 6" in text and "NaN" in text and "try more steps" in text
    assert "2 other samples" in text and "1 diverged, left out" in w.view.panels["mean"].title()
    table = w.metrics.as_dict()
    assert "diverged: no calibration" in table["90 % interval coverage"]
    assert "diverged" in w.last_error.lower()  # the status bar says it too
    # a new run clears the banner: it belongs to the result it describes
    bad.bad_from = 10**9
    _run(qtbot, w, RunConfig(solver="dps", prior="gaussian", steps=3, samples=2, device="cpu"))
    assert w.banner.isHidden() and "diverged" not in str(w.metrics.as_dict())


def test_dps_with_10_steps_and_a_huge_guidance_weight_is_bannered_at_the_step_it_is_caught(qtbot, tmp_path):
    # the bundled-prior case is in test_guard.py (the engine); here its small stand-in
    w = _window(qtbot, tmp_path, make_demo("ct", size=16))
    result = _run(qtbot, w, RunConfig(solver="dps", prior="gaussian", steps=10, samples=2, device="cpu",
                                      params={"zeta": 100.0}))
    step = result.provenance["divergence"]["first_step"]
    assert 1 <= step <= 10 and result.metrics["nfe"] == 2 * step  # both samples stopped right there
    assert not w.banner.isHidden() and f"from step {step} of 10" in w.banner.text()
    assert "zeta 100 → 25" in w.banner.text()
    assert "Diverged" in w.view.panels["mean"].title()
    assert "diverged" in w.metrics.as_dict()["PSNR"]


def test_prediction_of_other_settings_is_cleared_when_the_settings_change(qtbot, tmp_path):
    def plan_fn(measurement, config, stop=None):
        return Planned(device="cpu", batches=[config.samples], steps=config.steps, nfe_per_sample=config.steps,
                       predicted_peak_bytes=None, std_is_posterior=True, normalization=(1.0, 0.0),
                       predicted_seconds=0.1 * config.steps)

    w = _window(qtbot, tmp_path, make_demo("ct", size=16), plan_fn=plan_fn)
    w.solver.set_config(RunConfig(solver="dps", prior="gaussian", steps=200, samples=1, device="cpu"))
    w.predict()
    qtbot.waitUntil(lambda: "200 network evaluations" in w.plan_panel.text.text(), timeout=10000)
    w.solver.steps.setValue(10)  # an edit: the 200-step prediction must not stay under 10 steps
    assert "200" not in w.plan_panel.text.text() and "Settings changed" in w.plan_panel.text.text()
    qtbot.waitUntil(lambda: "10 network evaluations" in w.plan_panel.text.text(), timeout=10000)
    w.solver.steps.setValue(20)
    w.plan_panel.cancel()  # a run starting: the cancelled probe must not bring the 10-step text back
    assert "10 network evaluations" not in w.plan_panel.text.text()
