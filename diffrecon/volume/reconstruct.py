"""The volume reconstruction: DiffPIR's steps on a stack of slices, coupled along z.

Per step, for one posterior sample (a whole volume ``x`` of shape ``(Z, C, H, W)``):

    x0_z   = D(x_z, sigma)                       every slice, in batches of ``slice_batch``
    x0_hat = argmin_x sum_z ||A x_z - y_z||^2 + rho (||x - x0||^2 + lam_z ||D_z x||^2)
    x      = x0_hat + sigma_next (sqrt(1 - zeta) eps + sqrt(zeta) eps_t)

with DiffPIR's ``rho = lam sigma_y^2 / r^2`` and ``D_z`` the finite difference between
neighbouring slices. The z term is weighted relative to the prior's proximal term, so ``lam_z``
is a number of slices' worth of smoothing that stays the same at every noise level; the data
step is solved by conjugate gradients over the whole volume. ``lam_z = 0`` takes DiffPIR's own
slice-wise data step: slice-by-slice reconstruction. Sample ``k`` draws all its noise from its
own stream seeded by ``(seed, k)``, so a sample is the same whatever else runs.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any, Iterator

import numpy as np
import torch

from ..engine import RunConfig
from ..engine.events import Log, Planned, Progress, Statistics
from ..engine.normalization import estimate_range
from ..engine.preparation import prepare
from ..errors import InputError
from ..linalg import conjugate_gradient
from ..measurement import Measurement
from ..metrics import psnr
from ..solvers._common import SampleRNG, floored_noise_sigma, prior_data_variance


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


def _dtd(v: torch.Tensor) -> torch.Tensor:
    """``D_z^T D_z v`` for the forward difference along axis 0 (Neumann ends)."""
    d = v[1:] - v[:-1]
    out = torch.zeros_like(v)
    out[:-1] -= d
    out[1:] += d
    return out


def _chunks(n: int, size: int):
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def _volume_range(slices, op_builder) -> tuple[float, float]:
    ranges = [m.value_range for m in slices]
    if all(r is not None for r in ranges):
        return min(r[0] for r in ranges), max(r[1] for r in ranges)
    op = op_builder()
    found = [estimate_range(op, torch.as_tensor(np.asarray(m.y)).unsqueeze(0).to(op.meas_dtype)) for m in slices]
    return min(r[0] for r in found), max(r[1] for r in found)


def reconstruct_volume(slices: list[Measurement], config: RunConfig, *, lam_z: float = 1.0,
                       slice_batch: int | None = None, cg_iters: int = 30, stop: threading.Event | None = None,
                       denoiser=None) -> Iterator:
    """Reconstruct the stack ``slices`` (one measurement per slice, one shared operator) with
    ``config`` (solver ``diffpir``; its lam, zeta, clip and r_variance apply), yielding the
    engine's ``Planned``, ``Progress``, ``Statistics`` and ``Log`` events and ending with
    :class:`VolumeFinished`. ``stop`` is checked between slice batches and before each data
    step; the sample in progress is then dropped and the finished ones make the result."""
    slices = list(slices)
    check_slices(slices)
    if config.solver != "diffpir":
        raise InputError(f"Volume reconstruction runs the solver diffpir; {config.solver!r} is not supported yet.")
    if not (np.isfinite(lam_z) and lam_z >= 0):
        raise InputError(f"lam_z {lam_z} is invalid; it must be a finite number >= 0 (0: slice by slice).")
    if int(cg_iters) != cg_iters or cg_iters < 1:
        raise InputError(f"cg_iters {cg_iters} is invalid; it must be a positive integer.")
    from ..operators import build_operator

    phys = _volume_range(slices, lambda: build_operator(slices[0].operator))
    setup = prepare(replace(slices[0], value_range=phys), config, denoiser)
    params, op, device, norm = setup.params, setup.op, setup.device, setup.norm
    if params.perturb:
        raise InputError("Volume reconstruction takes DiffPIR's data step as its mode; set perturb=false.")
    n_z = len(slices)
    batch = n_z if slice_batch is None else int(slice_batch)
    if batch < 1:
        raise InputError(f"slice_batch {slice_batch} is invalid; it must be a positive integer.")
    with torch.no_grad():
        y = torch.cat([norm.measurement_to_prior(op, torch.as_tensor(np.asarray(m.y)).unsqueeze(0).to(
            device=device, dtype=op.meas_dtype)) for m in slices])
    sigmas, steps, samples = setup.sigmas, len(setup.sigmas) - 1, config.samples
    yield Planned(str(device), [1] * samples, steps, steps * n_z, None, True, (norm.scale, norm.offset),
                  spread="posterior", spread_reason="Spread of independent DiffPIR runs of the whole volume.")
    card = getattr(setup.denoiser, "card", None)
    bounds = tuple(float(v) for v in card.value_range) if (
        params.clip and card is not None and getattr(setup.denoiser, "bounded", False)) else None
    data_var = prior_data_variance(setup.denoiser) if params.r_variance == "prior" else None
    sigma_y = floored_noise_sigma(op)
    shape = (n_z, *op.image_shape)
    start, finished, nfe = time.perf_counter(), [], 0

    def data_step(x0, rho):
        if lam_z == 0:
            return torch.cat([op.solve_regularized(y[c], x0[c], rho, iters=cg_iters) for c in _chunks(n_z, batch)])

        def apply(v):
            v = v.reshape(shape)
            normal = torch.cat([op.A_normal(v[c]) for c in _chunks(n_z, batch)])
            return (normal + rho * (v + lam_z * _dtd(v))).reshape(1, -1)

        rhs = torch.cat([op.A_adjoint(y[c]) for c in _chunks(n_z, batch)]) + rho * x0
        return conjugate_gradient(apply, rhs.reshape(1, -1), x0=x0.reshape(1, -1), iters=cg_iters).reshape(shape)

    stopped = False
    for k in range(samples):
        rng = SampleRNG(config.seed, [k], device)
        x = float(sigmas[0]) * rng.randn(shape)[0]
        for i in range(steps):
            sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
            parts = []
            with torch.no_grad(), torch.autocast(device.type, setup.autocast, enabled=setup.autocast is not None):
                for c in _chunks(n_z, batch):
                    if stop is not None and stop.is_set():
                        break
                    parts.append(setup.denoiser(x[c], sigma).float())
                    nfe += c.stop - c.start
            if stop is not None and stop.is_set():
                stopped = True
                break
            x0 = torch.cat(parts)
            if bounds is not None:
                x0 = x0.clamp(*bounds)
            r2 = sigma**2 if data_var is None else sigma**2 * data_var / (data_var + sigma**2)
            with torch.no_grad():
                x0_hat = data_step(x0, params.lam * sigma_y**2 / r2)
                if sigma_next == 0:
                    x = x0_hat
                else:
                    eps = (x - x0_hat) / sigma
                    x = x0_hat + sigma_next * ((1 - params.zeta) ** 0.5 * eps
                                               + params.zeta ** 0.5 * rng.randn(shape)[0])
            done = k * steps + i + 1
            elapsed = time.perf_counter() - start
            yield Progress(i + 1, steps, k, samples, nfe, 0, 0, elapsed,
                           elapsed / done * (samples * steps - done), work_done=done, work_total=samples * steps)
        if stopped:
            break
        finished.append(norm.to_physical(x).cpu().numpy())
        stack = np.stack(finished)
        yield Statistics(stack.mean(0), stack.std(0), len(finished))
    if not finished:
        yield Log("Stopped before any sample of the volume finished; nothing to show.", "warning")
        return
    yield VolumeFinished(_result(slices, np.stack(finished), config, lam_z, setup, not stopped, nfe,
                                 time.perf_counter() - start))


def _result(slices, stack: np.ndarray, config, lam_z, setup, complete: bool, nfe: int, seconds: float):
    mean, std = stack.mean(0), stack.std(0)
    metrics: dict[str, float] = {"z_roughness": float(np.diff(mean, axis=0).std())}
    slice_psnr = None
    if all(m.ground_truth is not None for m in slices):
        truth = np.stack([np.asarray(m.ground_truth, np.float32) for m in slices])
        lo, hi = float(truth.min()), float(truth.max())
        span = hi - lo if hi > lo else None
        slice_psnr = [float(psnr(mean[z], truth[z], span)) for z in range(len(slices))]
        metrics.update(psnr=float(psnr(mean, truth, span)), z_inconsistency=z_inconsistency(mean, truth))
    provenance = {"solver": "diffpir", "params": {k: getattr(setup.params, k) for k in
                                                  ("lam", "zeta", "clip", "r_variance")},
                  "steps": len(setup.sigmas) - 1, "samples": int(stack.shape[0]), "seed": config.seed,
                  "prior": setup.prior_name, "lam_z": float(lam_z), "slices": len(slices), "nfe": nfe,
                  "seconds": round(seconds, 3), "device": str(setup.device)}
    return VolumeResult(mean, std, int(stack.shape[0]), metrics, slice_psnr, provenance, slices[0].units, complete)
