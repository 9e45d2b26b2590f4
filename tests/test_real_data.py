"""Fair classical baselines, warm start, the weight assistant and the prior-fit indicator, on
tiny CPU problems; plus a fast subset of the real-image evaluation (benchmarks/real_images.py)."""
from __future__ import annotations

import dataclasses

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from diffrecon import engine, prior_fit, warm_start
from diffrecon.io.importers import simulate
from diffrecon.measurement import Measurement
from diffrecon.operators import Denoise, Inpaint, ParallelBeamCT, random_mask, sparse_view_angles
from diffrecon.phantoms import TEST_SEEDS, phantom
from diffrecon.priors.gaussian import StationaryGaussianPrior
from diffrecon.schedule import karras_sigmas
from diffrecon.solvers import SOLVERS, SampleRNG
from diffrecon.weights import choose_weight

SIZE = 16


def _solve(name, op, y, **params):
    info = SOLVERS[name]
    x_init = torch.zeros(1, *op.image_shape)
    with torch.no_grad():
        steps = list(info.solve(None, op, y, torch.zeros(11), x_init, params=info.Params(**params),
                                generator=SampleRNG(0, [0])))
    return steps[-1].x


def _ct_problem(pixel_size: float, noise_rel: float = 0.01):
    gt = torch.as_tensor(phantom(SIZE, TEST_SEEDS[0]))[None, None]
    op = ParallelBeamCT((1, SIZE, SIZE), sparse_view_angles(8), pixel_size=pixel_size)
    clean = op.A(gt)
    op.noise_sigma = noise_rel * float(clean.abs().max())
    return op, clean + op.noise_like(clean, torch.Generator().manual_seed(0)), gt


@pytest.mark.parametrize("name", ["tv", "cg"])
def test_baseline_solution_does_not_depend_on_the_operator_units(name):
    # A -> c A, y -> c y, sigma -> c sigma is the same problem: the relative weight gives the same image
    x = {c: _solve(name, *_ct_problem(c)[:2]) for c in (1.0, 30.0)}
    assert float((x[1.0] - x[30.0]).norm() / x[1.0].norm()) < 2e-3


def _tv(x):
    from diffrecon.solvers.tv import grad
    return float(grad(x).square().sum(dim=1).sqrt().sum())


def test_tv_term_is_active_at_a_large_operator_norm_and_lowers_the_error():
    op, y, gt = _ct_problem(6.0)  # ||A|| about 67 at 16 x 16, as CT in pixel units at 128
    assert op.norm() > 50
    x = {lam: _solve("tv", op, y, lam=lam) for lam in (0.0, 0.5, 2.0)}
    err = {lam: float((v - gt).norm()) for lam, v in x.items()}
    assert _tv(x[2.0]) < _tv(x[0.5]) < _tv(x[0.0])  # every weight gives another image
    assert err[0.5] < err[0.0]


def test_tv_stops_at_its_tolerance_before_max_iter_and_is_near_a_longer_run():
    gt = torch.as_tensor(phantom(SIZE, TEST_SEEDS[0]))[None, None]
    op = Inpaint((1, SIZE, SIZE), random_mask((1, SIZE, SIZE), 0.5, seed=0), 0.02)
    y = op.simulate(gt, torch.Generator().manual_seed(0))
    steps = list(SOLVERS["tv"].solve(None, op, y, torch.zeros(21), torch.zeros(1, 1, SIZE, SIZE),
                                     params=SOLVERS["tv"].Params(tol=1e-5, max_iter=200_000), generator=None))
    assert len(steps) == 20 and steps[-1].x is steps[-2].x  # converged: the last steps repeat x
    long = _solve("tv", op, y, tol=0.0, max_iter=5000)
    assert float((steps[-1].x - long).norm() / long.norm()) < 5e-3


# ------------------------------------------------------------------------------ simulate
def test_simulate_passes_pixel_size_to_ct_states_no_value_range_and_resamples():
    img = phantom(24, TEST_SEEDS[1])
    m1 = simulate(img, "ct", {"n_views": 6}, pixel_size=1.0)
    m2 = simulate(img, "ct", {"n_views": 6}, pixel_size=0.25)
    np.testing.assert_allclose(m2.y, 0.25 * m1.y, rtol=1e-5, atol=1e-6)
    assert m1.operator.params["pixel_size"] == 1.0 and m2.operator.params["pixel_size"] == 0.25
    assert m1.value_range is None  # the truth's min/max would be oracle information
    m3 = simulate(img, "denoise", size=16)
    assert m3.ground_truth.shape == (1, 16, 16) and m3.image_shape == (1, 16, 16)
    assert abs(float(m3.ground_truth.mean()) - float(img.mean())) < 0.02  # area-averaged, not cropped


