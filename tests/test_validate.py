"""The validity report's machinery: exact posteriors, its statistics, a tiny report run, the CLI."""
from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch

from diffrecon.errors import InputError
from diffrecon.priors.gmm import GaussianMixturePrior
from diffrecon.cli.validate import add_validate_parser, run_validate
from diffrecon.validate import render_markdown, render_png
from diffrecon.validate.exact import dense_forward, exact_posterior, gaussian_update
from diffrecon.validate.problems import Problem, make_prior
from diffrecon.validate.report import Row, Settings, evaluate, verdict
from diffrecon.validate.stats import (eigen_variance_ratios, ks_reject_fraction, mean_error,
                                      t_interval_covered, variance_ratio)
from posterior_reference import gaussian_posterior, gmm_posterior

SIZE = 8


def test_gmm_posterior_of_a_one_component_mixture_is_the_gaussian_posterior():
    gauss = make_prior("gaussian", SIZE)
    mix = GaussianMixturePrior(torch.ones(1), gauss.mean[None], gauss.power[None])
    problem = Problem("gaussian", "inpaint", SIZE)
    _, y = problem.draw(0)
    mean, cov = gaussian_posterior(gauss, problem.op, y)
    post = gmm_posterior(mix, problem.op, y)
    torch.testing.assert_close(post.means[0], mean.reshape(-1), rtol=0, atol=1e-6)
    torch.testing.assert_close(post.covs[0], cov, rtol=0, atol=1e-6)
    assert post.weights.tolist() == [1.0]


def test_gaussian_update_evidence_is_the_multivariate_normal_density_of_y():
    problem = Problem("gaussian", "ct", SIZE)
    _, y = problem.draw(1)
    A, rows = dense_forward(problem.op)
    mu, C = problem.prior.mean.reshape(-1).double(), problem.prior.covariance_matrix()
    s2 = problem.op.noise_sigma**2
    _, _, log_evidence = gaussian_update(mu, C, A, y.reshape(-1).double()[rows], s2)
    S = A @ C @ A.T + s2 * torch.eye(A.shape[0], dtype=torch.float64)
    expected = torch.distributions.MultivariateNormal(A @ mu, S).log_prob(y.reshape(-1).double()[rows])
    assert abs(log_evidence - float(expected)) < 1e-6 * abs(float(expected)) + 1e-9


def test_gmm_posterior_puts_its_weight_on_the_component_that_made_the_data():
    problem = Problem("gmm", "inpaint", SIZE)
    g = torch.Generator().manual_seed(0)
    bright = problem.prior.means[1] + 0.05 * torch.randn(1, SIZE, SIZE, generator=g)  # near component 1
    y = problem.op.A(bright[None])
    post = gmm_posterior(problem.prior, problem.op, y)
    assert post.weights[1] > 0.999
    torch.testing.assert_close(post.mean, post.means[1], rtol=0, atol=1e-3)


def test_exact_draws_pass_the_statistics_and_shifted_or_shrunk_draws_fail_them():
    problem = Problem("gmm", "ct", SIZE)
    _, y = problem.draw(2)
    post = gmm_posterior(problem.prior, problem.op, y)
    draws = post.sample(400, torch.Generator().manual_seed(0)).numpy()
    prior_mean = torch.einsum("k,kchw->chw", problem.prior.weights, problem.prior.means).numpy()
    assert mean_error(draws, post, prior_mean) < 0.15
    med, lo, hi = variance_ratio(draws, post)
    assert 0.85 < med < 1.15 and 0.7 < lo <= med <= hi < 1.3
    assert ks_reject_fraction(draws, post) < 0.15  # about 0.05 expected
    std = post.variance.sqrt().numpy()
    assert ks_reject_fraction(draws + std, post) > 0.9
    shrunk = post.mean.numpy() + 0.3 * (draws - post.mean.numpy())
    assert variance_ratio(shrunk, post)[0] < 0.12 and ks_reject_fraction(shrunk, post) > 0.5


SETTINGS = Settings(size=SIZE, samples=8, steps=(4,), measurements=2, exact_measurements=4)


def test_report_scores_a_posterior_solver_and_proves_a_deterministic_one_reproducible_and_not_a_posterior():
    problem = Problem("gaussian", "inpaint", SIZE)
    exact = evaluate(problem, "exact", SETTINGS)
    ddrm = evaluate(problem, "ddrm", SETTINGS, 4)
    pnp = evaluate(problem, "pnp_admm", SETTINGS, 4)
    assert exact.measurements == 4 and ddrm.measurements == pnp.measurements == 2
    assert 0.5 < exact.coverage <= 1.0 and 0.4 < exact.var_ratio[0] < 2.0 and 0.3 < exact.mean_error < 3
    assert np.isfinite(ddrm.mean_error) and np.isfinite(ddrm.var_best) and ddrm.reproducible is None
    # PnP-ADMM ignores the seed: reproducible, zero spread, so its "intervals" cover nothing.
    assert pnp.reproducible is True and pnp.var_ratio[0] < 1e-9 and pnp.coverage < 0.2
    assert verdict(pnp, exact) == "fail: not a posterior sampler"
    text = render_markdown([exact, ddrm, pnp], SETTINGS)
    assert "| ddrm | 4 | posterior |" in text and "point/seed spread (same seed: identical)" in text


