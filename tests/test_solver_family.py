"""The solver family added in issue 3 (dds, pigdm, daps, reddiff, pnp_admm, ddpm, ddim,
dpmpp_2m): what the registry says about them, and posterior checks with the exact Gaussian prior
where the algorithm guarantees something."""
from __future__ import annotations

import pytest
import torch

from diffrecon.solvers import SOLVERS
from posterior_reference import gaussian_posterior
from test_solvers import PRIOR, problem, run

NEW = ["dds", "pigdm", "daps", "reddiff", "pnp_admm", "ddpm", "ddim", "dpmpp_2m"]

# The registry-wide contract (one detached step per interval, seeds, batch independence, guidance
# per sample) is tested for every solver, these included, in test_solvers.py.


def test_registry_says_which_settings_give_posterior_samples():
    posterior = {name: SOLVERS[name].is_posterior(SOLVERS[name].Params()) for name in NEW}
    assert posterior == {"dds": True, "pigdm": True, "daps": True, "reddiff": False, "pnp_admm": False,
                         "ddpm": False, "ddim": False, "dpmpp_2m": False}  # ddpm: prior samples
    assert SOLVERS["ddim"].is_posterior(SOLVERS["ddim"].Params(eta=0.5))
    assert not SOLVERS["dds"].is_posterior(SOLVERS["dds"].Params(eta=0.0))


def test_dds_without_conjugate_gradient_steps_is_unguided_ddim_with_the_same_eta():
    op, y = problem()
    dds = run("dds", op, y, params=SOLVERS["dds"].Params(eta=0.5, cg_steps=0))[-1].x
    ddim = run("ddim", op, y, params=SOLVERS["ddim"].Params(eta=0.5, guidance="none"))[-1].x
    torch.testing.assert_close(dds, ddim, rtol=0, atol=1e-6)


@pytest.mark.parametrize("guidance", ["projection", "dps"])
@pytest.mark.parametrize("name", ["ddim", "dpmpp_2m"])
def test_guided_fast_samplers_end_closer_to_the_measured_pixels_than_unguided(name, guidance):
    op, y = problem()
    Params = SOLVERS[name].Params
    guided = run(name, op, y, steps=10, params=Params(guidance=guidance))[-1].x
    free = run(name, op, y, steps=10, params=Params(guidance="none"))[-1].x
    err = lambda x: (op.A(x) - y).square().sum().item()  # noqa: E731
    assert err(guided) < 0.3 * err(free)


# --------------------------------------------------------------- exact Gaussian prior
def test_dpmpp_2m_without_guidance_transports_noise_to_the_prior_with_its_covariance():
    # The probability-flow ODE with the exact denoiser maps N(0, sigma_max^2) onto the prior; a
    # second-order solver gets the covariance within Monte-Carlo error (~0.1) in 30 steps.
    op, y = problem("denoise")
    xs = run("dpmpp_2m", op, y, steps=30, indices=range(64),
             params=SOLVERS["dpmpp_2m"].Params(guidance="none"))[-1].x.double()
    cov = PRIOR.covariance_matrix()
    assert 0.8 < (xs.var(0).sum() / cov.trace()).item() < 1.2
    assert ((xs.mean(0) - PRIOR.mean.double()).norm() / cov.trace().sqrt()).item() < 0.25


def test_ddpm_draws_prior_samples_whose_spread_approaches_the_prior_covariance():
    # Ancestral sampling under-disperses with coarse steps (q(x_{t-1}|x_t, x0_hat) drops
    # Cov[x0|x_t]); 30 steps reach about 0.7 of the prior variance, 10 steps about 0.5.
    op, y = problem("denoise")
    cov = PRIOR.covariance_matrix().trace()
    ratio = {n: (run("ddpm", op, y, steps=n, indices=range(32))[-1].x.double().var(0).sum() / cov).item()
             for n in (10, 30)}
    assert 0.35 < ratio[10] < ratio[30] < 1.05


# (mean-error bound, variance-ratio range), 32 samples, 20 steps (measured values below are at 64
# samples, 30 steps): mean error ||mean_hat - mean|| / ||mean - mu||, Monte-Carlo floor ~0.06; the
# direct reconstruction scores 0.23 (denoise) and 0.59 (inpaint).
POSTERIOR_BOUNDS = {
    # DAPS's Langevin targets p(x0 | x0_hat, y) exactly for a Gaussian surrogate of r_t = sigma_t:
    # close to the posterior when every pixel is measured (measured 0.09, 1.12).
    ("daps", "denoise"): (0.2, (0.8, 1.5)),
    # PiGDM's r_t^2 = sigma^2/(1 + sigma^2) assumes unit data variance (this prior has 0.25):
    # a good mean, a spread somewhat under the posterior's (measured 0.10, 0.80; 0.19, 0.83).
    ("pigdm", "denoise"): (0.2, (0.55, 1.1)),
    ("pigdm", "inpaint"): (0.3, (0.55, 1.2)),
    # DDS's CG step projects exactly onto the measured pixels of a mask (measured 0.16, 0.99).
    ("dds", "inpaint"): (0.3, (0.7, 1.3)),
    # PnP-ADMM with the Wiener denoiser converges near the MAP = posterior mean (measured 0.009).
    ("pnp_admm", "denoise"): (0.05, (0.0, 1e-9)),
    # RED-diff's mean is a point estimate of the posterior mean, better than direct (0.23).
    ("reddiff", "inpaint"): (0.35, (0.2, 0.9)),
}


@pytest.mark.parametrize("name,kind", sorted(POSTERIOR_BOUNDS))
def test_new_solver_mean_and_variance_agree_with_the_exact_gaussian_posterior(name, kind):
    op, y = problem(kind)
    mean, cov = gaussian_posterior(PRIOR, op, y)
    # DAPS with half the paper's Langevin steps: the data directions still relax (lr / L per step).
    params = SOLVERS[name].Params(langevin_steps=50) if name == "daps" else None
    xs = run(name, op, y, steps=20, indices=range(32), params=params)[-1].x.double()
    mean_err = ((xs.mean(0) - mean).norm() / (mean - PRIOR.mean.double()).norm()).item()
    var_ratio = (xs.var(0).sum() / cov.trace()).item()
    bound, (lo, hi) = POSTERIOR_BOUNDS[name, kind]
    assert mean_err < bound, f"{name}/{kind}: mean error {mean_err:.3f}"
    assert lo <= var_ratio < hi, f"{name}/{kind}: variance ratio {var_ratio:.3f}"
