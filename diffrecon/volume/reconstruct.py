"""The volume reconstruction: a 2D solver's steps on a stack of slices, coupled along z.

Per step, for one posterior sample (a whole volume ``x`` of shape ``(Z, C, H, W)``):

    x0_z   = D(x_z, sigma)                       every slice, in batches of slices
    x0_hat = argmin_x sum_z ||A x_z - y_z||^2 + rho (||x - x0||^2 + lam_z ||D_z x||^2)
    x      = the solver's re-noising of x0_hat

with the solver's own ``rho`` (:mod:`.steps`: DiffPIR, its posterior path, DDS, DDNM+) and ``D_z``
the finite difference between neighbouring slices. The z term is weighted relative to the
prior's proximal term, so ``lam_z`` is a number of slices' worth of smoothing that stays the
same at every noise level; ``lam_z = 0`` is slice-by-slice reconstruction. Left unset, ``lam_z``
follows the slice distance (:func:`default_lam_z`). Sample ``k`` draws all its noise from its own
stream seeded by ``(seed, k)``, so a sample is the same whatever else runs and however the slices
are batched.

Memory: the prior denoises, and the operator is applied to, ``slice_batch`` slices at a time; left
unset it is the engine's batch plan (:func:`~diffrecon.engine.planning.auto_batch`: every slice
at once on a GPU, 8 on the CPU), halved after an out-of-memory error as the engine halves its
sample batches, the step then taken again from the same random state. Stop is checked before
every batch of slices, in the denoising and in the data step's operator applications.
"""
from __future__ import annotations

import dataclasses
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any, Iterator

import numpy as np
import torch

from ..engine import RunConfig
from ..engine.events import Log, Planned, Progress, Statistics
from ..engine.normalization import estimate_range
from ..engine.planning import auto_batch
from ..engine.preparation import prepare
from ..errors import InputError, RunError
from ..measurement import Measurement
from ..metrics import psnr
from ..runtime import RunMemory, out_of_memory
from ..solvers._common import SampleRNG, floored_noise_sigma
from .steps import Stepper, Stopped, Volume, check_volume_solver, chunks, data_variance

#: ``lam_z`` at isotropic voxels (slices one pixel apart); see :func:`default_lam_z`.
LAM_Z_ISOTROPIC = 1.0


def default_lam_z(z_spacing: float) -> float:
    """The z-coupling weight for slices ``z_spacing`` pixels apart: ``LAM_Z_ISOTROPIC / z_spacing^2``.

    ``||D_z x||^2`` of slices ``d`` apart is ``d^2`` times the squared z-gradient it stands for,
    so a weight on the gradient is ``lam / d^2`` on the difference; measured with
    ``benchmarks/volume_zcoupling.py`` (README, Volumes)."""
    if not (np.isfinite(z_spacing) and z_spacing > 0):
        raise InputError(f"z_spacing {z_spacing} is invalid; it must be a positive number of pixels.")
    return LAM_Z_ISOTROPIC / float(z_spacing) ** 2


@dataclass
class VolumeResult:
    """A finished (or stopped) volume, in the slices' physical units."""

    mean: np.ndarray  # (Z, C, H, W)
    std: np.ndarray  # (Z, C, H, W)
    n_samples: int
    metrics: dict[str, float]  # psnr, z_inconsistency (with ground truth), z_roughness
    slice_psnr: list[float] | None  # per slice, with ground truth
    provenance: dict[str, Any] = field(default_factory=dict)
    units: str = "a.u."
    complete: bool = True


@dataclass
class VolumeFinished:
    result: VolumeResult


def _same_operator(a, b) -> bool:
    return (a.kind == b.kind and tuple(a.image_shape) == tuple(b.image_shape) and a.params == b.params
            and a.arrays.keys() == b.arrays.keys()
            and all(np.array_equal(a.arrays[k], b.arrays[k]) for k in a.arrays))


def check_slices(slices: list[Measurement]) -> None:
    """InputError (one sentence) unless ``slices`` are at least two measurements of one forward model."""
    if len(slices) < 2:
        raise InputError(f"A volume needs at least 2 slices (got {len(slices)}).")
    first = slices[0]
    for z, m in enumerate(slices[1:], start=2):
        if not _same_operator(first.operator, m.operator):
            raise InputError(f"Slice {z} has another forward model ({m.operator.kind}, "
                             f"{'x'.join(map(str, m.operator.image_shape))}) than slice 1 "
                             f"({first.operator.kind}, {'x'.join(map(str, first.operator.image_shape))}); "
                             "every slice of a volume must share one operator.")
        if m.noise_sigma != first.noise_sigma:
            raise InputError(f"Slice {z} has noise sigma {m.noise_sigma:g} but slice 1 has {first.noise_sigma:g}; "
                             "every slice of a volume must share one noise level.")


