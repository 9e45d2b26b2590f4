"""The engine: batching does not change results, statistics are exact, stop keeps finished
samples, settings are refused before work, metrics agree with scikit-image."""
from __future__ import annotations

import dataclasses
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import torch
from engine_toys import _ancestral, _finish, _oom_above_two, _Params, _smooth_images

from diffrecon import engine
from diffrecon.engine import Finished, Log, Planned, Preview, Progress, RunConfig, Statistics
from diffrecon.errors import InputError
from diffrecon.measurement import Measurement
from diffrecon.metrics import psnr, ssim
from diffrecon.operators import Denoise
from diffrecon.priors.gaussian import StationaryGaussianPrior
from diffrecon.solvers import SOLVERS, SolverInfo

pytest_plugins = ["engine_toys"]  # the fixtures problem and toy_solver


def test_batch_split_does_not_change_any_sample(problem, toy_solver):
    m, prior = problem
    cfg = RunConfig(solver="toy", steps=5, samples=5, seed=7, device="cpu", prior="x", keep_samples=5)
    _, whole = _finish(engine.run(m, RunConfig(**{**cfg.__dict__, "batch_size": 5}), denoiser=prior))
    _, split = _finish(engine.run(m, RunConfig(**{**cfg.__dict__, "batch_size": 2}), denoiser=prior))
    np.testing.assert_allclose(whole.samples, split.samples, rtol=0, atol=1e-5)
    np.testing.assert_allclose(whole.mean, split.mean, atol=1e-5)
    np.testing.assert_allclose(whole.std, split.std, atol=1e-5)


def test_running_statistics_equal_numpy_over_kept_samples(problem, toy_solver):
    m, prior = problem
    cfg = RunConfig(solver="toy", steps=4, samples=7, batch_size=3, device="cpu", keep_samples=16)
    _, res = _finish(engine.run(m, cfg, denoiser=prior))
    assert res.samples.shape == (7, 1, 16, 16) and res.n_samples == 7
    np.testing.assert_allclose(res.mean, res.samples.mean(0), atol=1e-4)
    np.testing.assert_allclose(res.std, res.samples.std(0, ddof=1), atol=1e-4)
    assert res.std.mean() > 0.1  # jittered samples differ


def test_same_seed_same_result_different_seed_different(problem, toy_solver):
    m, prior = problem
    cfg = RunConfig(solver="toy", steps=3, samples=2, seed=1, device="cpu")
    _, a = _finish(engine.run(m, cfg, denoiser=prior))
    _, b = _finish(engine.run(m, cfg, denoiser=prior))
    _, c = _finish(engine.run(m, RunConfig(**{**cfg.__dict__, "seed": 2}), denoiser=prior))
    assert np.array_equal(a.samples, b.samples)
    assert np.abs(a.samples - c.samples).max() > 1e-3


def test_events_arrive_in_order_with_counts(problem, toy_solver):
    m, prior = problem
    cfg = RunConfig(solver="toy", steps=4, samples=3, batch_size=2, device="cpu", preview_interval=0.0)
    events, res = _finish(engine.run(m, cfg, denoiser=prior))
    assert isinstance(events[0], Planned) and events[0].batches == [2, 1]
    assert sum(isinstance(e, Statistics) for e in events) == 2
    assert any(isinstance(e, Preview) for e in events)
    progress = [e for e in events if isinstance(e, Progress)]
    assert progress[-1].samples_total == 3 and progress[-1].nfe == 4 * 3
    assert res.metrics["nfe"] == 12 and res.metrics["nfe_per_sample"] == 4
    assert res.provenance["solver"] == "toy" and res.provenance["params"] == {"jitter": 1.0}


