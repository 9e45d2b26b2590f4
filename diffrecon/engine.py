"""One reconstruction: ``run(measurement, config) -> Iterator[Event]``.

The engine plans memory, splits the K samples into batches that fit, builds the schedule, maps
physical units to the prior's range (the only place that converts ranges), runs the solver,
keeps running mean and variance on the device (Welford), throttles previews, counts network
evaluations, gradients and operator calls, measures time and peak memory, computes metrics and
ends with a :class:`~diffrecon.measurement.Result`. The GUI worker and the CLI iterate the same
generator; to stop, set the ``stop`` event: the engine finishes at the next solver step and
returns the statistics of the samples already complete.
"""
from __future__ import annotations

import dataclasses
import os
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterator, Mapping

import numpy as np
import torch

from .errors import InputError, RunError
from .measurement import Measurement, Result
from .metrics import coverage, psnr, ssim, std_error_correlation
from .operators.base import residual_norm
from .schedule import make_sigmas
from .solvers._common import SampleRNG


@dataclass(frozen=True)
class RunConfig:
    """Everything that decides a reconstruction besides the measurement. Qt-free."""

    solver: str = "dps"
    params: Mapping[str, Any] = field(default_factory=dict)  # overrides of the solver's defaults
    steps: int = 50
    samples: int = 4
    seed: int = 0
    prior: str = "default"  # "default" (bundled), "gaussian", or a prior folder
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    precision: str = "bf16"  # bf16 | fp32: the network's autocast dtype on GPU
    schedule: str = "karras"  # karras | vp_uniform
    batch_size: int | None = None  # None: as many samples per batch as memory allows
    keep_samples: int = 16  # samples stored in the result
    preview_interval: float = 0.25  # seconds between previews


# ------------------------------------------------------------------------------------ events
@dataclass
class Planned:
    """Sent once before the first step."""

    device: str
    batches: list[int]  # samples per batch
    steps: int
    nfe_per_sample: int  # predicted network evaluations per sample
    predicted_peak_bytes: int | None
    std_is_posterior: bool
    normalization: tuple[float, float]  # (scale, offset): physical = scale * prior + offset
    predicted_seconds: float | None = None  # from a probe (see plan()); None inside run()


@dataclass
class Progress:
    step: int  # steps done in the current batch
    steps: int
    samples_done: int
    samples_total: int
    nfe: int  # network evaluations so far, all samples
    grad_evals: int  # of which with backpropagation
    op_calls: int  # forward-model applications (A, A^H, pinv) so far
    elapsed: float  # seconds
    eta: float | None  # seconds left, None before it can be estimated
    memory: dict[str, int] = field(default_factory=dict)  # allocated/reserved/peak/total or rss bytes


@dataclass
class Preview:
    """The current clean estimate of the first sample of the running batch (physical units)."""

    x0_hat: np.ndarray  # (C, H, W)
    step: int
    sample_index: int


@dataclass
class Statistics:
    """Running posterior statistics after a batch completes (physical units)."""

    mean: np.ndarray
    std: np.ndarray
    samples_done: int


@dataclass
class Log:
    message: str
    level: str = "info"  # info | warning


@dataclass
class Finished:
    result: Result


Event = Planned | Progress | Preview | Statistics | Log | Finished


# ------------------------------------------------------------------------------------ helpers
@dataclass(frozen=True)
class Normalization:
    """``physical = scale * prior + offset``; the one place that converts value ranges."""

    scale: float
    offset: float

    @classmethod
    def between(cls, physical: tuple[float, float], prior: tuple[float, float]) -> "Normalization":
        (lo, hi), (a, b) = physical, prior
        scale = (hi - lo) / (b - a)
        return cls(scale, lo - scale * a)

    def to_physical(self, x):
        return self.scale * x + self.offset

    def measurement_to_prior(self, op, y: torch.Tensor) -> torch.Tensor:
        """``y`` of ``A x_phys`` as ``y`` of ``A x_prior``: (y - A(offset)) / scale."""
        shift = op.A(torch.full((1, *op.image_shape), self.offset, device=y.device, dtype=op.image_dtype))
        return (y - shift) / self.scale


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then the CPU; explicit names are checked."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise InputError(f"device {name!r} is not a device name; use auto, cpu, cuda or cuda:N.") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {name!r} was asked for but this machine has no usable CUDA GPU; use auto or cpu.")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise InputError(f"device {name!r} does not exist; this machine has {torch.cuda.device_count()} CUDA device(s).")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise InputError(f"device {name!r} is not supported; use auto, cpu, cuda or mps.")
    return dev