def _row(**kw) -> Row:
    base = dict(problem="p", solver="s", steps=50, posterior=True, mean_error=1.0, var_ratio=(1.0, 0.9, 1.1),
                var_best=1.0, var_worst=1.0, ks_reject=0.05, coverage=0.90)
    return Row(**{**base, **kw})


@pytest.mark.parametrize("change,missed", [
    (dict(var_ratio=(0.85, 0.8, 0.9)), "var/pixel"), (dict(var_best=1.2), "var/best dirs"),
    (dict(var_worst=0.8), "var/least dirs"), (dict(ks_reject=0.2), "KS"), (dict(coverage=0.86), "coverage"),
    (dict(mean_error=1.6), "mean")])
def test_verdict_passes_a_row_that_meets_every_criterion_and_names_each_one_missed(change, missed):
    exact = _row(solver="exact")
    assert verdict(_row(coverage=0.925, mean_error=1.45, ks_reject=0.1), exact) == "pass"
    out = verdict(_row(**change), exact)
    assert out.startswith("fail: ") and missed in out and out.count(",") == 0


def test_eigen_directions_catch_an_error_that_per_pixel_variances_hide():
    problem = Problem("gaussian", "ct", SIZE)
    _, y = problem.draw(3)
    post = exact_posterior(problem.prior, problem.op, y)
    draws = post.sample(2000, torch.Generator().manual_seed(0)).numpy()
    lam, vecs = np.linalg.eigh(post.covs[0].numpy())
    bad = draws + np.random.default_rng(0).standard_normal((2000, 1)) * 4 * np.sqrt(lam[0]) * vecs[:, :1].T  # 17x the variance along the best-measured direction
    assert 0.95 < variance_ratio(bad, post)[0] < 1.1  # the marginals barely move ...
    best, least = eigen_variance_ratios(bad, post)
    assert best > 1.5 and 0.9 < least < 1.1  # ... the best-measured quarter does
    assert all(0.9 < r < 1.1 for r in eigen_variance_ratios(draws, post))


@pytest.mark.parametrize("k", [4, 8])
def test_t_interval_covers_a_new_draw_at_the_nominal_rate_for_few_samples(k):
    g = np.random.default_rng(k)
    samples, truth = g.standard_normal((k, 40000)), g.standard_normal(40000)
    covered, pixels = t_interval_covered(samples, truth)
    assert pixels == 40000 and abs(covered / pixels - 0.90) < 0.01


def test_report_marks_a_solver_the_operator_cannot_serve_and_draws_the_chart(tmp_path):
    problem = Problem("gmm", "ct", SIZE)
    row = evaluate(problem, "ddrm", SETTINGS, 4)
    assert "SVD" in row.note and row.measurements == 0
    exact = evaluate(problem, "exact", SETTINGS)
    assert "| ddrm | 4 | n/a | ddrm needs an SVD" in render_markdown([exact, row], SETTINGS)
    png = tmp_path / "chart.png"
    render_png([exact, row], png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def _args(*argv):
    parser = argparse.ArgumentParser()
    add_validate_parser(parser.add_subparsers())
    return parser.parse_args(["validate", *argv])


def test_cli_refuses_an_unknown_or_classical_solver_and_too_few_samples(tmp_path):
    with pytest.raises(InputError, match="--solvers"):
        run_validate(_args("--solvers", "nope", "--out", str(tmp_path / "r.md")))
    with pytest.raises(InputError, match="--solvers"):
        run_validate(_args("--solvers", "cg", "--out", str(tmp_path / "r.md")))
    with pytest.raises(InputError, match="--samples"):
        run_validate(_args("--solvers", "ddrm", "--samples", "2", "--out", str(tmp_path / "r.md")))
    with pytest.raises(InputError, match="--steps"):
        run_validate(_args("--solvers", "ddrm", "--steps", "50,x", "--out", str(tmp_path / "r.md")))
    with pytest.raises(SystemExit):
        _args("--size", "12")


def test_cli_writes_the_markdown_report_and_its_chart(tmp_path, capsys):
    out = tmp_path / "report.md"
    assert run_validate(_args("--solvers", "ddrm", "--samples", "4", "--steps", "2", "--measurements", "1",
                              "--out", str(out))) == 0
    text = out.read_text()
    assert text.count("| exact |  | exact draws |") == 4 and text.count("| ddrm | 2 | posterior |") == 2
    assert "## Summary" in text and "passing all four problems at <= 200 steps: 0" in text
    assert "![validity chart](report.png)" in text and (tmp_path / "report.png").stat().st_size > 5000
    assert "## gmm / ct" in capsys.readouterr().out


def test_rows_in_parallel_processes_equal_the_serial_rows():
    """--jobs: the same rows (every run is seeded by its measurement), only computed side by side."""
    import dataclasses

    from diffrecon.validate import Settings, validate
    from diffrecon.validate.problems import Problem

    settings = Settings(size=8, samples=4, steps=(3,), measurements=1, exact_measurements=2)
    problems = [Problem("gaussian", "inpaint", 8)]
    serial = validate(["diffpir"], settings, problems)
    parallel = validate(["diffpir"], dataclasses.replace(settings, jobs=2), problems)
    assert [(r.solver, r.steps) for r in parallel] == [("exact", 0), ("diffpir", 3)]
    for a, b in zip(serial, parallel):
        assert (a.solver, a.steps, a.verdict) == (b.solver, b.steps, b.verdict)
        assert a.mean_error == pytest.approx(b.mean_error, rel=1e-5)
        assert a.var_ratio == pytest.approx(b.var_ratio, rel=1e-5)