# ---------------------------------------------------------------------------- warm start
def test_truncated_schedule_spends_every_step_below_the_start_level():
    s = warm_start.truncated_schedule(lambda n: karras_sigmas(n, 0.01, 80.0), 10, 0.5)
    assert len(s) == 11 and float(s[0]) <= 0.5 and float(s[-1]) == 0.0
    assert float(s[0]) > 0.3  # the refinement lands close to the start level
    assert bool((s[:-1] > s[1:]).all())


@pytest.fixture(scope="module")
def gauss_problem():
    imgs = torch.stack([torch.as_tensor(phantom(SIZE, TEST_SEEDS[k]))[None] for k in range(2, 60)])
    prior = StationaryGaussianPrior.fit(imgs)
    gt = phantom(SIZE, TEST_SEEDS[0])[None]
    op = Inpaint((1, SIZE, SIZE), random_mask((1, SIZE, SIZE), 0.5, seed=0), 0.02)
    y = op.simulate(torch.as_tensor(gt)[None], torch.Generator().manual_seed(0))[0].numpy()
    m = Measurement(y=y, operator=op.to_spec(), noise_sigma=0.02, value_range=(0.0, 1.0), ground_truth=gt)
    return prior, m


def test_warm_start_starts_from_tv_at_the_estimated_level_and_records_it(gauss_problem):
    prior, m = gauss_problem
    cfg = engine.RunConfig(solver="diffpir", steps=8, samples=2, warm_start="tv", prior_fit=False)
    setup = engine.prepare(m, cfg, prior)
    warm = setup.warm
    assert warm is not None and len(setup.sigmas) == 9
    assert math.isclose(float(setup.sigmas[0]), warm.sigma_start) and warm.sigma_start <= 2.0 * warm.error_estimate + 1e-9
    # the start image is the TV reconstruction: it fits the data to about the noise level
    x_tv = warm_start.classical(setup.op, setup.y)
    torch.testing.assert_close(warm.x0, x_tv)
    result = next(e.result for e in engine.run(m, cfg, denoiser=prior) if isinstance(e, engine.Finished))
    assert result.provenance["warm_start"] == "tv"
    assert result.provenance["warm_sigma_start"] == pytest.approx(warm.sigma_start)
    with pytest.raises(engine.InputError, match="warm start"):
        engine.prepare(m, engine.RunConfig(warm_start="bogus"), prior)


def test_warm_error_estimate_grows_with_the_missing_data():
    gt = torch.as_tensor(phantom(SIZE, TEST_SEEDS[0]))[None, None]
    estimates = []
    for missing in (0.1, 0.8):
        op = Inpaint((1, SIZE, SIZE), random_mask((1, SIZE, SIZE), missing, seed=0), 0.01)
        _, e = warm_start.estimate_error(op, op.simulate(gt, torch.Generator().manual_seed(0)))
        estimates.append(e)
    assert estimates[1] > 2 * estimates[0]


# --------------------------------------------------------------------------- weights
def test_auto_weight_serves_the_fast_presets_solver_through_its_proximal_lam(gauss_problem):
    prior, m = gauss_problem
    config = engine.RunConfig.from_preset("fast", samples=1, warm_start="none", prior_fit=False)
    choice = choose_weight(m, config, denoiser=prior, iterations=5)
    assert (choice.solver, choice.param) == ("dpmpp_3m_sde", "lam") and choice.bracketed
    # the bisection brackets the noise level: the chosen trial explains the data to it within 25 %
    assert abs(math.log(choice.residual_ratio)) < math.log(1.25)
    ratios = dict(choice.tried)
    assert ratios[0.1] < 1.0 < ratios[1e3]  # the residual grows with lam, as for DiffPIR
    with pytest.raises(engine.InputError, match="guidance proximal"):
        choose_weight(m, dataclasses.replace(config, params={"guidance": "projection"}), denoiser=prior)


