"""The few-step samplers (fvfo, dpmpp_3m_sde), multilevel Euler-Maruyama (mlem) and schedules
chosen for a fixed budget, on the exact Gaussian prior of test_solvers (16x16, variance 0.25).

Tolerances on sample statistics come from the sample size: for K draws of N(mu, C),
``tr(S)`` has standard deviation ``sqrt(2 tr(C^2) / (K - 1))`` and ``||mean - mu||^2`` has mean
``tr(C) / K`` and standard deviation ``sqrt(2 tr(C^2)) / K``; the bounds are four of those."""
from __future__ import annotations

import math

import pytest
import torch

from diffrecon.operators.identity import Denoise
from diffrecon.operators.inpaint import Inpaint
from diffrecon.priors.base import Denoiser, PriorCard
from diffrecon.priors.gaussian import StationaryGaussianPrior
from diffrecon.schedule import karras_sigmas
from diffrecon.solvers import SOLVERS, SampleRNG
from diffrecon.solvers.budget_schedule import budget_sigmas, mean_psnr, simulated_problems
from diffrecon.solvers.mlem import Multilevel, expected_cost, family_levels, resolution_levels
from test_solvers import MASK, PRIOR, SHAPE

COV = PRIOR.covariance_matrix()
TR, TR2 = float(COV.trace()), float(torch.trace(COV @ COV))


def sample(name, op, y, steps, k, params, denoiser=PRIOR, seed=0, sigma_max=20.0):
    info = SOLVERS[name]
    sigmas = karras_sigmas(steps, 0.005, sigma_max)
    rng = SampleRNG(seed, range(k))
    x = float(sigmas[0]) * rng.randn(SHAPE)
    with torch.no_grad():
        return list(info.solve(denoiser, op, y, sigmas, x, params=params, generator=rng))


def prior_statistics(xs: torch.Tensor) -> tuple[float, float]:
    """(variance ratio tr(S) / tr(C), squared mean error ||mean - mu||^2) of draws ``xs``."""
    xs = xs.double()
    return float(xs.var(0).sum()) / TR, float((xs.mean(0) - PRIOR.mean.double()).square().sum())


def unguided(name, **kw):
    return SOLVERS[name].Params(guidance="none", **kw)


# ------------------------------------------------------------------ prior sampling, no measurement
@pytest.mark.parametrize("name,steps", [("fvfo", 200), ("dpmpp_3m_sde", 50)])
def test_unguided_sampler_draws_the_prior_mean_and_variance_within_sampling_error(name, steps):
    k = 256 if name == "fvfo" else 128
    op = Denoise(SHAPE, 0.2)
    xs = sample(name, op, op.A(PRIOR.mean[None]), steps, k, unguided(name))[-1].x
    ratio, mean_err2 = prior_statistics(xs)
    assert abs(ratio - 1) < 4 * math.sqrt(2 * TR2 / (k - 1)) / TR, f"variance ratio {ratio:.3f}"
    assert mean_err2 < TR / k + 4 * math.sqrt(2 * TR2) / k, f"mean error^2 {mean_err2:.5f}"


def test_forward_value_error_has_the_opposite_sign_to_ddims_and_is_first_order():
    # Same starting noise for all runs, so the Monte-Carlo part cancels against the converged ODE.
    op = Denoise(SHAPE, 0.2)
    y = op.A(PRIOR.mean[None])
    ref, _ = prior_statistics(sample("dpmpp_2m", op, y, 400, 128, SOLVERS["dpmpp_2m"].Params(guidance="none"))[-1].x)
    err = {}
    for name in ("ddim", "fvfo"):
        for steps in (32, 64, 128):
            err[name, steps] = prior_statistics(sample(name, op, y, steps, 128, unguided(name))[-1].x)[0] - ref
    for steps in (32, 64, 128):
        assert err["ddim", steps] < 0 < err["fvfo", steps], err
        assert abs(err["fvfo", steps]) < abs(err["ddim", steps]), err
    for name in ("ddim", "fvfo"):  # first order: doubling the steps about halves the error
        assert 0.3 < err[name, 128] / err[name, 64] < 0.7 and 0.3 < err[name, 64] / err[name, 32] < 0.7, err


# ------------------------------------------------------------------------- guided reconstructions
def psnr(x: torch.Tensor, truth: torch.Tensor) -> float:
    return 10 * math.log10(float(truth.max() - truth.min()) ** 2 / float((x - truth).square().mean()))


def guided_problem(kind: str):
    g = torch.Generator().manual_seed(11)
    truth = PRIOR.sample(1, g)
    op = Inpaint(SHAPE, MASK[0].bool(), 0.05) if kind == "inpaint" else Denoise(SHAPE, 0.2)
    return op, op.simulate(truth, g), truth[0]


# (solver, few steps, margin in dB) against the same solver at 200 steps, the PSNR of the mean of 16 samples
FEW_STEPS = [("fvfo", 8, 0.3), ("dpmpp_3m_sde", 20, 0.6)]


