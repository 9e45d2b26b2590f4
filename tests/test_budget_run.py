"""The ``budget`` schedule through the engine and the command line, on the exact Gaussian prior at
8 x 8: the first run searches with progress and records it, the second reads the cache, settings it
cannot serve are refused in one sentence, and a stop during the search stores nothing."""
from __future__ import annotations

import dataclasses
import threading

import numpy as np
import pytest

from diffrecon import engine
from diffrecon.demo import make_demo
from diffrecon.engine import Finished, Log, Preparing, RunConfig
from diffrecon.engine.budget import WHAT
from diffrecon.errors import InputError
from diffrecon.solvers import budget_schedule

BUDGET = RunConfig(solver="fvfo", steps=3, samples=2, prior="gaussian", device="cpu", schedule="budget",
                   prior_fit=False, preview_interval=10.0)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFRECON_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def inpaint():
    return make_demo("inpaint", size=8)


def _run(m, config, stop=None):
    events = list(engine.run(m, config, stop=stop))
    search = [e for e in events if isinstance(e, Preparing) and e.what == WHAT]
    result = next((e.result for e in events if isinstance(e, Finished)), None)
    return events, search, result


def test_first_run_searches_with_progress_the_second_reads_the_cache(cache, inpaint):
    _, search, first = _run(inpaint, BUDGET)
    record = first.provenance["budget_schedule"]
    assert first.provenance["schedule"] == "budget" and record["cached"] is False
    assert len(search) >= 10 and search[-1].done == search[-1].total == 81  # 80 trials and the Karras baseline
    assert [e.done for e in search] == sorted(e.done for e in search)
    assert len(record["sigmas"]) == 3 and record["sigmas"] == sorted(record["sigmas"], reverse=True)
    assert record["psnr"] >= record["karras_psnr"]  # Karras' ramp (rho 7, from sigma_max) is one of the candidates
    assert (cache / "budget_schedules.json").is_file()

    _, search, second = _run(inpaint, BUDGET)
    assert search == [] and second.provenance["budget_schedule"]["cached"] is True
    assert second.provenance["budget_schedule"]["sigmas"] == record["sigmas"]
    np.testing.assert_array_equal(second.mean, first.mean)  # fvfo is deterministic given its seed

    # the run's levels are the searched ones (and the final 0), not Karras'
    setup = engine.prepare(inpaint, BUDGET)
    assert setup.sigmas.tolist() == pytest.approx([*record["sigmas"], 0.0])
    karras = engine.prepare(inpaint, dataclasses.replace(BUDGET, schedule="karras"))
    assert setup.sigmas.tolist() != pytest.approx(karras.sigmas.tolist())


def test_the_prediction_waits_for_the_first_run_instead_of_searching(cache, inpaint):
    with pytest.raises(InputError, match="searched by the first run"):
        engine.plan(inpaint, BUDGET, fit_prior=False)
    assert not (cache / "budget_schedules.json").exists()
    _run(inpaint, BUDGET)
    planned = engine.plan(inpaint, BUDGET, fit_prior=False)
    assert planned.steps == 3 and planned.nfe_per_sample == 3


@pytest.mark.parametrize("change, words", [
    ({"solver": "tv", "params": {}}, "classical reconstruction"),
    ({"warm_start": "tv"}, "warm start 'tv'"),
])
def test_settings_the_budget_schedule_cannot_serve_are_refused(cache, inpaint, change, words):
    with pytest.raises(InputError, match=words):
        list(engine.run(inpaint, dataclasses.replace(BUDGET, **change)))


def test_a_prior_that_cannot_draw_samples_is_refused(cache, inpaint):
    class NoSampling:
        def __init__(self, prior):
            self.prior = prior

        def __getattr__(self, name):
            if name == "sample":
                raise AttributeError(name)
            return getattr(self.prior, name)

        def to(self, device):
            return self

        def __call__(self, x, sigma):
            return self.prior(x, sigma)

    from diffrecon.priors import load_prior

    with pytest.raises(InputError, match="cannot draw samples"):
        list(engine.run(inpaint, BUDGET, denoiser=NoSampling(load_prior("gaussian", (1, 8, 8)))))


def test_stopping_during_the_search_ends_the_run_and_stores_nothing(cache, inpaint):
    stop = threading.Event()
    events = []
    for event in engine.run(inpaint, BUDGET, stop=stop):
        events.append(event)
        if isinstance(event, Preparing) and event.what == WHAT:
            stop.set()
    assert not any(isinstance(e, Finished) for e in events)
    assert any(isinstance(e, Log) and "searching the budget schedule" in e.message for e in events)
    assert budget_schedule.cached_sigmas(*_gaussian_problem(), "fvfo", 3) is None


def _gaussian_problem():
    setup = engine.prepare(make_demo("inpaint", size=8), dataclasses.replace(BUDGET, schedule="karras"))
    return setup.denoiser, setup.op


def test_cli_reconstruct_with_the_budget_schedule_records_it(cache, tmp_path, capsys):
    from diffrecon.cli import main
    from diffrecon.io import read_result, write_measurement

    write_measurement(tmp_path / "m.h5", make_demo("denoise", size=8))
    argv = ["reconstruct", str(tmp_path / "m.h5"), "--out", str(tmp_path / "r.h5"), "--prior", "gaussian",
            "--steps", "2", "--samples", "1", "--device", "cpu", "--schedule", "budget"]
    assert main(argv) == 0, capsys.readouterr().err
    provenance = read_result(tmp_path / "r.h5").provenance
    assert provenance["schedule"] == "budget" and provenance["budget_schedule"]["cached"] is False
    from diffrecon.engine.presets import FAST

    assert f"Budget schedule for {FAST['solver']} at 2 steps: searched" in capsys.readouterr().err
    assert main(argv) == 0
    assert read_result(tmp_path / "r.h5").provenance["budget_schedule"]["cached"] is True
