"""What a run's spread is (posterior std, seed spread, prior samples, point estimate): every label
the registry gives, for the defaults and for each parameter value that switches it, is checked
against what the solver actually does on a 16x16 problem, and the engine, the result file and
the CLI say the same."""
from __future__ import annotations

import dataclasses

import h5py
import numpy as np
import pytest
import torch

from diffrecon.io import read_result, write_result
from diffrecon.schedule import karras_sigmas
from diffrecon.solvers import SOLVERS, SampleRNG, validate_params
from diffrecon.solvers.labels import KINDS, POINT, POSTERIOR, PRIOR, SEED, rule_of, spread_of, spread_text, switch_cases

from test_solvers import PRIOR as GAUSSIAN, SHAPE, problem


#: the defaults of every solver, and each setting its rule says switches the label (plus DDIM/DPM-Solver++'s
#: dps guidance at its default zeta, which keeps y in)
CASES = [(name, case) for name in SOLVERS for case in
         [{}, *switch_cases(SOLVERS[name]), *([{"guidance": "dps"}] if callable(rule_of(SOLVERS[name]).data) else [])]]


def _outputs(name, op, y, params, seed, x_seed):
    """The solver's last x for 2 samples, noise streams from ``seed``, start from ``x_seed``."""
    sigmas = karras_sigmas(4, 0.005, 20.0)
    start = float(sigmas[0]) * SampleRNG(x_seed, (0, 1)).randn(SHAPE)
    with torch.no_grad():
        steps = list(SOLVERS[name].solve(GAUSSIAN, op, y, sigmas, start, params=params,
                                         generator=SampleRNG(seed, (0, 1))))
    return steps[-1].x


@pytest.mark.parametrize("name, case", CASES, ids=[f"{n}-{'-'.join(f'{k}={v}' for k, v in c.items()) or 'defaults'}"
                                                   for n, c in CASES])
def test_each_label_is_what_the_solver_does_with_those_parameters(name, case):
    info = SOLVERS[name]
    params = dataclasses.replace(info.Params(), **case)
    validate_params(params, name)
    spread = spread_of(info, params)
    assert spread.kind in KINDS and spread.reason.endswith(".")
    if "daps" in name:
        params = dataclasses.replace(params, langevin_steps=min(params.langevin_steps, 5))
    op, y = problem()
    y_other = y + 0.5  # another measurement of the same operator
    base = _outputs(name, op, y, params, seed=1, x_seed=2)
    other_noise = _outputs(name, op, y, params, seed=3, x_seed=2)  # same start, other fresh noise
    other_start = _outputs(name, op, y, params, seed=1, x_seed=4)
    other_y = _outputs(name, op, y_other, params, seed=1, x_seed=2)
    moved = lambda a: float((a - base).abs().max()) > 1e-4  # noqa: E731
    if spread.kind == POINT:  # one image whatever the seed: nothing to call an uncertainty
        assert not moved(other_noise) and not moved(other_start) and moved(other_y)
    elif spread.kind == PRIOR:  # the measurement does not enter
        assert not moved(other_y) and (moved(other_noise) or moved(other_start))
    elif spread.kind == SEED and info.spread is not None and info.spread.noise and \
            all(getattr(params, n) == 0 for n in info.spread.noise):
        # deterministic given its start: only the starting noise spreads the samples
        assert not moved(other_noise) and moved(other_start)
    elif spread.kind == SEED:  # a seed spread by design (RED-diff, DPM-Solver++): the seed matters, y too
        assert (moved(other_noise) or moved(other_start)) and moved(other_y)
    else:  # designed as a posterior sampler: fresh noise every step, and the data enter
        assert spread.kind == POSTERIOR
        assert moved(other_noise) and moved(other_y)


def test_the_listed_deterministic_and_data_free_settings_get_the_labels_the_papers_imply():
    expect = {("ddim", ()): SEED, ("dpmpp_2m", ()): SEED, ("diffpir", (("zeta", 0.0),)): SEED,
              ("ddnm", (("eta", 0.0), ("reinject", False))): SEED, ("pigdm", (("eta", 0.0),)): SEED, ("dds", (("eta", 0.0),)): SEED,
              ("ddpm", ()): PRIOR, ("dps", (("zeta", 0.0),)): PRIOR, ("pigdm", (("weight", 0.0),)): PRIOR,
              ("daps", (("langevin_steps", 0),)): PRIOR, ("ddim", (("guidance", "none"),)): PRIOR,
              ("dps", ()): POSTERIOR, ("diffpir", ()): POSTERIOR, ("ddnm", ()): POSTERIOR, ("ddrm", ()): POSTERIOR,
              ("ddim", (("eta", 1.0),)): POSTERIOR, ("tv", ()): POINT, ("pnp_admm", ()): POINT}
    got = {key: spread_of(SOLVERS[key[0]], SOLVERS[key[0]].Params(**dict(key[1]))).kind for key in expect}
    assert got == expect


