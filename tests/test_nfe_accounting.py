"""Network evaluations as the solvers' parameters decide them: a counting wrapper around the exact
Gaussian prior counts every call, and the solver's ``Step.nfe``, the registry's prediction
(``SolverInfo.evaluations``, the engine's Planned event) and the result's ``nfe_per_sample`` /
``equivalent_nfe_per_sample`` must all say the same number."""
from __future__ import annotations

import pytest
import torch

from diffrecon import engine
from diffrecon.engine import Finished, Planned, RunConfig
from diffrecon.measurement import Measurement
from diffrecon.operators import Denoise
from diffrecon.priors.gaussian import StationaryGaussianPrior
from diffrecon.runtime import Counter, CountingDenoiser
from diffrecon.schedule import make_sigmas
from diffrecon.solvers import SOLVERS, SampleRNG
from diffrecon.solvers.mlem import Multilevel

SIZE = 8


def _prior(variance_scale: float = 1.0) -> StationaryGaussianPrior:
    g = torch.Generator().manual_seed(0)
    images = 0.5 + 0.1 * torch.randn(64, 1, SIZE, SIZE, generator=g)
    prior = StationaryGaussianPrior.fit(images)
    return StationaryGaussianPrior(prior.mean, prior.power * variance_scale) if variance_scale != 1.0 else prior


PRIOR = _prior()
COARSE = _prior(0.5)


class Counted:
    """The test's own count of denoiser calls per sample (the engine's counter is not trusted here)."""

    def __init__(self, denoiser):
        self.denoiser, self.calls = denoiser, 0

    def __getattr__(self, name):
        return getattr(self.denoiser, name)

    def to(self, *args, **kwargs):  # the engine moves the prior to its device: keep the wrapper
        self.denoiser = self.denoiser.to(*args, **kwargs)
        return self

    def __call__(self, x, sigma):
        self.calls += x.shape[0]
        return self.denoiser(x, sigma)


def _measurement() -> Measurement:
    op = Denoise((1, SIZE, SIZE), noise_sigma=0.05)
    y = op.simulate(PRIOR.mean[None].double(), torch.Generator().manual_seed(1))[0].numpy()
    return Measurement(y=y, operator=op.to_spec(), noise_sigma=0.05, value_range=(0.0, 1.0),
                       ground_truth=PRIOR.mean.numpy())


def _solve(name: str, params, steps: int, samples: int = 2):
    """(counted calls per sample, the last Step) of a direct solver run."""
    info = SOLVERS[name]
    counted = Counted(PRIOR)
    op = Denoise((1, SIZE, SIZE), noise_sigma=0.05)
    y = op.A(PRIOR.mean[None])
    sigmas = make_sigmas(steps, PRIOR)
    rng = SampleRNG(0, range(samples))
    with torch.no_grad():
        last = list(info.solve(counted, op, y, sigmas, float(sigmas[0]) * rng.randn((1, SIZE, SIZE)),
                               params=params, generator=rng))[-1]
    return counted.calls / samples, last


def _engine_run(config: RunConfig, denoiser):
    events = list(engine.run(_measurement(), config, denoiser=denoiser))
    planned = next(e for e in events if isinstance(e, Planned))
    result = next(e.result for e in events if isinstance(e, Finished))
    return planned, result


@pytest.mark.parametrize("ode_steps", [1, 3])
def test_daps_counts_its_ode_steps_per_level(ode_steps):
    info = SOLVERS["daps"]
    params = info.Params(ode_steps=ode_steps, langevin_steps=2)
    calls, last = _solve("daps", params, steps=4)
    assert calls == 4 * ode_steps == last.nfe == info.evaluations(params, 4)
    counted = Counted(PRIOR)
    planned, result = _engine_run(RunConfig(solver="daps", params={"ode_steps": ode_steps, "langevin_steps": 2},
                                            steps=4, samples=2, device="cpu", prior_fit=False), counted)
    assert planned.nfe_per_sample == 4 * ode_steps
    assert result.metrics["nfe_per_sample"] == counted.calls / 2 == 4 * ode_steps
    assert result.metrics["equivalent_nfe_per_sample"] == 4 * ode_steps
    assert result.provenance["nfe_per_sample"] == 4 * ode_steps


@pytest.mark.parametrize("length, repeat, expected", [(0, 1, 7), (2, 1, 7 + 3 * 2), (2, 2, 7 + 3 * 4), (3, 1, 7 + 2 * 3)])
def test_ddnm_time_travel_counts_the_steps_it_runs_ahead(length, repeat, expected):
    # 7 steps, travel every `length` steps while `length` steps remain ahead: i = 0, 2, 4 (length 2), 0, 3 (length 3)
    info = SOLVERS["ddnm"]
    params = info.Params(travel_length=length, travel_repeat=repeat)
    calls, last = _solve("ddnm", params, steps=7)
    assert calls == last.nfe == info.evaluations(params, 7) == expected
    if length == 2 and repeat == 2:
        counted = Counted(PRIOR)
        planned, result = _engine_run(RunConfig(solver="ddnm", params={"travel_length": 2, "travel_repeat": 2},
                                                steps=7, samples=2, device="cpu", prior_fit=False), counted)
        assert planned.nfe_per_sample == expected == result.metrics["nfe_per_sample"] == counted.calls / 2


def test_mlem_reports_calls_and_their_cost_in_full_evaluations():
    # rate 1: both levels every step, 2 calls costing 1/16 + 1 per step; the engine used to count
    # the levels' calls not at all (they bypassed its counter) or, at reduced size, as full ones
    ml = Multilevel([Counted(COARSE), Counted(PRIOR)], [1 / 16, 1.0])
    config = RunConfig(solver="mlem", params={"rate": 1.0, "guidance": "none"}, steps=10, samples=2, device="cpu",
                       prior_fit=False)
    _, result = _engine_run(config, ml)
    assert [level.calls for level in ml.level_list] == [20, 20]  # 10 steps x 2 samples each
    assert result.metrics["nfe_per_sample"] == 20
    assert result.metrics["equivalent_nfe_per_sample"] == pytest.approx(10 * (1 / 16 + 1))
    assert result.provenance["equivalent_nfe_per_sample"] == pytest.approx(10.625)


def test_a_call_at_reduced_size_counts_its_share_of_a_full_evaluation():
    class AnySize:  # a denoiser that runs at any size, as the bundled networks do
        image_shape = (1, SIZE, SIZE)

        def __call__(self, x, sigma):
            return x

    counter = Counter()
    den = CountingDenoiser(AnySize(), counter, None, torch.device("cpu"))
    den(torch.zeros(3, 1, SIZE, SIZE), 1.0)
    den(torch.zeros(2, 1, SIZE // 2, SIZE // 2), 1.0)  # a quarter of the pixels (as mlem's resolution levels)
    assert counter.nfe == 5 and counter.equivalent == pytest.approx(3 + 2 * 0.25)


@pytest.mark.parametrize("name", sorted(n for n, info in SOLVERS.items() if info.uses_prior))
def test_every_solvers_step_count_is_what_it_evaluates_and_what_the_registry_predicts(name):
    info = SOLVERS[name]
    params = info.Params(langevin_steps=2) if name == "daps" else info.Params()
    calls, last = _solve(name, params, steps=5)
    assert calls == last.nfe == info.evaluations(params, 5)
