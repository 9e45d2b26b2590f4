"""Quality presets: the solver, steps and parameters a run takes when the user chose only how good
(and how slow) it should be.

``PRESETS`` is the one table: the window and ``diffrecon reconstruct`` start from ``fast``; ``full``
is the engine's own default (a :class:`~.recipe.Recipe` made without a preset is ``full``). A
setting given explicitly (``--solver``, ``--steps``, ``--param``, an edit in the window) overrides
the preset's; the preset's parameters apply only to the preset's own solver. The recipe records
the preset, and the provenance which of its settings were overridden (:func:`overridden`).
"""
from __future__ import annotations

from typing import Any, Mapping

from ..errors import InputError

#: DPM-Solver++(3M) SDE at 14 steps with DiffPIR's proximal data step (its defaults), a posterior
#: sampler by design (its std is a posterior std, uncalibrated like every fast solver's). On the
#: bundled CT demo (128 x 128, 4 samples, bundled prior, two CPU cores, one run of
#: benchmarks/fast_default_cpu.py): 31.49 dB in 12.6 s against DiffPIR at 50 steps' 30.53 dB in
#: 47.4 s; MRI demo 33.08 dB against 32.75 dB (benchmarks/README.md, "The fast default").
FAST: dict[str, Any] = {"solver": "dpmpp_3m_sde", "steps": 14, "params": {}}
#: DiffPIR at 50 steps, the default before presets.
FULL: dict[str, Any] = {"solver": "diffpir", "steps": 50, "params": {}}
PRESETS: dict[str, dict[str, Any]] = {"fast": FAST, "full": FULL}
NAMES = tuple(PRESETS)
#: what the window and the command line start from
FRONT_END_DEFAULT = "fast"


def preset(name: str) -> dict[str, Any]:
    """The table's entry ``name`` (a copy), or InputError naming the valid presets."""
    if name not in PRESETS:
        raise InputError(f"quality preset {name!r} is not known; valid presets are {', '.join(NAMES)}.")
    entry = PRESETS[name]
    return {"solver": entry["solver"], "steps": int(entry["steps"]), "params": dict(entry["params"])}


def resolve(name: str, solver: str | None = None, steps: int | None = None,
            params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``{preset, solver, steps, params}``: the preset ``name`` with the settings given explicitly
    (not None) in its place; the preset's params under the given ones where the solver is its own."""
    entry = preset(name)
    chosen = solver or entry["solver"]
    merged = {**(entry["params"] if chosen == entry["solver"] else {}), **dict(params or {})}
    return {"preset": name, "solver": chosen, "steps": entry["steps"] if steps is None else steps, "params": merged}


def overridden(recipe) -> list[str]:
    """Which of the recipe's solver, steps and params differ from its preset's (for the provenance)."""
    entry = preset(recipe.preset)
    out = [key for key in ("solver", "steps") if getattr(recipe, key) != entry[key]]
    if recipe.solver == entry["solver"]:
        defaults = recipe.info.Params(**entry["params"])
        if recipe.params != defaults:
            out.append("params")
    return out