def z_inconsistency(mean: np.ndarray, truth: np.ndarray) -> float:
    """The std of the difference between neighbouring slices' errors: how much the error jumps
    from slice to slice (0 for an error that is the same on every slice)."""
    err = np.asarray(mean, np.float64) - np.asarray(truth, np.float64)
    return float(np.diff(err, axis=0).std())


def _volume_range(slices, op_builder) -> tuple[float, float]:
    ranges = [m.value_range for m in slices]
    if all(r is not None for r in ranges):
        return min(r[0] for r in ranges), max(r[1] for r in ranges)
    op = op_builder()
    found = [estimate_range(op, torch.as_tensor(np.asarray(m.y)).unsqueeze(0).to(op.meas_dtype)) for m in slices]
    return min(r[0] for r in found), max(r[1] for r in found)


def reconstruct_volume(slices, config: RunConfig, *, lam_z: float | None = None, z_spacing: float | None = None,
                       slice_batch: int | None = None, cg_iters: int = 30, stop: threading.Event | None = None,
                       denoiser=None) -> Iterator:
    """Reconstruct the stack ``slices`` (one measurement per slice, one shared operator; or a
    :class:`~diffrecon.volume.VolumeMeasurement`, whose z_spacing and truth are then used) with
    ``config`` (solver ``diffpir``, ``dds`` or ``ddnm`` with their params; DiffPIR's posterior
    path is its ``perturb`` param), yielding the engine's ``Planned``, ``Progress``,
    ``Statistics`` and ``Log`` events and ending with :class:`VolumeFinished`.

    ``lam_z`` None: :func:`default_lam_z` of ``z_spacing`` (default 1 pixel). ``stop`` ends the
    run within the step in progress; that sample is dropped and the finished ones make the result."""
    truth = getattr(slices, "truth", None)
    if z_spacing is None:
        z_spacing = float(getattr(slices, "z_spacing", 1.0))
    slices = list(getattr(slices, "slices", slices))
    check_slices(slices)
    lam_given = lam_z is not None
    lam_z = default_lam_z(z_spacing) if lam_z is None else lam_z
    if not (np.isfinite(lam_z) and lam_z >= 0):
        raise InputError(f"lam_z {lam_z} is invalid; it must be a finite number >= 0 (0: slice by slice).")
    if int(cg_iters) != cg_iters or cg_iters < 1:
        raise InputError(f"cg_iters {cg_iters} is invalid; it must be a positive integer.")
    if slice_batch is not None and (int(slice_batch) != slice_batch or slice_batch < 1):
        raise InputError(f"slice_batch {slice_batch} is invalid; it must be a positive integer.")
    if config.warm_start != "none":
        raise InputError(f"warm start {config.warm_start!r} is not available for volumes; use none.")
    check_volume_solver(config.solver, config.recipe.params, lam_z, slices[0].noise_sigma)
    from ..operators import build_operator

    phys = _volume_range(slices, lambda: build_operator(slices[0].operator))
    setup = prepare(replace(slices[0], value_range=phys), config, denoiser)
    params, op, device, norm = setup.params, setup.op, setup.device, setup.norm
    n_z = len(slices)
    batch = int(slice_batch) if slice_batch is not None else auto_batch(n_z, device)
    with torch.no_grad():
        y = torch.cat([norm.measurement_to_prior(op, torch.as_tensor(np.asarray(m.y)).unsqueeze(0).to(
            device=device, dtype=op.meas_dtype)) for m in slices])
    sigmas, steps, samples = setup.sigmas, len(setup.sigmas) - 1, config.samples
    spread = setup.info.spread_of(params)
    yield Planned(str(device), [1] * samples, steps, steps * n_z, None, spread.is_posterior,
                  (norm.scale, norm.offset), spread=spread.kind,
                  spread_reason=f"{spread.reason} Each sample is a whole volume.")
    yield Log(f"lam_z {lam_z:g} ({'given' if lam_given else f'slices {z_spacing:g} px apart'}); "
              f"{batch} of {n_z} slices per batch.", "info")
    card = getattr(setup.denoiser, "card", None)
    bounds = tuple(float(v) for v in card.value_range) if (
        getattr(params, "clip", False) and card is not None and getattr(setup.denoiser, "bounded", False)) else None
    with torch.no_grad():
        data_var = data_variance(config.solver, params, op.noise_sigma, setup.denoiser)
    shape = (n_z, *op.image_shape)
    memory = RunMemory(device)
    start, finished, nfe, stopped = time.perf_counter(), [], 0, False
    for k in range(samples):
        rng = SampleRNG(config.seed, [k], device)
        vol = Volume(op, y, batch, stop)
        solver = Stepper(config.solver, params, vol, rng, lam_z, cg_iters, floored_noise_sigma(op), data_var)
        x = float(sigmas[0]) * rng.randn(shape)[0]
        for i in range(steps):
            sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
            state = [g.get_state() for g in rng.generators]
            while True:
                try:
                    x0 = _denoise(setup, vol, x, sigma, bounds)
                    with torch.no_grad():
                        x_next, _ = solver.step(x, x0, sigma, sigma_next)
                    break
                except Stopped:
                    stopped = True
                    break
                except (torch.cuda.OutOfMemoryError, MemoryError, RuntimeError) as err:
                    where = out_of_memory(err, device)
                    if where is None:
                        raise
                    if vol.batch == 1:
                        raise RunError(f"Out of {where} memory with one slice per batch; use smaller slices, "
                                       "bf16 precision or the CPU.") from None
                    vol.batch //= 2
                    for g, s in zip(rng.generators, state):
                        g.set_state(s)  # the step again from the same random state
                    if device.type == "cuda":
                        torch.cuda.empty_cache()
                    yield Log(f"Out of {where} memory; going on with {vol.batch} slices per batch.", "warning")
            if stopped:
                break
            x, nfe = x_next, nfe + n_z
            done = k * steps + i + 1
            elapsed = time.perf_counter() - start
            yield Progress(i + 1, steps, k, samples, nfe, 0, 0, elapsed, elapsed / done * (samples * steps - done),
                           memory.snapshot(), work_done=done, work_total=samples * steps)
        if stopped:
            break
        batch = vol.batch
        finished.append(norm.to_physical(x).cpu().numpy())
        stack = np.stack(finished)
        yield Statistics(stack.mean(0), stack.std(0), len(finished))
    if not finished:
        yield Log("Stopped before any sample of the volume finished; nothing to show.", "warning")
        return
    run = {"lam_z": float(lam_z), "lam_z_rule": "given" if lam_given else f"{LAM_Z_ISOTROPIC:g} / z_spacing^2",
           "z_spacing": float(z_spacing), "slice_batch": batch, "nfe": nfe,
           "seconds": round(time.perf_counter() - start, 3)}
    yield VolumeFinished(_result(slices, truth, np.stack(finished), config, setup, not stopped, run))


