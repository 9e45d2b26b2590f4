"""Quality presets: one table (diffrecon.engine.presets), the engine's default ``full`` unchanged,
``diffrecon reconstruct`` starting from ``fast`` with explicit settings overriding it, the preset
and its overrides in the provenance, and plan() predicting from the preset's steps and evaluations."""
from __future__ import annotations

import dataclasses

import pytest

from diffrecon import engine
from diffrecon.demo import make_demo
from diffrecon.engine import RunConfig
from diffrecon.engine import probe
from diffrecon.engine.presets import FAST, FULL, overridden, resolve
from diffrecon.errors import InputError
from diffrecon.solvers import SOLVERS


def test_the_engine_default_is_the_full_preset_and_unknown_presets_are_refused():
    recipe = RunConfig().recipe
    assert (recipe.preset, recipe.solver, recipe.steps) == ("full", FULL["solver"], FULL["steps"]) == ("full", "diffpir", 50)
    assert overridden(recipe) == []
    with pytest.raises(InputError, match="quality preset 'quick' is not known; valid values are fast, full"):
        RunConfig(preset="quick").recipe


def test_explicit_settings_override_the_preset_and_its_params_apply_to_its_own_solver_only():
    fast = RunConfig.from_preset("fast").recipe
    assert (fast.solver, fast.steps) == (FAST["solver"], FAST["steps"])
    assert fast.params == SOLVERS[FAST["solver"]].Params(**FAST["params"]) and overridden(fast) == []
    other = next(name for name in ("ddim", "dps") if name != FAST["solver"])
    swapped = RunConfig.from_preset("fast", solver=other).recipe
    assert swapped.params == SOLVERS[other].Params() and swapped.steps == FAST["steps"]
    assert overridden(swapped) == ["solver"]
    longer = RunConfig.from_preset("fast", steps=FAST["steps"] + 7).recipe
    assert longer.steps == FAST["steps"] + 7 and overridden(longer) == ["steps"]
    assert resolve("full", steps=3) == {"preset": "full", "solver": "diffpir", "steps": 3, "params": {},
                                        "warm_start": "none"}


def test_fast_warm_starts_from_tv_and_full_starts_from_noise_unless_told_otherwise():
    assert RunConfig.from_preset("fast").recipe.warm_start == "tv"
    assert RunConfig.from_preset("full").recipe.warm_start == "none" == RunConfig().recipe.warm_start
    cold = RunConfig.from_preset("fast", warm_start="none").recipe
    assert cold.warm_start == "none" and overridden(cold) == ["warm_start"]
    assert overridden(RunConfig.from_preset("full", warm_start="tv").recipe) == ["warm_start"]


def _reconstruct(tmp_path, *extra):
    from diffrecon.cli import main
    from diffrecon.io import read_result, write_measurement

    write_measurement(tmp_path / "m.h5", make_demo("denoise", size=8))
    out = tmp_path / "r.h5"
    assert main(["reconstruct", str(tmp_path / "m.h5"), "--out", str(out), "--prior", "gaussian", "--samples", "1",
                 "--device", "cpu", *extra]) == 0
    return read_result(out).provenance


def test_reconstruct_starts_from_the_fast_preset(tmp_path, capsys):
    p = _reconstruct(tmp_path)
    assert (p["preset"], p["solver"], p["steps"], p["preset_overridden"]) == ("fast", FAST["solver"], FAST["steps"], [])
    assert p["warm_start"] == FAST["warm_start"] == "tv"
    assert f"Quality fast: {FAST['solver']}, {FAST['steps']} steps, warm-started from TV." in capsys.readouterr().err
    assert p["nfe_per_sample"] == SOLVERS[FAST["solver"]].evaluations(None, FAST["steps"])


def test_reconstruct_quality_full_and_explicit_steps(tmp_path):
    p = _reconstruct(tmp_path, "--quality", "full", "--steps", "2")
    assert (p["preset"], p["solver"], p["steps"], p["preset_overridden"]) == ("full", "diffpir", 2, ["steps"])
    assert p["warm_start"] == "none"


def test_reconstruct_warm_start_none_overrides_the_fast_preset(tmp_path):
    p = _reconstruct(tmp_path, "--warm-start", "none")
    assert (p["preset"], p["warm_start"], p["preset_overridden"]) == ("fast", "none", ["warm_start"])


def test_reconstruct_param_overrides_merge_with_the_preset_params(tmp_path):
    if "lam" not in {f.name for f in dataclasses.fields(SOLVERS[FAST["solver"]].Params)}:
        pytest.skip("the fast preset's solver has no lam")
    p = _reconstruct(tmp_path, "--steps", "2", "--param", "lam=2.5")
    assert p["params"]["lam"] == 2.5 and p["solver"] == FAST["solver"]
    assert all(p["params"][k] == v for k, v in FAST["params"].items() if k != "lam")


@pytest.mark.parametrize("preset, change, evaluations", [
    ("fast", {}, lambda info, steps: steps * info.evaluations_per_step()),
    ("full", {}, lambda info, steps: steps * info.evaluations_per_step()),
    ("full", {"solver": "ddnm", "steps": 7, "params": {"travel_length": 2, "travel_repeat": 2}}, lambda info, steps: 19),
])
def test_plan_predicts_from_the_presets_steps_and_the_solvers_evaluations(monkeypatch, preset, change, evaluations):
    # a fixed time per plain step: the prediction is that time x the run's evaluations / evaluations per step
    monkeypatch.setattr(probe, "_time_steps", lambda setup, k, stop: (0.01, len(setup.sigmas) - 1))
    # from noise: the warm start's classical solves add their own measured time (tests/test_engine.py)
    config = dataclasses.replace(RunConfig.from_preset(preset, **change), prior="gaussian", device="cpu", samples=2,
                                 batch_size=2, warm_start="none")
    planned = engine.plan(make_demo("denoise", size=8), config)
    info, steps = SOLVERS[config.solver], config.steps
    assert planned.steps == steps == (change.get("steps") or (FAST if preset == "fast" else FULL)["steps"])
    assert planned.nfe_per_sample == evaluations(info, steps)
    assert planned.predicted_seconds == pytest.approx(0.01 * planned.nfe_per_sample / info.evaluations_per_step())
