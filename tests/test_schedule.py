"""Noise-level schedules: DiffPIR's quadratic subsequence, and the CLI's choice of schedule."""
from __future__ import annotations

from fractions import Fraction
from math import isqrt

import pytest
import torch

from diffrecon.priors import load_prior
from diffrecon.schedule import SCHEDULES, ddpm_sigmas, make_sigmas, vp_quadratic_sigmas, vp_sde_sigmas


def test_ddpm_table_matches_the_linear_beta_schedule():
    s = ddpm_sigmas()
    assert s.shape == (1000,)
    # abar_1 = 1 - 1e-4 and abar_T = prod(1 - beta): the ends of the DDPM table
    assert float(s[0]) == pytest.approx((1e-4 / (1 - 1e-4)) ** 0.5, rel=1e-9)
    assert float(s[-1]) == pytest.approx(157.4073, rel=1e-5)
    assert bool((s[1:] > s[:-1]).all())


@pytest.mark.parametrize("steps", [2, 7, 50, 100])
def test_vp_quadratic_takes_floor_sqrt_of_evenly_spaced_squares(steps):
    table = ddpm_sigmas()
    sig = vp_quadratic_sigmas(steps, table)
    assert sig.shape == (steps + 1,) and float(sig[-1]) == 0.0
    assert float(sig[0]) == float(table[-1]) and float(sig[-2]) == float(table[0])
    index = [int(torch.searchsorted(table, v)) for v in sig[:-1]]
    n = len(table)
    for i, t in enumerate(index[:-1]):
        seq = n - 1 - t
        target = Fraction(i * n * n, steps - 1)  # seq_i = floor(sqrt(i T^2 / (steps - 1)))
        assert seq == isqrt(int(target)) and seq * seq <= target < (seq + 1) ** 2
    assert index[-1] == 0  # the last step at the smallest level (the authors' seq[-1] - 1)
    gaps = [a - b for a, b in zip(index[:-1], index[1:])]
    assert all(g > 0 for g in gaps) and gaps[0] >= gaps[-1]  # long steps first, short at the end


def test_vp_quadratic_of_one_step_and_of_a_continuous_prior():
    assert vp_quadratic_sigmas(1, ddpm_sigmas()).tolist() == [pytest.approx(157.4073, rel=1e-5), 0.0]
    den = load_prior("gaussian", (1, 16, 16))  # images in [0, 1]: half the table's levels
    assert tuple(den.card.value_range) == (0.0, 1.0)
    sig = make_sigmas(20, den, "vp_quadratic")
    assert float(sig[0]) == pytest.approx(157.4073 / 2, rel=1e-5) and float(sig[-2]) == pytest.approx(0.005, rel=1e-3)
    assert bool((sig[:-1] > 0).all()) and bool((sig[1:] <= sig[:-1]).all())


def test_cli_offers_every_schedule():
    from diffrecon.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    opt = next(a for a in sub.choices["reconstruct"]._actions if a.dest == "schedule")
    assert tuple(opt.choices) == SCHEDULES and opt.default == "karras"


def test_vp_sde_levels_follow_the_integrated_linear_beta():
    s = vp_sde_sigmas(4)
    assert s.shape == (5,) and float(s[-1]) == 0.0
    for t, v in zip((1.0, 0.75, 0.5, 0.25), s[:-1].tolist()):
        b = 0.1 * t + 0.5 * 19.9 * t * t  # integral of beta(s) = 0.1 + 19.9 s from 0 to t
        assert v == pytest.approx(((2.718281828459045 ** b) - 1) ** 0.5, rel=1e-9)
    # scale_t = 1 / sqrt(1 + sigma^2) at t = 1 is exp(-B(1) / 2)
    assert (1 + float(s[0]) ** 2) ** -0.5 == pytest.approx(2.718281828459045 ** (-0.5 * 10.05), rel=1e-9)
    den = load_prior("gaussian", (1, 16, 16))
    half = make_sigmas(4, den, "vp_sde")
    assert half[1:-1].tolist() == pytest.approx((s[1:-1] / 2).tolist()) and float(half[0]) == pytest.approx(s[0] / 2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("kind", SCHEDULES)
def test_schedules_of_a_prior_on_the_gpu_stay_on_the_host(kind):
    den = load_prior("default", None, device="cuda")  # its timestep table is a CUDA buffer
    sig = make_sigmas(20, den, kind)
    assert sig.device.type == "cpu" and sig.dtype == torch.float64 and sig.shape == (21,)
    assert float(sig[-1]) == 0.0 and bool((sig[1:] < sig[:-1]).all())


def test_prior_cards_sampling_tables_and_training_share_one_linear_beta_schedule():
    from diffrecon.priors.adm import LINEAR_SCHEDULE
    from diffrecon.priors.diffusers_vp import alphas_cumprod_from_schedule
    from diffrecon.schedule import DDPM_SCHEDULE, vp_sigmas
    from diffrecon.training import SCHEDULE

    assert LINEAR_SCHEDULE == SCHEDULE == DDPM_SCHEDULE
    abar = alphas_cumprod_from_schedule(DDPM_SCHEDULE)
    assert float(abar[0]) == pytest.approx(1 - 1e-4) and float(abar[1] / abar[0]) == pytest.approx(1 - (1e-4 + 0.0199 / 999))
    torch.testing.assert_close(vp_sigmas(abar), ddpm_sigmas(), rtol=0, atol=0)
