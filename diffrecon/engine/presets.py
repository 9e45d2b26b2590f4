"""Quality presets: the solver, steps and parameters a run takes when the user chose only how good
(and how slow) it should be.

``PRESETS`` is the one table: the window and ``diffrecon reconstruct`` start from ``fast``; ``full``
is the engine's own default (a :class:`~.recipe.Recipe` made without a preset is ``full``). A
setting given explicitly (``--solver``, ``--steps``, ``--param``, ``--warm-start``, an edit in the window) overrides
the preset's; the preset's parameters apply only to the preset's own solver. The recipe records
the preset, and the provenance which of its settings were overridden (:func:`overridden`).
"""
from __future__ import annotations

from typing import Any, Mapping

from ..errors import InputError

#: DPM-Solver++(3M) SDE at 14 steps with DiffPIR's proximal data step (its defaults), warm-started
#: from the TV reconstruction (CCDF, :mod:`diffrecon.warm_start`). From noise, on the bundled CT demo
#: (128 x 128, 4 samples, bundled prior, two CPU cores, one run of benchmarks/fast_default_cpu.py)
#: it gave 31.49 dB in 12.6 s against DiffPIR at 50 steps' 30.53 dB in 47.4 s. On the real-image
#: evaluation (benchmarks/real_images.py, 5 images x 8 tasks, H100) the warm start lifted it from
#: 4 to 24 of 40 rows at or above TV with the discrepancy weight (mean gap to that TV -3.31 dB
#: from noise, +0.08 dB warm); on the CT demo it costs three TV solves and 1.9 dB (29.62 dB in
#: 34.9 s against 31.49 dB in 24.9 s from noise, one run of fast_default_cpu.py), on the MRI and
#: inpainting demos it gains 1.2 and 3.1 dB. A warm-started spread is a seed spread, not a
#: posterior std.
FAST: dict[str, Any] = {"solver": "dpmpp_3m_sde", "steps": 14, "params": {}, "warm_start": "tv"}
#: DiffPIR at 50 steps from noise, the default before presets: a posterior sampler.
FULL: dict[str, Any] = {"solver": "diffpir", "steps": 50, "params": {}, "warm_start": "none"}
PRESETS: dict[str, dict[str, Any]] = {"fast": FAST, "full": FULL}
NAMES = tuple(PRESETS)
#: what the window and the command line start from
FRONT_END_DEFAULT = "fast"


def preset(name: str) -> dict[str, Any]:
    """The table's entry ``name`` (a copy), or InputError naming the valid presets."""
    if name not in PRESETS:
        raise InputError(f"quality preset {name!r} is not known; valid presets are {', '.join(NAMES)}.")
    entry = PRESETS[name]
    return {"solver": entry["solver"], "steps": int(entry["steps"]), "params": dict(entry["params"]),
            "warm_start": entry["warm_start"]}


def resolve(name: str, solver: str | None = None, steps: int | None = None,
            params: Mapping[str, Any] | None = None, warm_start: str | None = None) -> dict[str, Any]:
    """``{preset, solver, steps, params, warm_start}``: the preset ``name`` with the settings given
    explicitly (not None) in its place; the preset's params under the given ones where the solver
    is its own."""
    entry = preset(name)
    chosen = solver or entry["solver"]
    merged = {**(entry["params"] if chosen == entry["solver"] else {}), **dict(params or {})}
    return {"preset": name, "solver": chosen, "steps": entry["steps"] if steps is None else steps, "params": merged,
            "warm_start": entry["warm_start"] if warm_start is None else warm_start}


def overridden(recipe) -> list[str]:
    """Which of the recipe's solver, steps and params differ from its preset's (for the provenance)."""
    entry = preset(recipe.preset)
    out = [key for key in ("solver", "steps", "warm_start") if getattr(recipe, key) != entry[key]]
    if recipe.solver == entry["solver"]:
        defaults = recipe.info.Params(**entry["params"])
        if recipe.params != defaults:
            out.append("params")
    return out
