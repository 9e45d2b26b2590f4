"""A run's Recipe and RuntimeOptions: one to/from-dict pair that round-trips every registered
solver's params, refuses bad values in one sentence naming the setting, and reads a result
file's provenance back into the recipe that made it."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from diffrecon.engine import RECIPE_KEYS, RUNTIME_KEYS, Finished, Recipe, RunConfig, RuntimeOptions, run
from diffrecon.errors import InputError
from diffrecon.solvers import SOLVERS


def _changed(value, f: dataclasses.Field):
    """Another valid value of the params field ``f`` (its declared range and choices)."""
    lo, hi = f.metadata.get("range", (None, None))
    choices = f.metadata.get("choices")
    if choices:
        return next(c for c in choices if c != value)
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1 if hi is None or value + 1 <= hi else value - 1
    if isinstance(value, float):
        return (value + hi) / 2 if hi is not None and hi > value else (value + (lo or 0.0)) / 2 if value else 0.5
    return None


def _through_json(d: dict) -> dict:
    return json.loads(json.dumps(d))


@pytest.mark.parametrize("solver", sorted(SOLVERS))
def test_every_solvers_default_recipe_round_trips_through_a_json_dict(solver):
    recipe = Recipe(solver=solver)
    assert recipe.params == SOLVERS[solver].Params()
    back = Recipe.from_dict(_through_json(recipe.to_dict()))
    assert back == recipe and type(back.params) is SOLVERS[solver].Params


@pytest.mark.parametrize("solver", sorted(SOLVERS))
def test_every_solvers_changed_params_round_trip_field_by_field(solver):
    params = SOLVERS[solver].Params()
    for f in dataclasses.fields(params):
        new = _changed(getattr(params, f.name), f)
        if new is None:
            continue
        recipe = Recipe(solver=solver, params=dataclasses.replace(params, **{f.name: new}), steps=7, samples=3,
                        seed=11, schedule="vp_uniform", warm_start="tv", sigma_start=0.5, use_calibration=False,
                        weight_choice={"rule": "discrepancy", "param": f.name})
        back = Recipe.from_dict(_through_json(recipe.to_dict()))
        assert back == recipe and getattr(back.params, f.name) == new != getattr(params, f.name)


def test_params_may_be_partial_overrides_and_text_as_the_cli_gives_them():
    recipe = Recipe.from_dict({"solver": "dps", "params": {"zeta": "0.5", "variance_correction": True}})
    assert recipe.params == dataclasses.replace(SOLVERS["dps"].Params(), zeta=0.5, variance_correction=True)
    assert Recipe.from_dict({}) == Recipe()  # every key missing: the defaults
    # numpy scalars, as HDF5 attributes and array-backed forms give them
    numpy = Recipe(solver="daps", params={"ode_steps": np.int64(3), "lr": np.float32(0.5)}, steps=np.int64(4),
                   seed=np.uint32(2))
    assert numpy == Recipe(solver="daps", params={"ode_steps": 3, "lr": 0.5}, steps=4, seed=2)


@pytest.mark.parametrize("data, words", [
    ({"steps": 0}, "steps must be at least 1"), ({"steps": "ten"}, "steps must be a whole number"),
    ({"samples": 2.5}, "samples must be a whole number"), ({"solver": "nope"}, "Unknown solver 'nope'"),
    ({"seed": -1}, "seed -1 is out of range"), ({"schedule": "cosine"}, "schedule 'cosine' is not known"),
    ({"warm_start": "fbp"}, "warm start 'fbp' is not known; valid values are none, tv"),
    ({"sigma_start": -1.0}, "sigma_start must be a finite number above 0"),
    ({"use_calibration": "yes"}, "use_calibration must be true or false"), ({"prior": ""}, "prior must be"),
    ({"solver": "dps", "params": {"zeta": "strong"}}, "dps parameter zeta must be a float"),
    ({"solver": "dps", "params": {"zeta": [1]}}, "dps parameter zeta must be a number"),
    ({"solver": "daps", "params": {"ode_steps": 2.5}}, "daps parameter ode_steps must be a whole number"),
    ({"solver": "daps", "params": {"ode_steps": True}}, "daps parameter ode_steps must be a whole number"),
    ({"solver": "dps", "params": {"zeta": 1e9}}, r"dps parameter zeta is 1000000000.0; valid values lie in"),
    ({"solver": "dps", "params": {"nope": 1}}, "dps has no parameter 'nope'"),
    ({"solver": "dps", "params": 3}, "params of dps must be a mapping"),
    ({"colour": "red"}, "'colour' is not a setting of the recipe; valid settings are solver, params"),
    ({"device": "cpu"}, "'device' is not a setting of the recipe"),  # a runtime option is not part of the recipe
])
def test_bad_recipe_dicts_are_refused_in_one_sentence_naming_the_setting(data, words):
    with pytest.raises(InputError, match=words) as err:
        Recipe.from_dict(data)
    text = str(err.value)
    assert text.endswith(".") and "\n" not in text


@pytest.mark.parametrize("data, words", [
    ({"precision": "fp8"}, "precision 'fp8' is not known; valid values are bf16, fp32"),
    ({"compile": "jit"}, "compile mode 'jit' is not known"), ({"batch_size": 0}, "batch size must be at least 1"),
    ({"on_divergence": "ignore"}, "on_divergence 'ignore' is not known"),
    ({"keep_samples": -1}, "keep_samples must be at least 0"), ({"checkpointing": 1}, "checkpointing must be true"),
    ({"preview_interval": float("nan")}, "preview_interval must be a finite number"),
    ({"steps": 5}, "'steps' is not a setting of the runtime options"),
])
def test_bad_runtime_dicts_are_refused_in_one_sentence_naming_the_setting(data, words):
    with pytest.raises(InputError, match=words):
        RuntimeOptions.from_dict(data)


def test_recipe_and_runtime_split_the_run_config_without_overlap_or_gaps():
    flat = {f.name for f in dataclasses.fields(RunConfig)}
    assert set(RECIPE_KEYS).isdisjoint(RUNTIME_KEYS) and set(RECIPE_KEYS) | set(RUNTIME_KEYS) == flat
    assert RunConfig().recipe == Recipe() and RunConfig().runtime == RuntimeOptions()  # the same defaults
    recipe = Recipe(solver="ddim", params={"eta": 0.5}, steps=9, samples=2, seed=4, prior="gaussian")
    runtime = RuntimeOptions(device="cpu", batch_size=1, on_divergence="all", retry_on_divergence=True)
    config = RunConfig.from_parts(recipe, runtime)
    assert config.recipe == recipe and config.runtime == runtime and config.batch_size == 1
    assert RunConfig.from_dict(_through_json(config.to_dict())) == config
    with pytest.raises(InputError, match="'colour' is not a setting of the saved settings"):
        RunConfig.from_dict({"colour": 1}, "the saved settings")


def test_a_result_files_provenance_reads_back_as_the_recipe_that_made_it(tmp_path):
    from diffrecon.demo import make_demo
    from diffrecon.io import read_result, write_result

    m = make_demo("denoise", size=16, seed=0)
    recipe = Recipe(solver="diffpir", params={"lam": 3.0, "zeta": 0.6}, steps=3, samples=2, seed=5,
                    prior="gaussian", schedule="vp_quadratic", warm_start="tv", use_calibration=False)
    events = list(run(m, RunConfig.from_parts(recipe, RuntimeOptions(device="cpu", prior_fit=False))))
    assert isinstance(events[-1], Finished)
    write_result(tmp_path / "r.h5", events[-1].result)
    again = Recipe.from_provenance(read_result(tmp_path / "r.h5").provenance)
    assert again == recipe
    # the re-run from the file gives the same images
    rerun = list(run(m, RunConfig.from_parts(again, RuntimeOptions(device="cpu", prior_fit=False))))[-1].result
    assert (rerun.mean == events[-1].result.mean).all() and (rerun.std == events[-1].result.std).all()
