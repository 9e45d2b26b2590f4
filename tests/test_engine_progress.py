"""Progress in solver steps summed over samples: work_done never goes back and reaches
work_total, an out-of-memory re-plan says so (Replanned) and keeps the total right, and the
predicted network evaluations follow each registered solver's params."""
from __future__ import annotations

import pytest
from engine_toys import _ancestral, _finish, _oom_above_two, _Params

from diffrecon import engine
from diffrecon.engine import Log, Planned, Progress, Replanned, RunConfig, Statistics
from diffrecon.solvers import SOLVERS, SolverInfo

pytest_plugins = ["engine_toys"]  # the fixtures problem and toy_solver


def _work(events):
    return [(e.work_done, e.work_total) for e in events if isinstance(e, Progress)]


def test_work_done_is_monotone_and_reaches_the_planned_total(problem, toy_solver):
    m, prior = problem
    cfg = RunConfig(solver="toy", steps=4, samples=5, batch_size=2, device="cpu")
    events, result = _finish(engine.run(m, cfg, denoiser=prior))
    planned = next(e for e in events if isinstance(e, Planned))
    work = _work(events)
    assert planned.work_total == 4 * 5 and {total for _, total in work} == {20}
    done = [d for d, _ in work]
    assert all(b >= a for a, b in zip(done, done[1:])) and done[-1] == 20
    # each batch's last step is reported: the work of the samples finished so far
    assert {8, 16, 20} <= set(done)
    assert result.n_samples == 5


def test_a_solver_with_fewer_steps_than_the_budget_still_reaches_the_total():
    from diffrecon.demo import make_demo

    m = make_demo("denoise", size=16, seed=0)
    events, _ = _finish(engine.run(m, RunConfig(solver="direct", steps=6, samples=3, device="cpu")))
    assert _work(events)[-1] == (18, 18)  # the direct reconstruction takes one step of its budget of 6


def test_out_of_memory_replans_with_an_event_and_the_total_stays_right(problem, monkeypatch):
    m, prior = problem
    monkeypatch.setitem(SOLVERS, "oom", SolverInfo("oom", _oom_above_two, _Params, "oom", "test"))
    cfg = RunConfig(solver="oom", steps=3, samples=7, batch_size=8, device="cpu", keep_samples=8)
    events, result = _finish(engine.run(m, cfg, denoiser=prior))
    replans = [e for e in events if isinstance(e, Replanned)]
    assert [e.batches for e in replans] == [[3, 3, 1], [1, 1, 1, 1, 1, 1, 1]]  # 7 -> 3 -> 1 per batch
    assert "Out of GPU memory with 7 samples" in replans[0].reason
    assert [e.message for e in events if isinstance(e, Log) and "Out of GPU" in e.message] == \
        [e.reason for e in replans]
    work = _work(events)
    done = [d for d, _ in work]
    assert all(b >= a for a, b in zip(done, done[1:])) and work[-1] == (21, 21)
    assert sum(isinstance(e, Statistics) for e in events) == 7 and result.provenance["batches"] == [1] * 7


def _oom_at_step_two(limit):
    """The toy sampler, out of memory at its second step for batches above ``limit``."""
    def solve(denoiser, op, y, sigmas, x_init, *, params, generator):
        for step in _ancestral(denoiser, op, y, sigmas, x_init, params=params, generator=generator):
            if x_init.shape[0] > limit and step.i == 1:
                raise MemoryError("simulated")
            yield step
    return solve


def test_steps_spent_before_an_out_of_memory_error_count_in_done_and_total(problem, monkeypatch):
    m, prior = problem
    monkeypatch.setitem(SOLVERS, "late", SolverInfo("late", _oom_at_step_two(2), _Params, "late", "test"))
    cfg = RunConfig(solver="late", steps=5, samples=4, batch_size=4, device="cpu", preview_interval=0.0)
    events, result = _finish(engine.run(m, cfg, denoiser=prior))
    (replan,) = [e for e in events if isinstance(e, Replanned)]
    assert replan.batches == [2, 2] and "CPU memory with 4 samples" in replan.reason
    done = [d for d, _ in _work(events)]
    # 4 samples ran 1 step before the failure: 4 units spent, so 20 + 4 in all
    assert all(b >= a for a, b in zip(done, done[1:])) and _work(events)[-1] == (24, 24)
    assert result.n_samples == 4 and result.complete


CHANGED = [("dps", {"variance_correction": True}), ("daps", {"ode_steps": 2, "langevin_steps": 2}),
           ("pigdm", {"variance_correction": True}), ("ddpm", {"variance_correction": False})]


@pytest.mark.parametrize("solver, params", [(name, {}) for name in sorted(SOLVERS)] + CHANGED)
def test_predicted_evaluations_per_sample_follow_the_params_and_match_the_count(solver, params):
    from diffrecon.demo import make_demo

    if solver == "daps" and not params:
        params = {"langevin_steps": 2}  # the evaluations do not depend on it; the test's time does
    m = make_demo("denoise", size=16, seed=0)
    cfg = RunConfig(solver=solver, params=params, steps=3, samples=2, device="cpu", prior="gaussian",
                    prior_fit=False)
    events, result = _finish(engine.run(m, cfg))
    planned = next(e for e in events if isinstance(e, Planned))
    info = SOLVERS[solver]
    expected = 3 * info.evaluations_per_step(info.Params(**params)) if info.uses_prior else 0
    assert planned.nfe_per_sample == expected
    assert result.metrics["nfe"] == 2 * planned.nfe_per_sample