def _denoise(setup, vol: Volume, x: torch.Tensor, sigma: float, bounds) -> torch.Tensor:
    """The 2D prior on every slice of ``x``, ``vol.batch`` slices at a time."""
    parts = []
    with torch.no_grad(), torch.autocast(setup.device.type, setup.autocast, enabled=setup.autocast is not None):
        for c in chunks(vol.n_z, vol.batch):
            vol.check_stop()
            parts.append(setup.denoiser(x[c], sigma).float())
    x0 = torch.cat(parts)
    return x0.clamp(*bounds) if bounds is not None else x0


def _result(slices, truth, stack: np.ndarray, config, setup, complete: bool, run: dict) -> VolumeResult:
    mean, std = stack.mean(0), stack.std(0)
    metrics: dict[str, float] = {"z_roughness": float(np.diff(mean, axis=0).std())}
    slice_psnr = None
    if truth is None and all(m.ground_truth is not None for m in slices):
        truth = np.stack([np.asarray(m.ground_truth, np.float32) for m in slices])
    if truth is not None:
        truth = np.asarray(truth, np.float32).reshape(mean.shape)
        lo, hi = float(truth.min()), float(truth.max())
        span = hi - lo if hi > lo else None
        slice_psnr = [float(psnr(mean[z], truth[z], span)) for z in range(len(slices))]
        metrics.update(psnr=float(psnr(mean, truth, span)), z_inconsistency=z_inconsistency(mean, truth))
    provenance = {"solver": config.solver, "params": dataclasses.asdict(setup.params),
                  "steps": len(setup.sigmas) - 1, "samples": int(stack.shape[0]), "seed": config.seed,
                  "prior": setup.prior_name, "slices": len(slices), **run, "device": str(setup.device)}
    return VolumeResult(mean, std, int(stack.shape[0]), metrics, slice_psnr, provenance, slices[0].units, complete)
