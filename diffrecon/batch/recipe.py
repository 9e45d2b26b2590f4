"""The recipe a batch applies to every input, and its fingerprint.

A recipe is the engine's :class:`~diffrecon.engine.Recipe`: the part of a run's settings that
decides the numbers of a result (solver, its parameters, steps, samples, seed, prior, schedule,
warm start, ...); the :class:`~diffrecon.engine.RuntimeOptions` (device, precision, batch size,
...) are how it runs. The batch reads, compares and hashes recipes through the engine's one
to/from-dict, so it never lists their fields itself.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Any, Mapping

from ..engine import Recipe, RunConfig, RuntimeOptions
from ..engine.recipe import RECIPE_KEYS
from ..errors import InputError
from .manifest import PARAM_PREFIX

#: The settings that make up the recipe (and its hash): the engine's Recipe fields.
RECIPE_FIELDS = RECIPE_KEYS


def recipe_from_result(path: str | os.PathLike) -> RunConfig:
    """The recipe that made the result file ``path`` (its provenance), with default runtime options."""
    from ..io import read_result

    provenance = read_result(path).provenance
    if "solver" not in provenance:
        raise InputError(f"File {path} records no recipe (its /provenance has no solver); give the run "
                         "settings instead.")
    return RunConfig.from_parts(Recipe.from_provenance(provenance), RuntimeOptions())


def with_overrides(config: RunConfig, overrides: Mapping[str, Any], where: str = "the recipe") -> RunConfig:
    """``config`` with recipe settings replaced (``param.<name>`` or a ``params`` mapping for solver
    parameters), the parameters typed and checked against the solver; InputError naming ``where``."""
    from ..solvers import get_solver, parse_params

    fields = {k: v for k, v in overrides.items() if not k.startswith(PARAM_PREFIX) and k != "params"}
    unknown = sorted(set(fields) - set(RECIPE_FIELDS))
    if unknown:
        raise InputError(f"{where}: {', '.join(unknown)} is not a recipe setting; valid are {', '.join(RECIPE_FIELDS)}.")
    solver = fields.get("solver", config.solver)
    params = dict(config.params) if solver == config.solver else {}
    params.update(overrides.get("params") or {})
    params.update({k[len(PARAM_PREFIX):]: v for k, v in overrides.items() if k.startswith(PARAM_PREFIX)})
    try:
        typed = parse_params(get_solver(solver).Params, params, solver)
    except InputError as err:
        raise InputError(f"{where}: {err}") from None
    return dataclasses.replace(config, **fields, params={k: getattr(typed, k) for k in params})


def recipe_dict(config: RunConfig) -> dict[str, Any]:
    """The recipe of ``config`` as plain JSON values, solver parameters complete (defaults filled),
    so two configs that run the same numbers give the same dict."""
    from ..solvers import get_solver, parse_params

    out = {**config.recipe.to_dict(), "params": dataclasses.asdict(
        parse_params(get_solver(config.solver).Params, dict(config.params), config.solver))}
    return json.loads(json.dumps(out, sort_keys=True, default=str))


def recipe_hash(config: RunConfig) -> str:
    """A short fingerprint of the recipe: results with equal hashes were made by the same settings."""
    text = json.dumps(recipe_dict(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