def test_stop_keeps_finished_samples(problem, toy_solver):
    m, prior = problem
    stop = threading.Event()
    cfg = RunConfig(solver="toy", steps=6, samples=6, batch_size=2, device="cpu")
    result = None
    for ev in engine.run(m, cfg, stop=stop, denoiser=prior):
        if isinstance(ev, Statistics) and ev.samples_done == 2:
            stop.set()
        if isinstance(ev, Finished):
            result = ev.result
    assert result is not None and result.n_samples == 2 and not result.complete


def test_physical_units_round_trip_through_normalization(problem, toy_solver):
    m, prior = problem
    _, res = _finish(engine.run(m, RunConfig(solver="toy", steps=10, samples=4, device="cpu",
                                             params={"jitter": 0.0}), denoiser=prior))
    # with jitter 0 the toy solver ends at the prior mean; in physical units: 40 * prior mean
    expected = 40 * float(prior.mean.mean())
    assert abs(float(res.mean.mean()) - expected) < 0.05 * 40
    assert res.units == "u"


def test_normalization_maps_measurement_and_noise():
    norm = engine.Normalization.between((-100.0, 300.0), (-1.0, 1.0))
    assert norm.scale == pytest.approx(200.0) and norm.offset == pytest.approx(100.0)
    op = Denoise((1, 4, 4))
    y = torch.full((1, 1, 4, 4), 300.0)
    assert torch.allclose(norm.measurement_to_prior(op, y), torch.ones_like(y))


@pytest.mark.parametrize("change, words", [
    ({"steps": 0}, "steps"), ({"samples": 0}, "samples"), ({"solver": "nope"}, "solver"),
    ({"precision": "fp8"}, "precision"), ({"device": "cuda:7"}, "device"),
    ({"params": {"jitter": 5.0}}, "jitter"), ({"params": {"nope": 1}}, "nope"),
])
def test_impossible_settings_refused_before_work(problem, toy_solver, change, words):
    m, prior = problem
    cfg = RunConfig(**{**RunConfig(solver="toy", device="cpu").__dict__, **change})
    if change.get("device", "").startswith("cuda") and torch.cuda.is_available():
        pytest.skip("this machine has CUDA devices")
    with pytest.raises(InputError, match=words):
        next(engine.run(m, cfg, denoiser=prior))