@pytest.mark.parametrize("kind", ["inpaint", "denoise"])
@pytest.mark.parametrize("name,few,margin", FEW_STEPS)
def test_guided_sampler_reaches_the_many_step_psnr_with_far_fewer_evaluations(name, few, margin, kind):
    op, y, truth = guided_problem(kind)
    params = SOLVERS[name].Params(guidance="proximal")
    short = sample(name, op, y, few, 16, params)[-1]
    long = sample(name, op, y, 200, 16, params)[-1]
    got, best = psnr(short.x.mean(0), truth), psnr(long.x.mean(0), truth)
    assert short.nfe == few and long.nfe == 200
    assert got > best - margin, f"{name} {kind}: {few} steps {got:.2f} dB, 200 steps {best:.2f} dB"


@pytest.mark.parametrize("guidance", ["proximal", "projection", "dps"])
@pytest.mark.parametrize("name", ["fvfo", "dpmpp_3m_sde", "mlem"])
def test_each_guidance_brings_the_output_to_the_measured_pixels(name, guidance):
    op, y, _ = guided_problem("inpaint")
    Params = SOLVERS[name].Params
    # 20 steps: at 10, fvfo's dps guidance still leaves half the residual (DDIM's: 0.15)
    guided = sample(name, op, y, 20, 4, Params(guidance=guidance))[-1].x
    free = sample(name, op, y, 20, 4, Params(guidance="none"))[-1].x
    err = lambda x: float((op.A(x) - y).square().sum())  # noqa: E731
    assert err(guided) < 0.3 * err(free)


def test_labels_say_what_the_samplers_are():
    assert SOLVERS["fvfo"].spread_of().kind == "seed"  # deterministic given the start
    assert SOLVERS["dpmpp_3m_sde"].spread_of().kind == "posterior"
    assert SOLVERS["dpmpp_3m_sde"].spread_of(SOLVERS["dpmpp_3m_sde"].Params(eta=0.0)).kind == "seed"
    assert SOLVERS["mlem"].spread_of().kind == "posterior"
    for name in ("fvfo", "dpmpp_3m_sde", "mlem"):
        assert SOLVERS[name].spread_of(unguided(name)).kind == "prior"


# ---------------------------------------------------------------- multilevel Euler-Maruyama
COARSE = StationaryGaussianPrior(PRIOR.mean, PRIOR.power * 0.5)  # a cheap level with half the prior's variance


@pytest.mark.parametrize("seed", [0, 1])
def test_multilevel_at_equal_cost_draws_the_prior_closer_than_euler_maruyama_with_the_finest_level(seed):
    op = Denoise(SHAPE, 0.2)
    y = op.A(PRIOR.mean[None])
    ml = Multilevel([COARSE, PRIOR], [1 / 16, 1.0])
    multilevel = sample("mlem", op, y, 60, 128, unguided("mlem"), denoiser=ml, seed=seed)[-1]
    cost = multilevel.info["cost"]
    plain = sample("mlem", op, y, round(cost), 128, unguided("mlem"), seed=seed)[-1]  # one level: plain EM
    coarse = sample("mlem", op, y, 60, 128, unguided("mlem"), denoiser=COARSE, seed=seed)[-1]
    gap = {k: abs(prior_statistics(v.x)[0] - 1) for k, v in (("ml", multilevel), ("em", plain), ("coarse", coarse))}
    assert plain.nfe == round(cost) and 10 < cost < 30  # expected 60 (1/16 + 0.25) = 19
    assert gap["ml"] < gap["em"] < gap["coarse"], gap


def test_multilevel_cost_counts_each_level_once_per_step():
    op = Denoise(SHAPE, 0.2)
    y = op.A(PRIOR.mean[None])
    ml = Multilevel([COARSE, COARSE, PRIOR], [1 / 16, 1 / 4, 1.0])
    every = sample("mlem", op, y, 10, 2, SOLVERS["mlem"].Params(guidance="none", rate=1.0), denoiser=ml)
    assert every[-1].info["cost"] == pytest.approx(10 * (1 / 16 + 1 / 4 + 1))
    steps = 400
    counted = [_Counted(COARSE), _Counted(COARSE), _Counted(PRIOR)]
    ml = Multilevel(counted, [1 / 16, 1 / 4, 1.0])
    some = sample("mlem", op, y, steps, 1, SOLVERS["mlem"].Params(guidance="none", rate=0.25), denoiser=ml)
    # p = (0.5, 0.25): cost 1/16 + P(level 2 or 3) / 4 + 1/4 per step, binomial spread
    expected = steps * (1 / 16 + (1 - 0.5 * 0.75) / 4 + 0.25)
    assert expected_cost([1 / 16, 1 / 4, 1.0], 0.25) * steps == pytest.approx(expected)
    assert abs(some[-1].info["cost"] - expected) < 4 * math.sqrt(steps * (0.25 * 0.75 + 0.25 * 0.25 / 16))
    # Step.nfe counts the calls (each level's as one), the cost their share of full evaluations
    assert some[-1].nfe == sum(c.calls for c in counted) and counted[0].calls == steps
    assert some[-1].info["cost"] == pytest.approx(sum(c.calls * w for c, w in zip(counted, (1 / 16, 1 / 4, 1.0))))