def memory_snapshot(device: torch.device) -> dict[str, int]:
    """Allocated/reserved/peak/total bytes on a GPU (no synchronisation), else process RSS."""
    if device.type == "cuda":
        return {
            "allocated": torch.cuda.memory_allocated(device),
            "reserved": torch.cuda.memory_reserved(device),
            "peak": torch.cuda.max_memory_allocated(device),
            "total": torch.cuda.get_device_properties(device).total_memory,
        }
    try:
        with open("/proc/self/statm") as fh:
            rss_pages = int(fh.read().split()[1])
        return {"rss": rss_pages * os.sysconf("SC_PAGE_SIZE")}
    except (OSError, ValueError, AttributeError):
        import resource

        return {"rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}


class _Counter:
    def __init__(self) -> None:
        self.nfe = 0  # network evaluations, summed over samples
        self.grad = 0  # of which with a graph for backpropagation
        self.op_calls = 0
        self.nfe_finished = 0  # evaluations spent on samples that completed


class _CountingDenoiser:
    """Counts evaluations and applies the precision policy: network in autocast, output float32."""

    def __init__(self, denoiser, counter: _Counter, autocast: torch.dtype | None, device: torch.device):
        self.denoiser, self.counter, self.autocast, self.device = denoiser, counter, autocast, device

    def __getattr__(self, name):
        return getattr(self.denoiser, name)

    def __call__(self, x: torch.Tensor, sigma) -> torch.Tensor:
        self.counter.nfe += x.shape[0]
        if torch.is_grad_enabled() and x.requires_grad:
            self.counter.grad += x.shape[0]
        if self.autocast is not None:
            with torch.autocast(self.device.type, dtype=self.autocast):
                return self.denoiser(x, sigma).float()
        return self.denoiser(x, sigma)


class _CountingOperator:
    """Forwards to the operator and counts top-level applications by the solver."""

    _counted = ("A", "A_adjoint", "A_pinv", "solve_regularized", "U", "U_adjoint", "direct")

    def __init__(self, op, counter: _Counter):
        self._op, self._counter = op, counter

    def __getattr__(self, name):
        attr = getattr(self._op, name)
        if name in self._counted:
            def counted(*args, **kwargs):
                self._counter.op_calls += 1
                return attr(*args, **kwargs)
            return counted
        return attr


class _Welford:
    """Running per-pixel mean and variance on the device (Chan et al. 1979, batch merge)."""

    def __init__(self) -> None:
        self.n = 0
        self.mean: torch.Tensor | None = None
        self.m2: torch.Tensor | None = None

    def add(self, batch: torch.Tensor) -> None:
        b = batch.double()
        nb = b.shape[0]
        mb = b.mean(dim=0)
        m2b = ((b - mb) ** 2).sum(dim=0)
        if self.mean is None:
            self.n, self.mean, self.m2 = nb, mb, m2b
            return
        delta = mb - self.mean
        n = self.n + nb
        self.mean = self.mean + delta * (nb / n)
        self.m2 = self.m2 + m2b + delta**2 * (self.n * nb / n)
        self.n = n

    def std(self) -> torch.Tensor:
        if self.n < 2:
            return torch.zeros_like(self.mean)
        return (self.m2 / (self.n - 1)).clamp_min(0).sqrt()


class _AsyncPreview:
    """Copies a preview to pinned host memory without blocking; hands it over once landed."""

    def __init__(self, device: torch.device):
        self.device = device
        self.pending: tuple[torch.Tensor, Any, int, int] | None = None

    def start(self, x0: torch.Tensor, step: int, sample: int) -> None:
        if self.device.type == "cuda":
            host = torch.empty(x0.shape, dtype=torch.float32, pin_memory=True)
            host.copy_(x0.float(), non_blocking=True)
            event = torch.cuda.Event()
            event.record()
            self.pending = (host, event, step, sample)
        else:
            self.pending = (x0.float().cpu().clone(), None, step, sample)

    def ready(self, wait: bool = False):
        if self.pending is None:
            return None
        host, event, step, sample = self.pending
        if event is not None and not event.query():
            if not wait:
                return None
            event.synchronize()
        self.pending = None
        return host.numpy(), step, sample


def _plan_batches(samples: int, batch_size: int) -> list[int]:
    full, rest = divmod(samples, batch_size)
    return [batch_size] * full + ([rest] if rest else [])


def _estimate_range(op, y: torch.Tensor) -> tuple[float, float]:
    """Expected image range from the direct reconstruction (robust percentiles)."""
    x = op.direct(y).real.float()
    lo, hi = torch.quantile(x.flatten()[:1_000_000].cpu(), torch.tensor([0.005, 0.995], dtype=torch.float32))
    lo, hi = float(lo), float(hi)
    if not hi > lo:
        hi = lo + 1.0
    return lo, hi


@dataclass
class _Setup:
    device: torch.device
    op: Any
    y: torch.Tensor  # in prior units, batch axis 1
    info: Any
    params: Any
    denoiser: Any
    sigmas: torch.Tensor
    norm: Normalization
    batches: list[int]
    autocast: torch.dtype | None
    prior_name: str
    prior_hash: str
    warnings: list[str]


def prepare(measurement: Measurement, config: RunConfig, denoiser=None) -> _Setup:
    """Check every setting and build what a run needs; raises InputError before any work."""
    from .operators import build_operator
    from .solvers import get_solver, parse_params

    if config.steps < 1:
        raise InputError(f"steps must be at least 1 (got {config.steps}).")
    if config.samples < 1:
        raise InputError(f"samples must be at least 1 (got {config.samples}).")
    if config.batch_size is not None and config.batch_size < 1:
        raise InputError(f"batch size must be at least 1 (got {config.batch_size}).")
    if config.precision not in ("bf16", "fp32"):
        raise InputError(f"precision {config.precision!r} is not known; use bf16 or fp32.")
    info = get_solver(config.solver)
    params = parse_params(info.Params, dict(config.params), info.name)
    device = resolve_device(config.device)

    op = build_operator(measurement.operator).to(device)
    y_np = np.asarray(measurement.y)
    if tuple(y_np.shape) != tuple(op.meas_shape):
        raise InputError(
            f"The measurement y has shape {tuple(y_np.shape)} but the {op.kind} forward model expects {tuple(op.meas_shape)}."
        )
    if not np.all(np.isfinite(y_np)):
        raise InputError("The measurement y contains NaN or infinite values; every entry must be finite.")
    reason = info.unmet_need(op)
    if reason:
        raise InputError(f"{reason}; choose a solver that does not need it.")
    warnings = [info.caveat(op)] if info.caveat(op) else []
    y = torch.as_tensor(y_np).to(device=device, dtype=op.meas_dtype).unsqueeze(0)

    prior_name, prior_hash = "none", ""
    if info.uses_prior:
        if denoiser is None:
            from .priors import load_prior, prior_weight_hash

            denoiser = load_prior(config.prior, tuple(op.image_shape), device=device)
            prior_name = config.prior
            if config.prior == "default" and tuple(denoiser.image_shape) != tuple(op.image_shape):
                c, h, w = denoiser.image_shape
                warnings.append(f"The bundled prior takes {c}x{h}x{w} images, not "
                                f"{'x'.join(map(str, op.image_shape))}; using the Gaussian prior fitted at this size.")
                denoiser, prior_name = load_prior("gaussian", tuple(op.image_shape), device=device), "gaussian"
            prior_hash = prior_weight_hash(denoiser)
        else:
            prior_name = getattr(denoiser.card, "name", "custom")
        denoiser = denoiser.to(device)
        if tuple(denoiser.image_shape) != tuple(op.image_shape):
            c, h, w = denoiser.image_shape
            raise InputError(
                f"The prior {prior_name!r} takes {c}x{h}x{w} images but this measurement's image is "
                f"{'x'.join(map(str, op.image_shape))}; crop or resample the data, or use the gaussian prior, which fits any size."
            )
        prior_range = tuple(denoiser.card.value_range)
        sigmas = make_sigmas(config.steps, denoiser, config.schedule)
    else:
        prior_range = (0.0, 1.0)
        sigmas = torch.linspace(1.0, 0.0, config.steps + 1, dtype=torch.float64)

    phys = tuple(measurement.value_range) if measurement.value_range else _estimate_range(op, y)
    if not (np.isfinite(phys).all() and phys[1] > phys[0]):
        raise InputError(f"The value range {phys} is not an increasing pair of finite numbers.")
    norm = Normalization.between(phys, prior_range)
    y = norm.measurement_to_prior(op, y)
    op.noise_sigma = float(measurement.noise_sigma) / norm.scale

    batch = config.batch_size or _auto_batch(config.samples, device)
    autocast = torch.bfloat16 if (device.type == "cuda" and config.precision == "bf16") else None
    return _Setup(device, op, y, info, params, denoiser, sigmas, norm,
                  _plan_batches(config.samples, min(batch, config.samples)), autocast, prior_name, prior_hash,
                  warnings)


def _auto_batch(samples: int, device: torch.device) -> int:
    # On the GPU all samples go in one batch and an out-of-memory error halves it; on the CPU
    # batches of 8 keep previews and Stop responsive without costing throughput.
    return samples if device.type == "cuda" else min(samples, 8)


def plan(measurement: Measurement, config: RunConfig, denoiser=None, probe_steps: int = 3, *,
         stop: threading.Event | None = None) -> Planned:
    """Predict a run's time and peak memory by running the solver's first steps on the first
    batch: a solver's memory per step is steady, so the probe's peak is the run's peak, and the
    median step time times the number of steps and batches is its time.

    ``stop`` ends the probe at its next solver step (a run is starting and needs the device): the
    prediction then uses the steps timed so far, or has ``None`` time and memory if none were."""
    setup = prepare(measurement, config, denoiser)
    dev, info = setup.device, setup.info
    b = setup.batches[0]
    rng = SampleRNG(config.seed, range(b), dev)
    x_init = float(setup.sigmas[0]) * rng.randn(setup.op.image_shape) if info.uses_prior \
        else torch.zeros(b, *setup.op.image_shape, device=dev)
    den = _CountingDenoiser(setup.denoiser, _Counter(), setup.autocast, dev) if info.uses_prior else None
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
    times, n_solver_steps = [], 1
    t = time.perf_counter()
    with torch.no_grad():
        y = setup.y.expand(b, *setup.y.shape[1:])
        solving = () if stop is not None and stop.is_set() else \
            info.solve(den, setup.op, y, setup.sigmas, x_init, params=setup.params, generator=rng)
        for k, step in enumerate(solving):
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            now = time.perf_counter()
            times.append(now - t)
            t, n_solver_steps = now, step.n
            if k + 1 >= probe_steps or (stop is not None and stop.is_set()):
                break
    steps = len(setup.sigmas) - 1
    seconds = peak = None
    if times:
        per_step = float(np.median(times[1:] if len(times) > 1 else times))  # the first step warms up
        seconds = per_step * n_solver_steps * sum(bb / b for bb in setup.batches)
        peak = torch.cuda.max_memory_allocated(dev) if dev.type == "cuda" else None
    return Planned(
        device=_device_name(dev), batches=list(setup.batches), steps=steps,
        nfe_per_sample=steps * info.nfe_per_step if info.uses_prior else 0,
        predicted_peak_bytes=peak, std_is_posterior=info.is_posterior(setup.params),
        normalization=(setup.norm.scale, setup.norm.offset), predicted_seconds=seconds,
    )


def run(measurement: Measurement, config: RunConfig, *, stop: threading.Event | None = None,
        denoiser=None) -> Iterator[Event]:
    """Reconstruct ``measurement`` as ``config`` says, yielding events, ending with Finished.

    ``denoiser`` overrides ``config.prior`` with an already built prior (tests, comparisons).
    Raises :class:`~diffrecon.errors.InputError` before any work for impossible settings, and
    :class:`~diffrecon.errors.RunError` if the run diverges.
    """
    setup = prepare(measurement, config, denoiser)
    dev, info, norm = setup.device, setup.info, setup.norm
    steps = len(setup.sigmas) - 1
    posterior = info.is_posterior(setup.params)
    yield Planned(
        device=_device_name(dev), batches=list(setup.batches), steps=steps,
        nfe_per_sample=steps * info.nfe_per_step if info.uses_prior else 0,
        predicted_peak_bytes=None, std_is_posterior=posterior,
        normalization=(norm.scale, norm.offset),
    )
    for message in setup.warnings:
        yield Log(message, "warning")
    if not posterior:
        yield Log(f"{info.name} with these settings is deterministic: the spread over samples is a "
                  "seed spread, not a posterior standard deviation.", "warning")

    counter = _Counter()
    den = _CountingDenoiser(setup.denoiser, counter, setup.autocast, dev) if info.uses_prior else None
    op = _CountingOperator(setup.op, counter)
    stats = _Welford()
    kept: list[np.ndarray] = []
    preview = _AsyncPreview(dev)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    t0 = time.perf_counter()
    start_iso = datetime.now(timezone.utc).isoformat(timespec="seconds")
    last_preview = last_progress = -1e9
    total_work = steps * config.samples
    queue = list(setup.batches)
    first = 0
    stopped = False
    while queue and not stopped:
        b = queue.pop(0)
        indices = list(range(first, first + b))
        rng = SampleRNG(config.seed, indices, dev)
        x_init = float(setup.sigmas[0]) * rng.randn(setup.op.image_shape) if info.uses_prior \
            else torch.zeros(b, *setup.op.image_shape, device=dev)
        y = setup.y.expand(b, *setup.y.shape[1:])
        x = None
        try:
            with torch.no_grad():
                for step in info.solve(den, op, y, setup.sigmas, x_init, params=setup.params, generator=rng):
                    x = step.x  # the last step's x is the solver's output
                    now = time.perf_counter()
                    landed = preview.ready()
                    if landed is not None:
                        arr, s_i, k = landed
                        yield Preview(norm.to_physical(arr[0]), s_i, k)
                    if now - last_preview >= config.preview_interval or step.i + 1 == step.n:
                        preview.start(step.x0_hat[0:1], step.i + 1, first)
                        last_preview = now
                    if now - last_progress >= 0.05 or step.i + 1 == step.n:
                        last_progress = now
                        done = first * steps + (step.i + 1) * b
                        elapsed = now - t0
                        yield Progress(step.i + 1, step.n, first, config.samples, counter.nfe, counter.grad,
                                       counter.op_calls, elapsed,
                                       elapsed / done * (total_work - done) if done else None,
                                       memory_snapshot(dev))
                    if stop is not None and stop.is_set():
                        stopped = True
                        break
        except torch.cuda.OutOfMemoryError:
            if b == 1:
                raise RunError(f"Out of GPU memory with a single sample of {info.name}; use a smaller image, "
                               "bf16 precision or the CPU.") from None
            torch.cuda.empty_cache()
            half = max(1, b // 2)
            queue = _plan_batches(b + sum(queue), half)  # every later batch at the size that fits
            yield Log(f"Out of GPU memory with {b} samples per batch; going on with {half}.", "warning")
            continue
        landed = preview.ready(wait=True)  # the batch's last estimate, so the view ends current
        if landed is not None:
            yield Preview(norm.to_physical(landed[0][0]), landed[1], landed[2])
        if stopped:
            break
        if x is None or not bool(torch.isfinite(x).all()):
            raise RunError(f"The {info.name} run diverged (non-finite values) in samples {indices[0]}-{indices[-1]}; "
                           "try more steps, a smaller step size or fp32 precision.")
        stats.add(x.float())
        counter.nfe_finished = counter.nfe
        if len(kept) < config.keep_samples:
            kept.extend(norm.to_physical(x[: config.keep_samples - len(kept)].float().cpu().numpy()))
        first += b
        yield Statistics(norm.to_physical(stats.mean.float().cpu().numpy()),
                         norm.scale * stats.std().float().cpu().numpy(), stats.n)
    if stats.n == 0:
        yield Log("Stopped before any sample finished; nothing to show.", "warning")
        return
    elapsed = time.perf_counter() - t0
    result = _result(measurement, config, setup, stats, kept, counter, elapsed, start_iso, posterior,
                     complete=not stopped)
    yield Finished(result)


def _device_name(dev: torch.device) -> str:
    if dev.type == "cuda":
        return f"cuda:{dev.index or 0} ({torch.cuda.get_device_name(dev)})"
    return dev.type


def _result(measurement, config, setup, stats, kept, counter, elapsed, start_iso, posterior, complete) -> Result:
    from . import __version__

    norm, op = setup.norm, setup.op
    mean = norm.to_physical(stats.mean.float().cpu().numpy())
    std = norm.scale * stats.std().float().cpu().numpy()
    metrics = compute_metrics(op, measurement, mean, std, stats.n, norm)
    peak = memory_snapshot(setup.device)
    metrics.update({
        "nfe": float(counter.nfe), "nfe_per_sample": counter.nfe_finished / max(stats.n, 1),
        "grad_evals": float(counter.grad), "operator_calls": float(counter.op_calls),
        "seconds": float(elapsed), "seconds_per_sample": float(elapsed) / max(stats.n, 1),
        "peak_memory_bytes": float(peak.get("peak", peak.get("rss", 0))),
    })
    card = getattr(setup.denoiser, "card", None)
    provenance = {
        "solver": setup.info.name, "params": dataclasses.asdict(setup.params), "steps": config.steps,
        "samples": config.samples, "samples_done": stats.n, "seed": config.seed, "prior": setup.prior_name,
        "prior_card": card.to_json() if card is not None else "", "prior_hash": setup.prior_hash,
        "schedule": config.schedule, "precision": config.precision if setup.device.type == "cuda" else "fp32",
        "device": _device_name(setup.device), "batches": list(setup.batches),
        "normalization": [norm.scale, norm.offset], "software_version": __version__,
        "torch_version": str(torch.__version__), "elapsed_seconds": float(elapsed), "started": start_iso,
    }
    samples = np.stack(kept) if kept else None
    return Result(mean=mean, std=std, samples=samples, n_samples=stats.n, metrics=metrics,
                  provenance=provenance, std_is_posterior=posterior, units=measurement.units,
                  measurement=measurement, complete=complete)


def compute_metrics(op, measurement: Measurement, mean: np.ndarray, std: np.ndarray, n: int,
                    norm: Normalization) -> dict[str, float]:
    """Residual against the noise level always; PSNR/SSIM/calibration with ground truth."""
    with torch.no_grad():
        x = torch.as_tensor(mean, device=op.device).unsqueeze(0).to(op.image_dtype)
        y = torch.as_tensor(np.asarray(measurement.y), device=op.device).to(op.meas_dtype).unsqueeze(0)
        res = float(residual_norm(op, x, y)[0])  # operator is linear: physical units directly
    dof = op.measurement_dof
    out = {"residual": res}
    sigma = float(measurement.noise_sigma)
    if sigma > 0:
        out["residual_ratio"] = res / (sigma * np.sqrt(dof))  # 1: consistent with the noise level
    gt = measurement.ground_truth
    if gt is not None:
        gt = np.asarray(gt, dtype=np.float64).reshape(mean.shape)
        rng = float(np.ptp(gt)) or 1.0
        out["psnr"] = psnr(mean, gt, rng)
        out["ssim"] = ssim(mean, gt, rng)
        out["nrmse"] = float(np.linalg.norm(mean - gt) / max(np.linalg.norm(gt), 1e-30))
        if n >= 2 and float(std.max()) > 0:
            out["coverage90"] = coverage(mean, std, gt, 0.9)
            out["std_error_corr"] = std_error_correlation(std, mean, gt)
    return out