def test_wrong_measurement_shape_and_nan_refused(problem, toy_solver):
    m, prior = problem
    bad = Measurement(**{**m.__dict__, "y": m.y[:, :8]})
    with pytest.raises(InputError, match="shape"):
        next(engine.run(bad, RunConfig(solver="toy", device="cpu"), denoiser=prior))
    y = m.y.copy()
    y[0, 0, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        next(engine.run(Measurement(**{**m.__dict__, "y": y}), RunConfig(solver="toy", device="cpu"), denoiser=prior))


def test_prior_of_another_size_refused(problem, toy_solver):
    m, _ = problem
    small = StationaryGaussianPrior.fit(_smooth_images(10, 8))
    with pytest.raises(InputError, match="8x8"):
        next(engine.run(m, RunConfig(solver="toy", device="cpu"), denoiser=small))


def test_metrics_agree_with_scikit_image():
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    rng = np.random.default_rng(0)
    ref = rng.random((32, 32))
    x = ref + 0.05 * rng.standard_normal((32, 32))
    assert psnr(x, ref, 1.0) == pytest.approx(peak_signal_noise_ratio(ref, x, data_range=1.0), rel=1e-9)
    ours = ssim(x, ref, 1.0)
    theirs = structural_similarity(ref, x, data_range=1.0, gaussian_weights=True, sigma=1.5)
    assert ours == pytest.approx(theirs, abs=1e-4)


def test_metrics_report_residual_near_one_at_truth(problem):
    m, _ = problem
    op = Denoise((1, 16, 16), noise_sigma=2.0)
    out = engine.compute_metrics(op, m, m.ground_truth, np.ones_like(m.ground_truth), 4,
                                 engine.Normalization(1.0, 0.0))
    assert 0.8 < out["residual_ratio"] < 1.2  # the truth fits y to the noise level
    assert out["psnr"] == float("inf") and out["coverage90"] == 1.0


def test_nothing_outside_gui_imports_qt():
    """Every top-level module and package of diffrecon but gui (read from the package, so a new one
    is covered) imports without Qt."""
    code = (
        "import pkgutil, importlib, sys, diffrecon\n"
        "for m in pkgutil.iter_modules(diffrecon.__path__):\n"
        "    if m.name != 'gui':\n"
        "        importlib.import_module('diffrecon.' + m.name)\n"
        "bad = [m for m in sys.modules if m.startswith(('PySide6', 'pyqtgraph', 'shiboken6', 'superqt'))]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_plan_predicts_time_from_a_probe_without_changing_results(problem, toy_solver):
    m, prior = problem
    cfg = RunConfig(solver="toy", steps=6, samples=3, batch_size=2, device="cpu")
    planned = engine.plan(m, cfg, denoiser=prior)
    assert planned.batches == [2, 1] and planned.nfe_per_sample == 6
    assert planned.predicted_seconds is not None and 0 < planned.predicted_seconds < 10
    assert planned.predicted_peak_bytes is None  # measured on GPUs only
    _, a = _finish(engine.run(m, cfg, denoiser=prior))
    _, b = _finish(engine.run(m, cfg, denoiser=prior))
    assert np.array_equal(a.samples, b.samples)


def test_default_prior_of_another_size_falls_back_to_gaussian_with_a_warning(toy_solver):
    from diffrecon.demo import make_demo
    from diffrecon.priors import default_prior_folder

    assert default_prior_folder() is not None  # the bundled 128x128 prior ships with the package
    m = make_demo("denoise", size=32, seed=0)
    events = list(engine.run(m, RunConfig(solver="toy", steps=2, samples=1, prior="default", device="cpu")))
    warnings = [e.message for e in events if isinstance(e, Log) and e.level == "warning"]
    assert events[-1].result.provenance["prior"] == "gaussian"
    assert any("runs on 128x128 patches" in w and "32x32 is too small" in w for w in warnings)


def test_default_prior_runs_on_patches_at_a_size_it_was_not_trained_at(toy_solver):
    """96x96 (between the patch size's half and the trained 128): the network on patches, said and recorded."""
    from diffrecon.demo import make_demo

    m = make_demo("denoise", size=96, seed=0)
    events = list(engine.run(m, RunConfig(solver="toy", steps=2, samples=1, prior="default", device="cpu")))
    warnings = [e.message for e in events if isinstance(e, Log) and e.level == "warning"]
    prov = events[-1].result.provenance
    assert prov["prior"] == "default" and prov["prior_size_mode"] == "patches"
    assert any("trained at 128x128" in w and "patches at 96x96" in w for w in warnings)


def test_out_of_memory_halves_the_batch_once_per_size_and_keeps_the_samples(problem, monkeypatch):
    m, prior = problem
    monkeypatch.setitem(SOLVERS, "oom", SolverInfo("oom", _oom_above_two, _Params, "oom", "test"))
    monkeypatch.setitem(SOLVERS, "toy", SolverInfo("toy", _ancestral, _Params, "toy", "test"))
    cfg = RunConfig(solver="oom", steps=3, samples=8, batch_size=8, device="cpu", keep_samples=8)
    events = list(engine.run(m, cfg, denoiser=prior))
    halvings = [e.message for e in events if isinstance(e, Log) and "Out of GPU memory" in e.message]
    assert len(halvings) == 2 and "with 8 samples" in halvings[0] and "going on with 2" in halvings[1]
    assert sum(isinstance(e, Statistics) for e in events) == 4  # then four batches of two
    result = events[-1].result
    _, reference = _finish(engine.run(m, RunConfig(**{**cfg.__dict__, "solver": "toy", "batch_size": 2}),
                                      denoiser=prior))
    assert result.n_samples == 8
    np.testing.assert_allclose(result.samples, reference.samples, atol=1e-6)


def test_a_solver_on_an_unfiltered_iterative_pseudo_inverse_gets_a_warning():
    from diffrecon.demo import make_demo

    def warnings(m, solver):
        cfg = RunConfig(solver=solver, steps=2, samples=1, prior="gaussian", device="cpu")
        return [e.message for e in engine.run(m, cfg) if isinstance(e, Log) and e.level == "warning"]

    m = make_demo("ct", size=32, seed=0)
    assert any("pigdm relies on a pseudo-inverse" in w and "ct" in w for w in warnings(m, "pigdm"))
    # DDNM+ filters its pseudo-inverse by the noise level: no warning on noisy data, one at noise 0
    assert not any("pseudo-inverse" in w for w in warnings(m, "ddnm"))
    assert any("filters its pseudo-inverse" in w for w in warnings(make_demo("ct", size=32, seed=0, noise=0.0), "ddnm"))
    inpaint = make_demo("inpaint", size=32, seed=0)  # closed-form pseudo-inverse: no warning
    assert not any("pseudo-inverse" in w for w in warnings(inpaint, "ddnm"))


def test_plan_stop_ends_the_probe_at_the_next_step_keeping_what_it_timed(problem, monkeypatch):
    m, prior = problem
    stop, made = threading.Event(), []

    def stopping(*args, **kwargs):
        for step in _ancestral(*args, **kwargs):
            made.append(step.i)
            if step.i == 1:
                stop.set()  # as if Reconstruct were clicked during the second step
            yield step

    monkeypatch.setitem(SOLVERS, "stopping", SolverInfo("stopping", stopping, _Params, "toy", "test", posterior=True))
    cfg = RunConfig(solver="stopping", steps=20, samples=2, device="cpu")
    planned = engine.plan(m, cfg, denoiser=prior, probe_steps=10, stop=stop)
    assert made == [0, 1]  # not one step more than the one during which stop was set
    assert planned.predicted_seconds is not None and planned.predicted_seconds > 0
    assert planned.nfe_per_sample == 20 and planned.batches == [2]
    made.clear()
    early = engine.plan(m, cfg, denoiser=prior, probe_steps=10, stop=stop)  # stopped before it began
    assert made == [] and early.predicted_seconds is None and early.predicted_peak_bytes is None
    assert early.nfe_per_sample == 20  # what needs no timing is still predicted


def test_dps_with_too_few_steps_gets_a_warning_and_enough_steps_none():
    from diffrecon.demo import make_demo

    m = make_demo("denoise", size=16, seed=0)

    def warnings(steps):
        cfg = RunConfig(solver="dps", steps=steps, samples=1, prior="gaussian", device="cpu")
        return [e.message for e in engine.run(m, cfg) if isinstance(e, Log) and e.level == "warning"]

    assert any("dps with 5 steps is likely to diverge" in w for w in warnings(5))
    assert not any("diverge" in w for w in warnings(20))


def test_plan_adds_the_warm_starts_classical_solves_to_the_predicted_time(problem, monkeypatch):
    from diffrecon import warm_start

    m, prior = problem
    cfg = RunConfig(solver="diffpir", steps=6, samples=2, device="cpu", prior_fit=False)
    slow, real = 1.0, warm_start.estimate_error

    def slow_estimate(op, y):
        time.sleep(slow)  # as if the three TV solves took this long
        return real(op, y)

    monkeypatch.setattr(warm_start, "estimate_error", slow_estimate)
    cold = engine.plan(m, cfg, denoiser=prior, probe_steps=3).predicted_seconds
    warm = engine.plan(m, dataclasses.replace(cfg, warm_start="tv"), denoiser=prior, probe_steps=3).predicted_seconds
    assert cold is not None and warm is not None and warm >= slow > cold