def test_discrepancy_weight_of_tv_fits_the_data_to_the_noise_level():
    gt = phantom(SIZE, TEST_SEEDS[0])[None]
    op = Denoise((1, SIZE, SIZE), 0.1)
    y = op.simulate(torch.as_tensor(gt)[None], torch.Generator().manual_seed(3))[0].numpy()
    m = Measurement(y=y, operator=op.to_spec(), noise_sigma=0.1, value_range=(0.0, 1.0), ground_truth=gt)
    choice = choose_weight(m, engine.RunConfig(solver="tv", steps=5, samples=1), iterations=7)
    assert choice.bracketed and abs(choice.residual_ratio - 1.0) < 0.05
    assert choice.provenance()["rule"] == "discrepancy"
    with pytest.raises(engine.InputError, match="noise level"):
        choose_weight(Measurement(y=y, operator=op.to_spec(), noise_sigma=0.0), engine.RunConfig(solver="tv"))


# --------------------------------------------------------------------------- prior fit
def test_prior_fit_is_near_one_on_its_training_family_and_fires_on_unlike_images():
    imgs = torch.stack([torch.as_tensor(phantom(SIZE, s))[None] for s in range(200)])
    prior = StationaryGaussianPrior.fit(imgs)  # a prior of the phantom family
    like = torch.as_tensor(phantom(SIZE, TEST_SEEDS[5]))[None]
    checker = torch.as_tensor((np.indices((SIZE, SIZE)).sum(0) % 2).astype(np.float32))[None]
    f_like, f_unlike = prior_fit.fit_statistic(prior, like), prior_fit.fit_statistic(prior, checker)
    assert f_like < prior_fit.THRESHOLD < f_unlike
    assert prior_fit.assess(f_like, f_like, 1.0)["prior_fit_warning"] == 0.0
    assert prior_fit.assess(f_like, f_unlike, 1.0)["prior_fit_warning"] == 1.0
    assert prior_fit.assess(f_like, f_like, 5.0)["prior_fit_warning"] == 1.0  # the data are not explained
    # the line before a run: a misfit of the bundled phantom prior names the general one to try
    text, level = prior_fit.message(f_unlike, "default")
    assert level == "warning" and prior_fit.WARNING in text and "--prior procedural" in text
    assert "--prior procedural" not in prior_fit.message(f_unlike, "procedural")[0]
    assert prior_fit.message(f_like, "default")[1] == "info"


def test_engine_records_the_prior_fit_before_and_after(gauss_problem):
    prior, m = gauss_problem
    events = list(engine.run(m, engine.RunConfig(solver="diffpir", steps=4, samples=2), denoiser=prior))
    metrics = events[-1].result.metrics
    assert {"prior_fit", "prior_fit_after", "prior_fit_warning"} <= set(metrics)
    assert any(isinstance(e, engine.Log) and "Prior fit" in e.message for e in events)


# ---------------------------------------------------------------------- real images, fast
_BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "real_images.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("real_images", _BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["real_images"] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("image", ["camera", "ct"])
def test_real_image_subset_fair_tv_beats_the_direct_reconstruction(bench, image):
    if image == "ct":
        pytest.importorskip("pydicom")
    img = bench.load_image(image, 32)
    assert img.shape == (32, 32) and 0.0 <= img.min() < 0.05 and 0.95 < img.max() <= 1.0
    m = bench.simulate("inpaint", img, 0, image)
    assert m.value_range is None
    fair, oracle = bench.tune_baseline(m, "tv")
    direct = bench.run(m, "direct", {}, 1, 1, prior_fit=False)
    assert abs(fair["residual_ratio"] - 1.0) < 0.1
    assert fair["psnr"] > direct["psnr"] + 3.0 and oracle["psnr"] >= fair["psnr"] - 1e-6


def test_t_coverage_of_exact_gaussian_samples_is_near_nominal(bench):
    rng = np.random.default_rng(0)
    mu = rng.normal(size=(20000,))
    truth = mu + rng.normal(size=(20000,))  # truth and samples: draws of the same posterior
    samples = mu + rng.normal(size=(3, 20000))
    cov = bench.report_md.t_coverage(samples, truth)
    assert 0.87 < cov < 0.93
    q = bench.report_md.ratio_quantiles(samples, truth)  # r <= 1 is the same event as inside the interval
    assert len(q) == 101 and abs(float(np.interp(1.0, q, np.arange(101) / 100)) - cov) < 0.01


def _rows(task, spans, key="default"):
    return [{"image": f"im{i}", "task": task, key: {"ratio_quantiles": list(np.linspace(0.0, s, 101))}}
            for i, s in enumerate(spans)]


