"""Noise levels chosen for a fixed budget: the ``N`` levels that maximise the PSNR of one solver's
reconstructions of problems simulated from the prior, cached per prior, forward model and budget.

Where the evaluations are placed matters most when there are few of them (Jiao, Li, Cai & Li,
arXiv:2512.24927, 2025; Karras et al., EDM, NeurIPS 2022, Sec. 3). Instead of a closed-form ramp,
:func:`optimise_sigmas` searches the levels directly:

1. EDM's family ``sigma_i = (a + i/(N-1) (b - a))^rho`` over a grid of ``rho`` and of the
   starting level (a fraction of the prior's ``sigma_max``), then
2. coordinate search on each ``log sigma_i`` (moves of a shrinking size that keep the levels
   decreasing), accepting a move only when the mean PSNR rises,

with the objective evaluated on the same simulated problems, starting noise and solver noise
throughout (common random numbers, so two schedules are compared on equal terms). The problems
are ``y = A x + n`` with ``x`` drawn from the prior (``prior.sample``, the exact priors) or given
(``images``, e.g. training-like phantoms for a network prior whose sampling would cost more than
the search). Nothing is downloaded: a result is computed here and stored in the user's cache
folder (:func:`~diffrecon.priors.acceleration.cache_folder`, ``budget_schedules.json``), keyed by
the prior's weight hash, the operator's kind and shape, its noise level, the solver and its
parameters, and ``N``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch

from ..errors import InputError
from ._common import SampleRNG

Tensor = torch.Tensor
RHOS = (1.0, 2.0, 3.0, 5.0, 7.0, 10.0)
STARTS = (1.0, 0.5, 0.25, 0.1)


def _ramp(steps: int, sigma_min: float, sigma_max: float, rho: float) -> Tensor:
    t = torch.linspace(0, 1, steps, dtype=torch.float64)
    a, b = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    return (a + t * (b - a)) ** rho


def _with_zero(levels: Tensor) -> Tensor:
    return torch.cat([levels, levels.new_zeros(1)])


def simulated_problems(denoiser, op, count: int, images: Tensor | None = None, seed: int = 0):
    """``(truths, ys)``: ``count`` images (drawn from the prior, or the first of ``images``) and their
    simulated measurements under ``op`` (fixed seeds; drawn on the operator's device, as a prior and
    operator moved to a GPU draw there)."""
    g = torch.Generator(device=op.device).manual_seed(seed)
    if images is None:
        if not hasattr(denoiser, "sample"):
            raise InputError("A budget schedule for a prior that cannot draw its own samples needs images "
                             "to simulate problems from (pass images=).")
        truths = denoiser.sample(count, g)
    else:
        truths = torch.as_tensor(images, dtype=torch.float32)[:count]
    truths = truths.to(op.device)
    with torch.no_grad():
        ys = torch.cat([op.simulate(t[None], g) for t in truths])
    return truths, ys


def mean_psnr(solver, denoiser, op, truths: Tensor, ys: Tensor, levels: Tensor, params, seed: int = 0) -> float:
    """Mean PSNR (dB, peak = each truth's range) of one sample per problem with ``levels`` (+ the final 0)."""
    sigmas = _with_zero(levels)
    total = 0.0
    for k, (truth, y) in enumerate(zip(truths, ys)):
        rng = SampleRNG(seed, [k], device=truth.device)
        x = float(sigmas[0]) * rng.randn(truth.shape)
        last = None
        for last in solver.solve(denoiser, op, y[None], sigmas, x, params=params, generator=rng):
            pass
        mse = float((last.x[0].real.float() - truth).square().mean())
        peak = float(truth.max() - truth.min()) or 1.0
        total += 10 * math.log10(peak**2 / max(mse, 1e-20)) if math.isfinite(mse) else -100.0
    return total / len(truths)


def optimise_sigmas(objective: Callable[[Tensor], float], steps: int, sigma_min: float, sigma_max: float,
                    max_trials: int = 80) -> tuple[Tensor, float, int]:
    """``(levels, score, trials)``: the ``steps`` decreasing levels in ``[sigma_min, sigma_max]`` that
    maximise ``objective(levels)`` found within ``max_trials`` evaluations of it (module docstring)."""
    trials = 0
    best, best_score = None, -math.inf
    for rho in RHOS:
        for start in STARTS:
            top = max(sigma_max * start, sigma_min * 1.01)
            levels = _ramp(steps, sigma_min, top, rho) if steps > 1 else torch.tensor([top], dtype=torch.float64)
            score = objective(levels)
            trials += 1
            if score > best_score:
                best, best_score = levels, score
            if steps == 1:
                break
    u = best.log()
    lo, hi = math.log(sigma_min), math.log(sigma_max)
    move = 0.5
    while trials < max_trials and move > 0.02:
        improved = False
        for j in range(steps):
            for sign in (1.0, -1.0):
                if trials >= max_trials:
                    break
                cand = u.clone()
                cand[j] = cand[j] + sign * move
                upper = u[j - 1] if j > 0 else hi
                lower = u[j + 1] if j + 1 < steps else lo
                if not lower < cand[j] < upper:
                    continue
                score = objective(cand.exp())
                trials += 1
                if score > best_score:
                    u, best_score, improved = cand, score, True
                    break
        if not improved:
            move /= 2
    return u.exp(), best_score, trials


def cache_key(prior_hash: str, op, solver_name: str, params, steps: int) -> str:
    what = {"prior": prior_hash, "operator": op.kind, "shape": list(op.image_shape),
            "noise": round(float(op.noise_sigma), 6), "solver": solver_name,
            "params": dataclasses.asdict(params) if dataclasses.is_dataclass(params) else dict(params or {}),
            "steps": int(steps)}
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _cache_file(folder: Path | None) -> Path:
    if folder is None:
        from ..priors.acceleration import cache_folder

        folder = cache_folder()
    return Path(folder) / "budget_schedules.json"


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _write(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _key_and_params(denoiser, op, solver: str, steps: int, params, prior_hash: str | None):
    from ..priors import prior_weight_hash
    from . import get_solver

    if steps < 1:
        raise InputError(f"steps must be at least 1 (got {steps}).")
    info = get_solver(solver)
    params = params if params is not None else info.Params()
    return info, params, cache_key(prior_hash or prior_weight_hash(denoiser), op, solver, params, steps)


def cached_sigmas(denoiser, op, solver: str, steps: int, *, params=None, cache_folder: Path | None = None,
                  prior_hash: str | None = None) -> tuple[Tensor, dict[str, Any]] | None:
    """The stored schedule and record of :func:`budget_sigmas` for this key, or None (no search here)."""
    _, _, key = _key_and_params(denoiser, op, solver, steps, params, prior_hash)
    stored = _read(_cache_file(cache_folder)).get(key)
    if stored is None or len(stored.get("sigmas", ())) != steps:
        return None
    return _with_zero(torch.tensor(stored["sigmas"], dtype=torch.float64)), {**stored, "cached": True}


def budget_sigmas(denoiser, op, solver: str, steps: int, *, params=None, images: Tensor | None = None,
                  problems: int = 4, max_trials: int = 80, cache_folder: Path | None = None,
                  prior_hash: str | None = None,
                  progress: Callable[[int, int], None] | None = None) -> tuple[Tensor, dict[str, Any]]:
    """The schedule (``steps`` levels and the final 0) that maximises ``solver``'s mean PSNR on
    ``problems`` problems simulated under ``op``, and its record (score, Karras-baseline score, trials,
    whether it came from the cache). Computed once per key (:func:`cache_key`), then read back.
    ``progress(done, total)`` is called after each schedule tried (``total``: ``max_trials`` and the
    Karras baseline); an exception it raises ends the search, storing nothing."""
    info, params, key = _key_and_params(denoiser, op, solver, steps, params, prior_hash)
    found = cached_sigmas(denoiser, op, solver, steps, params=params, cache_folder=cache_folder,
                          prior_hash=prior_hash)
    if found is not None:
        return found
    path = _cache_file(cache_folder)
    truths, ys = simulated_problems(denoiser, op, problems, images)
    tried = [0]

    def objective(levels: Tensor) -> float:
        score = mean_psnr(info, denoiser, op, truths, ys, levels, params)
        tried[0] += 1
        if progress is not None:
            progress(min(tried[0], max_trials + 1), max_trials + 1)
        return score

    with torch.no_grad():
        from ..schedule import karras_sigmas

        karras = objective(karras_sigmas(steps, denoiser.sigma_min, denoiser.sigma_max)[:-1])
        levels, score, trials = optimise_sigmas(objective, steps, denoiser.sigma_min, denoiser.sigma_max, max_trials)
    if progress is not None:  # the search may end before max_trials (its moves became small)
        progress(max_trials + 1, max_trials + 1)
    record = {"sigmas": [float(v) for v in levels], "psnr": score, "karras_psnr": karras, "trials": trials,
              "problems": problems, "solver": solver, "operator": op.kind, "steps": steps}
    data = _read(path)
    data[key] = record
    _write(path, data)
    return _with_zero(levels), {**record, "cached": False}
