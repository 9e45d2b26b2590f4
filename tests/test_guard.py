"""The divergence guard: a run that goes wrong is caught within two steps, per sample, and says
so in the engine's events, the result (file), the command line and the window."""
from __future__ import annotations

import math

import h5py
import numpy as np
import pytest
import torch

from diffrecon import engine
from diffrecon.demo import make_demo
from diffrecon.engine import Finished, RunConfig
from diffrecon.guard import (FLOOR, LIMIT, Diverged, DivergenceGuard, HostCopies, divergence_of, metric_notes,
                             summary)
from diffrecon.io import read_result
from diffrecon.operators import build_operator
from diffrecon.operators.base import residual_norm
from diffrecon.priors import load_prior
from diffrecon.solvers._common import Step



@pytest.fixture(autouse=True)
def _no_prior_fit_probe(monkeypatch):
    """The prior-fit indicator calls the prior once before the run; these tests count the prior's calls."""
    monkeypatch.setattr("diffrecon.prior_fit.before_run", lambda setup: None)

class BadPrior:
    """The Gaussian prior, until the solver's ``bad_from``-th evaluation (1-based): from then on
    it returns NaN (``kind="nan"``) or an estimate 1000 range widths out (``kind="explode"``), for
    the samples in ``samples`` (None: all)."""

    def __init__(self, base, bad_from: int, kind: str = "nan", samples=None):
        self.base, self.bad_from, self.kind, self.samples, self.calls = base, bad_from, kind, samples, 0

    def __getattr__(self, name):  # card, image_shape, sigma_min, state_dict, ...
        return getattr(self.base, name)

    def to(self, *args, **kwargs):
        return self

    def __call__(self, x, sigma):
        self.calls += 1
        out = self.base(x, sigma)
        if self.calls >= self.bad_from:
            rows = list(range(out.shape[0])) if self.samples is None else list(self.samples)
            out = out.clone()
            out[rows] = math.nan if self.kind == "nan" else 1000.0
        return out


@pytest.fixture(scope="module")
def ct16():
    m = make_demo("ct", size=16)
    return m, load_prior("gaussian", tuple(m.image_shape))


def _run(m, prior, **config):
    events = list(engine.run(m, RunConfig(**{"steps": 8, "samples": 2, "device": "cpu", **config}),
                             denoiser=prior))
    assert isinstance(events[-1], Finished)
    return events, events[-1].result


# ------------------------------------------------------------------------------------ engine
def test_dps_with_10_steps_on_the_bundled_ct_demo_is_caught_within_two_steps_of_its_kick():
    # the reported case: DPS kicks its estimate far out at step 2 with any budget; with 20 or more
    # steps it comes back, with 10 it keeps going (to -20 dB). Caught at step 4 at the latest.
    m = make_demo("ct")
    events = list(engine.run(m, RunConfig(solver="dps", steps=10, samples=1, device="cpu")))
    diverged = [e for e in events if isinstance(e, Diverged)]
    assert len(diverged) == 1
    (d,) = diverged[0].divergences
    assert d.step <= 4 and d.check in ("range", "residual")
    result = events[-1].result
    assert result.metrics["nfe"] == d.step  # stopped there: on the CPU the host knows at once
    record = divergence_of(result)
    assert record["first_step"] == d.step and record["last_estimates"] and not result.complete
    assert "zeta 1 → 0.25" in diverged[0].message and "more steps" in diverged[0].message


def test_nan_prior_is_caught_at_the_step_it_appears_and_only_that_sample_is_dropped(ct16):
    m, base = ct16
    bad = BadPrior(base, bad_from=3, samples=[1])
    events, result = _run(m, bad, solver="dps")
    (event,) = [e for e in events if isinstance(e, Diverged)]
    assert [(d.sample, d.step, d.check) for d in event.divergences] == [(1, 3, "non-finite")]
    assert result.n_samples == 1 and not result.complete and np.isfinite(result.mean).all()
    assert bad.calls == 8  # the healthy sample went on to the end
    assert divergence_of(result)["samples"][0]["step"] == 3


@pytest.mark.parametrize("mode, last_step, kept", [("all", 3, 0), ("continue", 8, 2)])
def test_on_divergence_all_stops_the_run_and_continue_only_reports(ct16, mode, last_step, kept):
    m, base = ct16
    bad = BadPrior(base, bad_from=3, kind="explode", samples=[0])
    events, result = _run(m, bad, solver="dps", on_divergence=mode)
    (event,) = [e for e in events if isinstance(e, Diverged)]
    assert [(d.step, d.check) for d in event.divergences] == [(3, "range")]
    assert bad.calls == last_step
    assert divergence_of(result)["on_divergence"] == mode
    if kept:  # continue: both samples in the statistics, flagged
        assert result.n_samples == kept and result.complete
    else:  # all: the healthy sample was stopped unfinished; the images are last estimates
        assert divergence_of(result)["last_estimates"] and result.n_samples == 1


def test_retry_runs_once_more_with_a_quarter_of_the_guidance_weight_and_records_it(ct16):
    m, base = ct16
    bad = BadPrior(base, bad_from=2)  # NaN from the 2nd evaluation of the first attempt only
    events = []
    for ev in engine.run(m, RunConfig(solver="dps", steps=4, samples=1, device="cpu", retry_on_divergence=True,
                                      params={"zeta": 2.0}), denoiser=bad):
        events.append(ev)
        if isinstance(ev, Diverged):
            bad.bad_from = 10**9  # the retry is healthy
    result = events[-1].result
    assert result.provenance["params"]["zeta"] == 0.5 and divergence_of(result) is None
    retry = result.provenance["retry"]
    assert (retry["param"], retry["from"], retry["to"], retry["first_attempt"]["first_step"]) == ("zeta", 2.0, 0.5, 2)
    assert result.complete and "Retried once with zeta 2 → 0.5" in summary(result)