def test_calibrated_coverage_fits_the_factor_on_the_other_images_of_the_task(bench):
    # r uniform on [0, s]: the pooled (averaged) quantile function of the others is uniform on
    # [0, mean s], so c = 0.9 mean s and the held-out coverage is min(c / s, 1)
    rows = _rows("inpaint", [1.0, 2.0, 3.0]) + _rows("ct", [10.0, 4.0]) + _rows("deblur", [5.0])
    rows.append({"image": "im9", "task": "inpaint", "default": {"error": "no samples"}})
    cov = bench.report_md.calibrated_coverage(rows, "default")
    expect = {("im0", "inpaint"): 1.0, ("im1", "inpaint"): 0.9, ("im2", "inpaint"): 0.45,
              ("im0", "ct"): 0.36, ("im1", "ct"): 1.0, ("im0", "deblur"): None, ("im9", "inpaint"): None}
    assert cov.keys() == expect.keys()
    for key, value in expect.items():
        assert cov[key] == (None if value is None else pytest.approx(value, abs=1e-9)), key
    assert set(bench.report_md.calibrated_coverage(rows, "diffpir").values()) == {None}


_TINY = ["--images", "phantom", "--size", "16", "--prior", "gaussian", "--steps", "3", "--samples", "2",
         "--device", "cpu", "--figures"]


def _counting(bench, monkeypatch):
    calls = []
    original = bench.run_method

    def counted(m, method, args):
        calls.append(method)
        return original(m, method, args)

    monkeypatch.setattr(bench, "run_method", counted)
    return calls


def test_real_images_resume_skips_finished_runs(bench, tmp_path, monkeypatch):
    import json
    calls = _counting(bench, monkeypatch)
    out = ["--out", str(tmp_path)]
    assert bench.main([*_TINY, "--tasks", "inpaint", "--methods", "tv", "diffpir", *out]) == 0
    assert calls == ["tv", "diffpir"]
    first = json.loads((tmp_path / "real_images.json").read_text())
    row = first["rows"][0]
    assert {"tv_fair", "tv_oracle", "diffpir"} <= row.keys() and len(row["diffpir"]["ratio_quantiles"]) == 101
    assert bench.main([*_TINY, "--tasks", "inpaint", "--methods", "tv", "diffpir", *out]) == 0
    assert calls == ["tv", "diffpir"]  # nothing ran again
    assert bench.main([*_TINY, "--tasks", "inpaint", "--methods", "tv", "diffpir", "ddim", *out]) == 0
    assert calls == ["tv", "diffpir", "ddim"]  # only the new method
    again = json.loads((tmp_path / "real_images.json").read_text())["rows"][0]
    assert again["diffpir"] == row["diffpir"] and again["ddim"]["psnr"] is not None
    assert "| image | task | diffpir | ddim |" in (tmp_path / "real_images.md").read_text()
    with pytest.raises(SystemExit, match="prior"):  # another prior is another evaluation
        bench.main([*_TINY[:4], "--prior", "default", *_TINY[6:], "--tasks", "inpaint", "--methods", "tv", *out])


def test_real_images_part_runs_every_other_pair(bench, tmp_path, monkeypatch):
    calls = _counting(bench, monkeypatch)
    tasks = ["--tasks", "inpaint", "deblur", "sr_x2", "--methods", "cg"]
    assert bench.main([*_TINY, *tasks, "--part", "1/2", "--out", str(tmp_path)]) == 0
    import json
    rows = json.loads((tmp_path / "real_images.json").read_text())["rows"]
    assert [(r["image"], r["task"]) for r in rows] == [("phantom", "deblur")] and calls == ["cg"]


def test_inapplicable_solver_is_an_error_entry_and_the_run_goes_on(bench, tmp_path):
    import json
    assert bench.main([*_TINY, "--tasks", "ct", "--methods", "ddrm", "diffpir", "--out", str(tmp_path)]) == 0
    row = json.loads((tmp_path / "real_images.json").read_text())["rows"][0]
    assert "SVD" in row["ddrm"]["error"] and "psnr" not in row["ddrm"]
    assert row["diffpir"]["psnr"] > 10.0
    md = (tmp_path / "real_images.md").read_text()
    assert "| phantom | ct | error | **" in md  # the per-solver table: ddrm failed, diffpir is the row's best