class _Counted:
    """A level that counts its calls (per sample)."""

    def __init__(self, denoiser):
        self.denoiser, self.calls = denoiser, 0

    def __getattr__(self, name):
        return getattr(self.denoiser, name)

    def __call__(self, x, sigma):
        self.calls += x.shape[0]
        return self.denoiser(x, sigma)


class WhiteShrinkage(Denoiser):
    """The denoiser of N(0, v I), which runs at any size (as the bundled networks do)."""

    bounded = False

    def __init__(self, size: int = 32, v: float = 0.25):
        super().__init__()
        self.v = v
        self.card = PriorCard(name="white", resolution=(size, size), channels=1, value_range=(-1.0, 1.0),
                              sigma_min=0.005, sigma_max=20.0, extra={"any_size": True})

    def forward(self, x, sigma):
        return x * self.v / (self.v + sigma**2)


def test_reduced_resolution_levels_cost_a_sixteenth_and_a_quarter_and_run():
    den = WhiteShrinkage(32)
    levels = resolution_levels(den)
    assert [c for _, c in levels] == [1 / 16, 1 / 4, 1.0]
    assert resolution_levels(PRIOR) is None  # a fixed-size prior has none
    x = torch.randn(2, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    assert levels[0][0](x, 3.0).shape == x.shape
    op = Denoise((1, 32, 32), 0.2)
    sigmas = karras_sigmas(20, 0.005, 20.0)
    rng = SampleRNG(0, range(2))
    with torch.no_grad():
        out = list(SOLVERS["mlem"].solve(den, op, op.A(x[:1]), sigmas, 20.0 * rng.randn((1, 32, 32)),
                                         params=SOLVERS["mlem"].Params(), generator=rng))
    assert torch.isfinite(out[-1].x).all() and out[-1].info["cost"] < 20 * 0.75


def test_the_bundled_family_gives_three_levels_costed_by_their_cards():
    family = family_levels("procedural")
    assert [lv.card.name for lv in family.level_list] == ["ddpm-procedural-small-128", "ddpm-procedural-medium-128",
                                                         "ddpm-procedural-128"]
    assert family.costs == pytest.approx([0.0627, 0.2502, 1.0])
    x = torch.randn(1, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(family(x, 2.0), family.level_list[-1](x, 2.0))  # alone it is the finest prior


# ---------------------------------------------------------------------- budget schedules
def test_budget_schedule_beats_karras_on_held_out_problems_and_is_cached(tmp_path):
    op = Inpaint(SHAPE, MASK[0].bool(), 0.05)
    info = SOLVERS["fvfo"]
    sigmas, record = budget_sigmas(PRIOR, op, "fvfo", 4, cache_folder=tmp_path, problems=4)
    assert len(sigmas) == 5 and sigmas[-1] == 0 and bool((sigmas[:-1].diff() < 0).all()) and not record["cached"]
    truths, ys = simulated_problems(PRIOR, op, 8, seed=5)  # other problems, other solver noise
    karras = karras_sigmas(4, PRIOR.sigma_min, PRIOR.sigma_max)
    opt = mean_psnr(info, PRIOR, op, truths, ys, sigmas[:-1], info.Params(), seed=3)
    base = mean_psnr(info, PRIOR, op, truths, ys, karras[:-1], info.Params(), seed=3)
    assert opt > base + 0.2, (opt, base)
    again, rec2 = budget_sigmas(PRIOR, op, "fvfo", 4, cache_folder=tmp_path, problems=4)
    assert rec2["cached"] and torch.equal(again, sigmas)
    other, rec3 = budget_sigmas(PRIOR, Denoise(SHAPE, 0.05), "fvfo", 4, cache_folder=tmp_path, problems=2, max_trials=30)
    assert not rec3["cached"] and (tmp_path / "budget_schedules.json").is_file()


class Overshooting(WhiteShrinkage):
    """A bounded prior (value range [-1, 1]) whose estimates overshoot it, as a network's do at high noise."""

    bounded = True

    def forward(self, x, sigma):
        return 3.0 * x


@pytest.mark.parametrize("name", ["fvfo", "dpmpp_3m_sde", "mlem"])
def test_estimates_of_a_bounded_prior_are_clipped_to_its_range_unless_switched_off(name):
    den = Overshooting(16)
    op = Denoise(SHAPE, 0.2)
    y = torch.zeros(1, *SHAPE)
    on = sample(name, op, y, 4, 2, SOLVERS[name].Params(guidance="none"), denoiser=den)
    off = sample(name, op, y, 4, 2, SOLVERS[name].Params(guidance="none", clip=False), denoiser=den)
    assert all(float(s.x0_hat.abs().max()) <= 1.0 for s in on)
    assert max(float(s.x0_hat.abs().max()) for s in off) > 1.0