def test_healthy_runs_of_every_solver_pass_every_check(ct16):
    from diffrecon.solvers import SOLVERS

    m, prior = ct16
    op = build_operator(m.operator)
    for name, info in SOLVERS.items():
        if info.unmet_need(op):
            continue
        events, result = _run(m, prior, solver=name, steps=max(8, info.min_steps), samples=2)
        assert not [e for e in events if isinstance(e, Diverged)], name
        assert divergence_of(result) is None and result.complete, name


def test_residual_check_fires_past_its_threshold_and_not_below():
    m = make_demo("ct", size=16)
    op = build_operator(m.operator)
    y = torch.as_tensor(m.y)[None]
    wide = (-1e6, 1e6)  # no range check: the residual alone
    guard = DivergenceGuard(op, y, torch.tensor([0.5, 0.0]), wide, 1.0, "dps", None)
    guard.start_batch([0, 1])
    threshold = guard.floor + LIMIT * 0.5 * guard.reach  # at sigma 0.5
    assert guard.floor == FLOOR * max(guard.r_flat, op.noise_sigma * math.sqrt(op.measurement_dof))
    direction = op.A_adjoint(y)
    direction = direction / residual_norm(op, direction, torch.zeros_like(y))  # ||A d|| = 1
    # x0_hat = -t d has a residual within ||y|| of t: one well under the threshold, one over it
    x0 = torch.cat([threshold / 4 * -direction, (threshold + 2 * float(y.norm())) * -direction])
    residuals = residual_norm(op, x0, y.expand(2, *y.shape[1:]))
    assert residuals[0] < threshold < residuals[1]
    event = guard.observe(Step(0, 1, 0.0, x0, x0, 1))
    assert [(d.sample, d.check) for d in event.divergences] == [(1, "residual")]


def test_host_copies_lag_at_most_two_steps_and_wait_only_when_further_behind():
    class SlowEvent:  # a device that never finishes on its own
        def record(self):
            pass

        def query(self):
            return False

        def synchronize(self):
            pass

    copies = HostCopies(torch.device("cpu"), max_lag=2, event=SlowEvent)
    seen = []
    for step in range(6):
        copies.push(torch.tensor([float(step)]))
        landed = copies.landed()
        seen.append(None if landed is None else int(landed[0]))
    assert seen == [None, None, 0, 1, 2, 3]  # known two steps late, never later
    assert copies.waits == 4
    copies.push(torch.tensor([6.0]))
    assert int(copies.landed(wait=True)[0]) == 6  # the batch's end waits for everything


# ------------------------------------------------------------------------------------ notes
def test_metric_notes_mark_calibration_of_diverged_and_data_missing_results_only(ct16):
    m, base = ct16
    _, diverged = _run(m, BadPrior(base, bad_from=3, samples=[1]), solver="dps", samples=3)
    notes = metric_notes(diverged)
    assert "no calibration" in notes["coverage90"] and "psnr" in notes
    diverged.provenance.pop("divergence")
    diverged.metrics["residual_ratio"] = 50.0
    assert "misses the data (50× noise)" in metric_notes(diverged)["coverage90"]
    diverged.metrics["residual_ratio"], diverged.complete = 1.1, True
    assert metric_notes(diverged) == {}


# ------------------------------------------------------------------------------------ command line
def test_cli_says_so_in_one_sentence_exits_3_and_flags_the_result_file(tmp_path, monkeypatch, capsys, ct16):
    from diffrecon import cli
    from diffrecon.io import write_measurement

    m, base = ct16
    src, out = tmp_path / "ct.h5", tmp_path / "r.h5"
    write_measurement(src, m)
    monkeypatch.setattr("diffrecon.priors.load_prior", lambda *a, **k: BadPrior(base, bad_from=2))
    argv = ["reconstruct", str(src), "--out", str(out), "--solver", "dps", "--steps", "8", "--samples", "2",
            "--prior", "gaussian", "--device", "cpu"]
    assert cli.main(argv) == cli.EXIT_DIVERGED
    err = capsys.readouterr().err
    final = [line for line in err.splitlines() if line.startswith("diffrecon: Diverged")]
    assert len(final) == 1 and "step 2 of 8" in final[0] and "NaN" in final[0] and "try more steps" in final[0]
    with h5py.File(out) as f:
        assert bool(f["posterior"].attrs["diverged"]) and int(f["posterior"].attrs["diverged_step"]) == 2
    assert divergence_of(read_result(out))["samples"][1]["check"] == "non-finite"
    assert cli.main(argv + ["--keep-going"]) == 0


def test_cli_dps_with_10_steps_on_a_small_ct_with_a_huge_weight_is_caught(tmp_path, capsys):
    from diffrecon import cli

    src, out = tmp_path / "ct.h5", tmp_path / "r.h5"
    assert cli.main(["demo", "ct", "--size", "16", "--out", str(src)]) == 0
    rc = cli.main(["reconstruct", str(src), "--out", str(out), "--solver", "dps", "--steps", "10", "--samples", "2",
                   "--prior", "gaussian", "--device", "cpu", "--param", "zeta=100"])
    assert rc == cli.EXIT_DIVERGED
    with h5py.File(out) as f:
        step = int(f["posterior"].attrs["diverged_step"])
    assert 1 <= step <= 10 and f"step {step} of 10" in capsys.readouterr().err