def test_merge_unites_the_methods_of_partial_files(bench, tmp_path):
    import json

    def entry(psnr):
        return {"psnr": psnr, "ssim": 0.5, "seconds": 1.0}

    a = {"settings": {"prior": "gaussian", "methods": ["tv", "diffpir"]},
         "rows": [{"image": "ct", "task": "ct", "tv_fair": entry(30.0), "tv_oracle": entry(31.0),
                   "diffpir": {"error": "out of memory"}},
                  {"image": "mr", "task": "ct", "tv_fair": entry(25.0)}]}
    b = {"settings": {"prior": "gaussian", "methods": ["diffpir", "dps"]},
         "rows": [{"image": "ct", "task": "ct", "diffpir": entry(32.0), "dps": entry(29.0)}]}
    paths = []
    for name, report in (("a.json", a), ("b.json", b)):
        paths.append(tmp_path / name)
        paths[-1].write_text(json.dumps(report))
    assert bench.main(["--merge", *map(str, paths), "--out", str(tmp_path / "m")]) == 0
    merged = json.loads((tmp_path / "m" / "real_images.json").read_text())
    rows = {(r["image"], r["task"]): r for r in merged["rows"]}
    assert set(rows[("ct", "ct")]) == {"image", "task", "tv_fair", "tv_oracle", "diffpir", "dps"}
    assert rows[("ct", "ct")]["diffpir"]["psnr"] == 32.0 and "dps" not in rows[("mr", "ct")]
    assert merged["settings"]["methods"] == ["tv", "diffpir", "dps"]
    md = (tmp_path / "m" / "real_images.md").read_text()
    assert "| ct | ct | **32.00*** | 29.00 |" in md  # best of the row, and >= TV fair (30.00)
    assert "**dps**: >= TV fair on 0 of 1 rows; mean gap to TV fair -1.00 dB, to TV oracle -2.00 dB" in md
    b["settings"]["prior"] = "default"
    paths[1].write_text(json.dumps(b))
    with pytest.raises(SystemExit, match="different priors"):
        bench.main(["--merge", *map(str, paths), "--out", str(tmp_path / "m2")])


# ------------------------------------------------------------------------------------- CLI
def test_cli_weight_auto_and_warm_start_reach_the_result_file(tmp_path, capsys):
    from diffrecon.cli import main
    from diffrecon.io import read_result

    m = tmp_path / "m.h5"
    assert main(["demo", "inpaint", "--out", str(m), "--size", "16"]) == 0
    out = tmp_path / "tv.h5"
    assert main(["reconstruct", str(m), "--out", str(out), "--solver", "tv", "--weight", "auto", "--steps", "5",
                 "--samples", "1", "--device", "cpu"]) == 0, capsys.readouterr().err
    r = read_result(out)
    choice = r.provenance["weight_choice"]
    assert choice["rule"] == "discrepancy" and r.provenance["params"]["lam"] == pytest.approx(choice["value"])
    assert abs(r.metrics["residual_ratio"] - 1.0) < 0.1
    out = tmp_path / "warm.h5"
    assert main(["reconstruct", str(m), "--out", str(out), "--prior", "gaussian", "--warm-start", "tv", "--steps", "3",
                 "--samples", "2", "--device", "cpu", "--precision", "fp32"]) == 0, capsys.readouterr().err
    r = read_result(out)
    assert r.provenance["warm_start"] == "tv" and r.provenance["warm_sigma_start"] > 0
    assert "prior_fit" in r.metrics


# ------------------------------------------------------------------------------------ window
def test_window_auto_weight_fills_the_form_and_the_run_records_the_choice(qtbot, tmp_path):
    from PySide6 import QtCore

    from diffrecon.demo import make_demo
    from diffrecon.gui.main_window import MainWindow

    win = MainWindow(settings=QtCore.QSettings(str(tmp_path / "s.ini"), QtCore.QSettings.Format.IniFormat))
    qtbot.addWidget(win)
    win.set_measurement(make_demo("inpaint", size=16))
    win.solver.set_config(engine.RunConfig(solver="tv", steps=5, samples=1))
    assert win.auto_weight.isEnabled() and win.solver.warm_start.currentText() == "none"
    with qtbot.waitSignal(win.auto_weight.status, timeout=60_000,
                          check_params_cb=lambda text, level: text.startswith("Auto weight: lam")):
        win.auto_weight.click()
    qtbot.waitUntil(lambda: win.auto_weight.isEnabled(), timeout=10_000)
    config = win.solver.config()
    assert config.weight_choice["rule"] == "discrepancy"
    assert config.params["lam"] == pytest.approx(config.weight_choice["value"])
    win.solver.form.set_values({"lam": 3.0})  # a hand-edited value is no longer the assistant's choice
    assert win.solver.config().weight_choice is None
    win.solver.set_config(engine.RunConfig(solver="diffpir", warm_start="tv"))
    assert win.solver.config().warm_start == "tv"
