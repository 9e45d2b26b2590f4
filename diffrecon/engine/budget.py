"""The ``budget`` schedule in a run: noise levels searched for the best PSNR of this solver at this
number of steps, on problems simulated from the prior under this forward model
(:mod:`diffrecon.solvers.budget_schedule`), cached per prior, forward model, solver, parameters
and steps. The first run of a setting searches (about 80 solver runs on 4 problems: progress as
:class:`~.events.Preparing`); later runs and predictions read the cache. The provenance records
the levels, their scores and whether they came from the cache (:func:`provenance`)."""
from __future__ import annotations

import queue
import threading
from typing import Any, Callable, Iterator

from ..errors import InputError
from .events import Preparing

WHAT = "Searching the budget schedule for this prior, forward model, solver and steps (once; kept on disk)"


class SearchStopped(Exception):
    """Raised through the search when the run is stopped while it searches."""


def check(recipe) -> None:
    """The refusals a recipe with ``schedule="budget"`` meets before any work (one sentence each)."""
    info = recipe.info
    if not info.uses_prior:
        raise InputError(f"The budget schedule places a diffusion solver's noise levels; {recipe.solver} is a "
                         "classical reconstruction without them: choose another schedule (karras) or a diffusion "
                         "solver.")
    if recipe.warm_start != "none":
        raise InputError(f"The budget schedule is searched for runs from pure noise; warm start {recipe.warm_start!r} "
                         "starts lower: choose warm start none or another schedule.")
    if info.name == "reference":
        raise InputError("The reference sampler runs split Gibbs sampling at its own levels; the budget schedule "
                         "does not apply: choose another schedule or solver.")


def levels(recipe, info, params, op, denoiser, prior_name: str, prior_hash: str, *, search: bool,
           progress: Callable[[int, int], None] | None = None):
    """``(sigmas, record)`` of the budget schedule: the cached one, else searched (``search``) with
    ``progress(done, total)``; InputError where the prior cannot simulate problems or ``search`` is
    off and nothing is cached."""
    from ..solvers import budget_schedule

    where = dict(params=params, prior_hash=prior_hash or None)
    found = budget_schedule.cached_sigmas(denoiser, op, info.name, recipe.steps, **where)
    if found is not None:
        return found
    if not callable(getattr(denoiser, "sample", None)):
        raise InputError(f"The budget schedule simulates problems from the prior, which the {prior_name} prior "
                         "cannot draw samples for; use the gaussian prior, or another schedule (karras).")
    if not search:
        raise InputError(f"The budget schedule for {info.name} at {recipe.steps} steps is searched by the first run "
                         "(about 80 solver runs, with progress, then kept on disk); predictions follow after that.")
    return budget_schedule.budget_sigmas(denoiser, op, info.name, recipe.steps, progress=progress, **where)


def provenance(record: dict[str, Any] | None) -> dict[str, Any]:
    """What the provenance says of a budget schedule: its levels, scores and whether they were cached."""
    if record is None:
        return {}
    keep = ("sigmas", "psnr", "karras_psnr", "trials", "problems", "cached")
    return {"budget_schedule": {k: record[k] for k in keep if k in record}}


def prepare_events(prepare: Callable[..., Any], stop: threading.Event | None) -> Iterator[Any]:
    """Run ``prepare(progress=...)`` (the engine's :func:`~.preparation.prepare`) on a helper thread,
    yielding a :class:`Preparing` event per schedule tried; returns the Setup (``yield from``), or None
    when ``stop`` was set during the search. Exceptions of ``prepare`` are raised here."""
    events: queue.Queue = queue.Queue()
    out: dict[str, Any] = {}

    def progress(done: int, total: int) -> None:
        if stop is not None and stop.is_set():
            raise SearchStopped
        events.put(Preparing(WHAT, done, total))

    def work() -> None:
        try:
            out["setup"] = prepare(progress=progress)
        except BaseException as err:  # handed to the caller's thread
            out["error"] = err

    thread = threading.Thread(target=work, name="budget-schedule", daemon=True)
    thread.start()
    while thread.is_alive() or not events.empty():
        try:
            yield events.get(timeout=0.05)
        except queue.Empty:
            pass
    thread.join()
    if isinstance(out.get("error"), SearchStopped):
        return None
    if "error" in out:
        raise out["error"]
    return out["setup"]