def test_a_registry_entry_without_a_rule_falls_back_to_its_posterior_flag():
    plain = dataclasses.replace(SOLVERS["dps"], spread=None, posterior=lambda p: p.zeta > 1)
    assert spread_of(plain, plain.Params(zeta=2.0)).kind == POSTERIOR
    assert spread_of(plain, plain.Params(zeta=0.5)).kind == SEED
    assert spread_of(dataclasses.replace(SOLVERS["tv"], spread=None, posterior=False), None).kind == POINT


@pytest.mark.parametrize("kind", [POSTERIOR, SEED, PRIOR])
def test_result_file_writes_nexus_errors_only_for_a_posterior_std_and_records_the_label(tmp_path, kind):
    from test_io import _denoise_measurement, _result

    r = _result(_denoise_measurement(8))
    r.spread, r.std_is_posterior = kind, kind == POSTERIOR
    write_result(tmp_path / "r.h5", r)
    with h5py.File(tmp_path / "r.h5", "r") as f:
        assert ("mean_errors" in f["posterior"]) == (kind == POSTERIOR)
        assert f["posterior"].attrs["spread"] == kind
    back = read_result(tmp_path / "r.h5")
    assert back.spread == kind and back.std_is_posterior == (kind == POSTERIOR)


def test_a_result_file_without_the_flag_reads_as_not_a_posterior(tmp_path):
    from test_io import _denoise_measurement, _result

    r = _result(_denoise_measurement(8))
    r.spread, r.std_is_posterior = POSTERIOR, True
    write_result(tmp_path / "r.h5", r)
    with h5py.File(tmp_path / "r.h5", "r+") as f:
        del f["posterior"].attrs["spread"], f["posterior"].attrs["std_is_posterior"]
    back = read_result(tmp_path / "r.h5")
    assert back.std_is_posterior is False and back.spread == "unknown"


@pytest.mark.parametrize("params, kind", [({}, POSTERIOR), ({"zeta": 0.0}, SEED)])
def test_engine_result_provenance_and_cli_agree_on_the_label(tmp_path, params, kind, capsys):
    from diffrecon.cli import main
    from diffrecon.engine import Finished, Log, Planned, RunConfig, run
    from diffrecon.io.importers import simulate

    m = simulate(np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8), "inpaint", noise=0.05)
    config = RunConfig(solver="diffpir", params=params, steps=3, samples=2, device="cpu", prior="gaussian",
                       use_calibration=False)
    events = list(run(m, config))
    planned = next(e for e in events if isinstance(e, Planned))
    result = next(e for e in events if isinstance(e, Finished)).result
    warned = [e.message for e in events if isinstance(e, Log) and e.level == "warning"]
    assert planned.spread == result.spread == result.provenance["spread"] == kind
    assert any("seed spread" in w for w in warned) == (kind == SEED)
    write_result(tmp_path / "r.h5", result)
    assert main(["info", str(tmp_path / "r.h5")]) == 0
    text = capsys.readouterr().out
    assert spread_text(kind) in text and ("not a posterior std" in text) == (kind != POSTERIOR)
    assert "uncalibrated" in text


def test_diffrecon_solvers_prints_each_solvers_label_and_what_switches_it(capsys):
    from diffrecon.cli import main

    assert main(["solvers"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines() if line and not line.startswith((" ", "NAME"))}
    for name, info in SOLVERS.items():
        assert spread_of(info).text in rows[name]
    assert "zeta=0, perturb=0: seed spread" in out.replace(" = ", "=")  # diffpir's switch is listed


def test_a_warm_start_makes_a_posterior_samplers_spread_a_seed_spread():
    from diffrecon.solvers import get_solver
    from diffrecon.solvers.labels import POINT, POSTERIOR, SEED, spread_of_run

    dpmpp, tv = get_solver("dpmpp_3m_sde"), get_solver("tv")
    assert spread_of_run(dpmpp, None, "none").kind == POSTERIOR
    warm = spread_of_run(dpmpp, None, "tv")
    assert warm.kind == SEED and not warm.is_posterior and "warm-started from the TV reconstruction" in warm.reason
    assert spread_of_run(tv, None, "tv").kind == POINT  # nothing to warm-start: the baseline's own label


def test_a_warm_started_run_is_labelled_and_calibrated_as_its_own_setting():
    from diffrecon import engine
    from diffrecon.calibration import run_key
    from diffrecon.demo import make_demo

    m = make_demo("denoise", size=8)
    common = dict(prior="gaussian", prior_hash="h", solver="diffpir", params={}, steps=4, schedule="karras")
    (cold, cold_text), (warm, warm_text) = run_key(m, **common), run_key(m, **common, warm_start="tv")
    assert cold != warm and "warm-started from TV" in warm_text and "warm" not in cold_text
    config = engine.RunConfig(solver="diffpir", steps=3, samples=2, prior="gaussian", device="cpu", warm_start="tv",
                              use_calibration=False, prior_fit=False)
    result = next(e.result for e in engine.run(m, config) if isinstance(e, engine.Finished))
    assert result.spread == "seed" and not result.std_is_posterior and result.provenance["warm_start"] == "tv"
