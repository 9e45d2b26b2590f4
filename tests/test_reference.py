"""The reference sampler (split Gibbs with noise splitting): its z-step on every operator kind, its
x-step against the exact p(x | z), whole chains against the exact posterior, its diagnostics."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from diffrecon.linalg import chebyshev_apply, chebyshev_coefficients
from diffrecon.operators import Denoise
from diffrecon.schedule import karras_sigmas
from diffrecon.solvers import SOLVERS, SampleRNG
from diffrecon.solvers.diagnostics import effective_sample_size, split_rhat
from diffrecon.solvers.reference import _z_noise_factory, reverse_diffusion
from diffrecon.validate.exact import exact_posterior
from diffrecon.validate.problems import Problem, make_prior
from test_operators import FACTORIES, _dense, _real

F2 = 0.81  # (rho ||A|| / sigma_y)^2 at the default rho_fraction 0.9


class _Basis:
    """A stand-in random stream whose 'draws' are the unit vectors of the real image space, so the
    z-step's noise map comes out as a matrix."""

    def __init__(self, n: int, complex_: bool):
        self.n, self.complex = n, complex_

    def randn(self, shape, dtype=torch.float32):
        eye = torch.eye(self.n)
        if self.complex and dtype.is_complex:
            eye = torch.cat([eye, 1j * eye]).to(dtype)
        elif dtype.is_complex:
            eye = eye.to(dtype)
        return eye.reshape(eye.shape[0], *shape) if len(shape) > 1 else eye


@pytest.mark.parametrize("kind", sorted(FACTORIES))
def test_z_step_noise_has_covariance_identity_minus_c_AtA_on_every_operator_kind(kind):
    op = FACTORIES[kind][-1]()  # the last factory of each kind: multi-coil MRI, sparse matrix, ...
    n = int(np.prod(op.image_shape))
    c = F2 / op.norm() ** 2
    noise = _z_noise_factory(op, F2, 24, _Basis(n, op.image_complex))(c)
    P = _real(noise)  # rows: the noise map applied to each real unit vector
    D = _dense(op)
    expected = torch.eye(P.shape[1], dtype=torch.float64) - c * D.T @ D
    err = (P.T @ P - expected).abs().max().item()
    assert err < 2e-4, f"{kind}: covariance off by {err:.2e} (SVD: {op.has_svd})"


def test_chebyshev_polynomial_reproduces_a_matrix_square_root():
    d = torch.linspace(0.0, 0.8, 50, dtype=torch.float64)
    coeffs = chebyshev_coefficients(lambda u: math.sqrt(1 - u), 0.0, 0.9, 24)
    v = torch.ones(1, 50, dtype=torch.float64)
    out = chebyshev_apply(lambda w: d * w, v, coeffs, 0.0, 0.9)
    torch.testing.assert_close(out[0], (1 - d).sqrt(), rtol=0, atol=1e-6)


@pytest.mark.parametrize("prior_kind", ["gaussian", "gmm"])
def test_x_step_draws_match_the_exact_posterior_given_the_noisy_image(prior_kind):
    prior, level, k = make_prior(prior_kind, 8), 0.05, 2000
    z = prior.sample(1, torch.Generator().manual_seed(0)) + level * torch.randn(1, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    post = exact_posterior(prior, Denoise((1, 8, 8), level), z)
    rng = SampleRNG(0, range(k))
    with torch.no_grad():
        *_, (x, _, _) = reverse_diffusion(prior, z.expand(k, -1, -1, -1), level, 20, rng)
    xs = x.reshape(k, -1).double()
    var_ratio = float(xs.var(0).sum() / post.variance.sum())
    floor = math.sqrt(float(post.variance.sum()) / k)  # Monte-Carlo error of the mean
    assert 0.93 < var_ratio < 1.07, var_ratio
    assert float((xs.mean(0) - post.mean).norm()) < 1.5 * floor


@pytest.mark.parametrize("prior_kind,op_kind", [("gaussian", "inpaint"), ("gmm", "ct")])
def test_chains_reach_the_exact_sampler_floor(prior_kind, op_kind):
    problem = Problem(prior_kind, op_kind, 8)
    _, y = problem.draw(1000)
    post = exact_posterior(problem.prior, problem.op, y)
    k, info = 32, SOLVERS["reference"]
    rng = SampleRNG(0, range(k))
    sigmas = karras_sigmas(800, 0.002, 80.0)
    with torch.no_grad():
        *_, last = info.solve(problem.prior, problem.op, y, sigmas, 80 * rng.randn(problem.op.image_shape),
                              params=info.Params(), generator=rng)
    xs = last.x.reshape(k, -1).double()
    var_ratio = float(xs.var(0).sum() / post.variance.sum())
    floor = math.sqrt(float(post.variance.sum()) / k)
    assert 0.8 < var_ratio < 1.2, var_ratio  # exact draws: within about 0.1 of 1 at 32 samples
    assert float((xs.mean(0) - post.mean).norm()) < 1.5 * floor
    assert last.info["trace"].shape[1:] == (k, 4) and math.isfinite(last.info["split_rhat"])


def test_split_rhat_flags_chains_stuck_apart_and_ess_counts_independent_draws():
    g = np.random.default_rng(0)
    iid = g.standard_normal((400, 4, 2))
    assert abs(split_rhat(iid) - 1) < 0.02
    assert 0.7 * 1600 < effective_sample_size(iid) < 1.3 * 1600
    stuck = iid + np.arange(4)[None, :, None]  # chains around different values
    assert split_rhat(stuck) > 1.5
    ar = np.zeros((400, 4, 1))
    for t in range(1, 400):  # AR(1) with phi = 0.9: ESS ~ N (1 - phi) / (1 + phi)
        ar[t] = 0.9 * ar[t - 1] + g.standard_normal((4, 1))
    assert 0.5 * 84 < effective_sample_size(ar) < 1.6 * 84


def test_engine_reports_split_rhat_and_ess_over_the_chains_of_all_batches():
    from diffrecon.engine import Finished, RunConfig, run

    problem = Problem("gaussian", "inpaint", 8)
    truth, y = problem.draw(0)
    config = RunConfig(solver="reference", steps=400, samples=4, seed=0, device="cpu", precision="fp32",
                       batch_size=2, preview_interval=1e9)
    result = [e for e in run(problem.measurement(y, truth), config, denoiser=problem.prior)
              if isinstance(e, Finished)][0].result
    assert result.provenance["batches"] == [2, 2]
    assert result.metrics["chain_iterations"] == 14  # 20 Gibbs iterations of 20 steps, 6 of them burn-in
    assert result.metrics["split_rhat"] > 1 and result.metrics["ess"] > 0
