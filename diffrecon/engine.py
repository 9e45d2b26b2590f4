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
import functools
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterator, Mapping

import numpy as np
import torch

from .calibration import spread_fields, stored_calibration
from .solvers.labels import UNKNOWN, Spread
from .errors import InputError, RunError
from .guard import ON_DIVERGENCE, Diverged, DivergenceGuard, retry_config
from .limits import check_bytes, check_seed, nbytes
from .measurement import Measurement, Result
from .metrics import coverage, psnr, ssim, std_error_correlation
from .operators.base import residual_norm
from .runtime import (AsyncPreview, Counter, CountingDenoiser, CountingOperator, RunMemory, Welford,
                      device_name, out_of_memory, resolve_device)
from .priors.acceleration import (COMPILE_SPEEDUP, auto_mode, compile_cost, compiled_before, resolve_mode,
                                  shape_signature)
from .schedule import make_sigmas
from .solvers.diagnostics import chain_metrics
from .solvers._common import SampleRNG


@dataclass(frozen=True)
class RunConfig:
    """Everything that decides a reconstruction besides the measurement. Qt-free."""

    solver: str = "diffpir"
    params: Mapping[str, Any] = field(default_factory=dict)  # overrides of the solver's defaults
    steps: int = 50
    samples: int = 4
    seed: int = 0
    prior: str = "default"  # "default" (bundled), "gaussian", or a prior folder
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    precision: str = "bf16"  # bf16 | fp32: the network's autocast dtype on GPU
    compile: str = "auto"  # auto | none | graphs | compile: how the network runs on CUDA (auto: see auto_mode)
    channels_last: bool = False  # network weights and inputs channels-last on CUDA
    checkpointing: bool = False  # gradient checkpointing for solvers that backpropagate (DPS memory)
    schedule: str = "karras"  # karras | vp_uniform | vp_quadratic | vp_sde (diffrecon.schedule)
    batch_size: int | None = None  # None: as many samples per batch as memory allows
    keep_samples: int = 16  # samples stored in the result
    preview_interval: float = 0.25  # seconds between previews
    on_divergence: str = "sample"  # sample | all | continue: what a diverged sample stops (diffrecon.guard)
    retry_on_divergence: bool = False  # once, with a smaller guidance weight (guard.retry_config)
    use_calibration: bool = True  # scale the std by a stored calibration of this setting (diffrecon calibrate)
    warm_start: str = "none"  # none | tv: start from the TV reconstruction noised to sigma_start (warm_start.py)
    sigma_start: float | None = None  # warm start level in the prior's units; None: from the error estimate
    prior_fit: bool = True  # measure the prior-fit indicator before and after the run (prior_fit.py)
    weight_choice: Mapping[str, Any] | None = None  # how the weight was chosen (weights.py), for the provenance


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
    network_mode: str | None = None  # how the network will run (auto resolved); None without a network
    spread: str | None = None  # posterior | seed | prior | point (solvers.labels); None: from std_is_posterior
    spread_reason: str = ""  # one sentence: why the spread is what it is
    calibration: str = "uncalibrated"  # "calibrated (coverage ...)" when a stored calibration applies

    def __post_init__(self):
        if self.spread is None:
            self.spread = "posterior" if self.std_is_posterior else "seed"


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


@dataclass
class Preparing:
    """Work before the first step that takes a while (fitting a prior at a new size), done of total."""

    what: str
    done: int
    total: int


Event = Planned | Progress | Preview | Statistics | Log | Diverged | Finished | Preparing


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
    compile_mode: str = "none"  # how the network runs (auto resolved: graphs or compile on CUDA); none without a prior
    channels_last: bool = False  # in effect (CUDA only)
    notes: list[str] = field(default_factory=list)  # shown at the start of a run (why auto chose its mode)
    warm: Any = None  # a warm_start.WarmStart, or None


def check_settings(measurement: Measurement, config: RunConfig) -> None:
    """The settings' cheap checks (before a prior is fitted or anything is built): InputError if wrong."""
    from .solvers import get_solver, parse_params

    if config.steps < 1:
        raise InputError(f"steps must be at least 1 (got {config.steps}).")
    if config.samples < 1:
        raise InputError(f"samples must be at least 1 (got {config.samples}).")
    check_seed(config.seed)
    check_bytes(8 * (config.steps + 1), f"steps={config.steps} (its table of noise levels)", "schedule")
    if config.batch_size is not None and config.batch_size < 1:
        raise InputError(f"batch size must be at least 1 (got {config.batch_size}).")
    if config.on_divergence not in ON_DIVERGENCE:
        raise InputError(f"on_divergence {config.on_divergence!r} is not known; use {', '.join(ON_DIVERGENCE)}.")
    if config.warm_start not in ("none", "tv"):
        raise InputError(f"warm start {config.warm_start!r} is not known; use none or tv.")
    if config.precision not in ("bf16", "fp32"):
        raise InputError(f"precision {config.precision!r} is not known; use bf16 or fp32.")
    parse_params(get_solver(config.solver).Params, dict(config.params), config.solver)
    resolve_mode(config.compile, resolve_device(config.device))  # an unknown device or compile mode
    shape = tuple(int(v) for v in measurement.operator.image_shape)
    check_bytes(config.samples * nbytes(shape, 4), f"samples={config.samples} of {'x'.join(map(str, shape))} images",
                "samples")


def prepare(measurement: Measurement, config: RunConfig, denoiser=None, *, probe: bool = False) -> _Setup:
    """Check every setting and build what a run needs; raises InputError before any work.
    ``probe``: for a few timed steps (:func:`plan`), where ``compile auto`` never compiles."""
    from .operators import build_operator
    from .solvers import get_solver, parse_params

    check_settings(measurement, config)
    info = get_solver(config.solver)
    params = parse_params(info.Params, dict(config.params), info.name)
    device = resolve_device(config.device)
    compile_mode = resolve_mode(config.compile, device)
    channels_last = bool(config.channels_last) and device.type == "cuda"

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
    caveat = info.caveat(op, config.steps)
    warnings = [caveat] if caveat else []
    y = torch.as_tensor(y_np).to(device=device, dtype=op.meas_dtype).unsqueeze(0)

    prior_name, prior_hash = "none", ""
    if info.uses_prior:
        if denoiser is None:
            from .priors import PriorCard, default_prior_folder, load_prior, prior_weight_hash

            prior_name = config.prior
            bundled = default_prior_folder() if prior_name == "default" else None
            if bundled is not None:  # read the card first: no network is built only to be dropped
                card = PriorCard.load(bundled / "card.json")
                if (card.channels, *card.resolution) != tuple(op.image_shape):
                    warnings.append(f"The bundled prior takes {card.channels}x{'x'.join(map(str, card.resolution))} "
                                    f"images, not {'x'.join(map(str, op.image_shape))}; using the Gaussian prior "
                                    "fitted at this size.")
                    prior_name = "gaussian"
            denoiser = load_prior(prior_name, tuple(op.image_shape), device=device)
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
    warm = None
    if config.warm_start != "none" and info.uses_prior:  # the baselines have no diffusion to warm-start
        from . import warm_start
        warm = warm_start.prepare(config.warm_start, op, y, denoiser, functools.partial(
            make_sigmas, denoiser=denoiser, kind=config.schedule), config.steps, config.sigma_start)
        sigmas = warm.sigmas

    batch = config.batch_size or _auto_batch(config.samples, device)
    autocast = torch.bfloat16 if (device.type == "cuda" and config.precision == "bf16") else None
    batches = _plan_batches(config.samples, min(batch, config.samples))
    notes = []
    if info.uses_prior and hasattr(denoiser, "accelerate"):  # network priors: graphs / compile, memory format, checkpointing
        fallback = None
        if config.compile == "auto" and device.type == "cuda" and not probe:
            compile_mode, why, _ = _auto_compile(denoiser, "grad" in info.needs, batches,
                                              (len(sigmas) - 1) * info.evaluations_per_step(params), autocast, device)
            notes.append(f"Network: {why}.")
            fallback = "graphs"
        denoiser.accelerate(compile_mode, channels_last, bool(config.checkpointing), fallback=fallback)
    return _Setup(device, op, y, info, params, denoiser, sigmas, norm, batches, autocast, prior_name, prior_hash,
                  warnings, compile_mode if info.uses_prior else "none", channels_last, notes, warm)


def _network_call(setup: _Setup):
    """The prior's :class:`~diffrecon.priors.acceleration.NetworkCall`, or None (no network)."""
    return getattr(setup.denoiser, "network_call", None) if setup.info.uses_prior else None


def _network_mode(setup: _Setup) -> str:
    """The mode the network ran in: auto's choice, or graphs where compiling failed."""
    network = _network_call(setup)
    return network.mode if network is not None else setup.compile_mode


def _auto_compile(denoiser, grad: bool, batches: list[int], evaluations: int, autocast, device,
                  ) -> tuple[str, str, float]:
    """``compile auto`` on CUDA: :func:`~diffrecon.priors.acceleration.auto_mode` for this run,
    and what compiling would cost, in single-sample evaluations."""
    net = getattr(denoiser, "unet", None)
    if not isinstance(net, torch.nn.Module):
        return "graphs", "CUDA graphs", 0.0
    parameters = sum(p.numel() for p in net.parameters())
    shape = tuple(denoiser.image_shape)

    @functools.cache  # asked by auto_mode and compile_cost: read the record once per batch size
    def cached(b: int) -> bool:
        return compiled_before(shape_signature(net, (b, *shape), grad, autocast, device))

    return (*auto_mode(parameters, batches, evaluations, cached), compile_cost(batches, cached))


def _batch_start(setup: _Setup, seed: int, indices) -> tuple[SampleRNG, torch.Tensor, torch.Tensor]:
    """Random streams, initial state (``sigmas[0]`` times each sample's own noise; zeros for the
    baselines) and the shared measurement for the samples ``indices``."""
    rng = SampleRNG(seed, indices, setup.device)
    b = len(rng)
    if setup.info.uses_prior:
        x_init = float(setup.sigmas[0]) * rng.randn(setup.op.image_shape)
        if setup.warm is not None:
            x_init = x_init + setup.warm.x0
    else:
        x_init = torch.zeros(b, *setup.op.image_shape, device=setup.device)
    return rng, x_init, setup.y.expand(b, *setup.y.shape[1:])


def _auto_batch(samples: int, device: torch.device) -> int:
    # On the GPU all samples go in one batch and an out-of-memory error halves it; on the CPU
    # batches of 8 keep previews and Stop responsive without costing throughput.
    return samples if device.type == "cuda" else min(samples, 8)


def plan(measurement: Measurement, config: RunConfig, denoiser=None, probe_steps: int = 3, *,
         stop: threading.Event | None = None, fit_prior: bool = True) -> Planned:
    """Predict a run's time and peak memory by running the solver's first steps on the first
    batch: a solver's memory per step is steady, so the probe's peak is the run's peak, and the
    median step time times the number of steps and batches is its time.

    ``stop`` ends the probe at its next solver step (a run is starting and needs the device): the
    prediction then uses the steps timed so far, or has ``None`` time and memory if none were.
    ``fit_prior`` False (the window's background prediction): a prior that must first be fitted at
    this size (minutes, without progress) is not; that is said in one sentence, and the run fits it
    with progress."""
    from .priors.fitted import fit_needed
    from .solvers import get_solver

    name = fit_needed(config.prior, measurement.operator.image_shape) if denoiser is None and not fit_prior else None
    if name is not None and get_solver(config.solver).uses_prior:
        raise InputError(f"The {name} prior is fitted at this image size by the first run (with progress, then "
                         "kept on disk); predictions follow after that.")
    setup = prepare(measurement, config, denoiser, probe=True)
    dev, info = setup.device, setup.info
    rng, x_init, y = _batch_start(setup, config.seed, range(setup.batches[0]))
    den = CountingDenoiser(setup.denoiser, Counter(), setup.autocast, dev) if info.uses_prior else None
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
    times, n_solver_steps = [], 1
    t = time.perf_counter()
    with torch.no_grad():
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
        seconds = per_step * n_solver_steps * sum(bb / setup.batches[0] for bb in setup.batches)
        peak = torch.cuda.max_memory_allocated(dev) if dev.type == "cuda" else None
    mode = setup.compile_mode if info.uses_prior and hasattr(setup.denoiser, "accelerate") else None
    if mode is not None and config.compile == "auto" and dev.type == "cuda":
        # the probe ran graphs; the run may compile (auto_mode): its speed-up, plus the compile
        mode, _, cost = _auto_compile(setup.denoiser, "grad" in info.needs, setup.batches,
                                      steps * info.evaluations_per_step(setup.params), setup.autocast, dev)
        if mode == "compile" and seconds is not None:
            per_evaluation = per_step / (info.evaluations_per_step(setup.params) * setup.batches[0])  # one sample's
            seconds = seconds / COMPILE_SPEEDUP + per_evaluation * cost
    return Planned(
        device=device_name(dev), batches=list(setup.batches), steps=steps,
        nfe_per_sample=steps * info.evaluations_per_step(setup.params) if info.uses_prior else 0,
        predicted_peak_bytes=peak, normalization=(setup.norm.scale, setup.norm.offset), predicted_seconds=seconds,
        network_mode=mode, **spread_fields(setup, stored_calibration(measurement, config, setup)),
    )


def run(measurement: Measurement, config: RunConfig, *, stop: threading.Event | None = None,
        denoiser=None, finish: threading.Event | None = None, _retry: dict | None = None) -> Iterator[Event]:
    """Reconstruct ``measurement`` as ``config`` says, yielding events, ending with Finished.

    ``denoiser`` overrides ``config.prior`` with an already built prior (tests, comparisons).
    ``finish`` set together with ``stop``: the samples of the batch in progress are not dropped but
    finished by a final denoising step (their last clean estimate), recorded in the provenance as
    ``final_denoising_step``; their spread is then no posterior std.
    Raises :class:`~diffrecon.errors.InputError` before any work for impossible settings. A
    sample that diverges is reported (:class:`~diffrecon.guard.Diverged`) and handled as
    ``config.on_divergence`` says; the result's provenance then holds a ``divergence`` record.
    """
    from .solvers import get_solver

    check_settings(measurement, config)
    if denoiser is None and get_solver(config.solver).uses_prior:
        from .priors.fitted import fit_events

        for event in fit_events(measurement.operator.image_shape, config.prior, Preparing):
            yield event
            if stop is not None and stop.is_set():
                yield Log("Stopped while fitting the prior; nothing to show.", "warning")
                return
    setup = prepare(measurement, config, denoiser)
    dev, info, norm = setup.device, setup.info, setup.norm
    steps = len(setup.sigmas) - 1
    spread = info.spread_of(setup.params)
    calibration = stored_calibration(measurement, config, setup)
    std_scale = calibration.scale if calibration is not None else 1.0
    yield Planned(
        device=device_name(dev), batches=list(setup.batches), steps=steps,
        nfe_per_sample=steps * info.evaluations_per_step(setup.params) if info.uses_prior else 0,
        predicted_peak_bytes=None, normalization=(norm.scale, norm.offset), **spread_fields(setup, calibration),
    )
    for message in setup.warnings:
        yield Log(message, "warning")
    for message in setup.notes:
        yield Log(message, "info")
    if not spread.is_posterior:
        yield Log(spread.reason, "warning")
    if calibration is not None:
        yield Log(f"The std is scaled by {calibration.scale:.3g}, the stored {calibration.status()} "
                  f"for {calibration.setting}.", "info")

    fit_before = None
    if config.prior_fit and info.uses_prior:
        from . import prior_fit
        with torch.no_grad():
            fit_before = prior_fit.before_run(setup)
        if fit_before is not None:
            yield Log(*prior_fit.message(fit_before))
    counter = Counter()
    den = CountingDenoiser(setup.denoiser, counter, setup.autocast, dev) if info.uses_prior else None
    op = CountingOperator(setup.op, counter)
    stats = Welford()
    kept: list[np.ndarray] = []
    preview = AsyncPreview(dev)
    guard = DivergenceGuard(setup.op, setup.y, setup.sigmas, setup.denoiser.card.value_range if info.uses_prior
                            else (0.0, 1.0), norm.scale, info.name, setup.params, config.on_divergence,
                            measurement.units)
    network = _network_call(setup)
    setup_seconds = network.setup_seconds if network is not None else 0.0
    fell_back = False
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    run_memory = RunMemory(dev)
    t0 = time.perf_counter()
    start_iso = datetime.now(timezone.utc).isoformat(timespec="seconds")
    last_preview = last_progress = -1e9
    total_work = steps * config.samples
    queue = list(setup.batches)
    ran: list[int] = []  # the batches that finished, for provenance (after any halving or a stop)
    traces: list = []  # Markov-chain solvers: their chains' summaries
    first = 0
    stopped = False
    final_step = None  # (step, steps) where a stopped batch was finished by a final denoising step
    while queue and not stopped:
        b = queue.pop(0)
        indices = list(range(first, first + b))
        rng, x_init, y = _batch_start(setup, config.seed, indices)
        x, finished = None, False
        guard.start_batch(indices)
        try:
            with torch.no_grad():
                for step in info.solve(den, op, y, setup.sigmas, x_init, params=setup.params, generator=rng):
                    x, x0_last = step.x, step.x0_hat  # the last step's x is the solver's output
                    finished = step.i + 1 == step.n
                    if step.info and "trace" in step.info:  # Markov-chain solvers: their chains' summaries
                        traces.append(step.info["trace"])
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
                                       run_memory.snapshot())
                    news = guard.observe(step)  # known on the host at most two steps late, no sync
                    if news is not None:
                        yield news
                    if guard.batch_lost():
                        break
                    if stop is not None and stop.is_set():
                        stopped = True
                        if finish is not None and finish.is_set() and step.i + 1 < step.n:
                            x, final_step = x0_last, (step.i + 1, step.n)
                        break
        except (torch.cuda.OutOfMemoryError, MemoryError, RuntimeError) as err:
            where = out_of_memory(err, dev)
            if where is None:
                raise
            x = None
            if b == 1:
                raise RunError(f"Out of {where} memory with a single sample of {info.name}; use a smaller image"
                               + (", bf16 precision or the CPU." if where == "GPU" else " or free memory.")) from None
            if network is not None:
                network.release()  # graphs recorded for the batch that did not fit
            if dev.type == "cuda":
                torch.cuda.empty_cache()
            half = max(1, b // 2)
            queue = _plan_batches(b + sum(queue), half)  # every later batch at the size that fits
            yield Log(f"Out of {where} memory with {b} samples per batch; going on with {half}.", "warning")
            continue
        landed = preview.ready(wait=True)  # the batch's last estimate, so the view ends current
        if landed is not None:
            yield Preview(norm.to_physical(landed[0][0]), landed[1], landed[2])
        # the samples to keep: a finished batch, or one finished by a final denoising step
        x, news = guard.end_batch(x if (finished and not stopped) or final_step is not None else None)
        if news is not None:
            yield news
        if (stopped and final_step is None) or guard.run_lost():
            break
        if network is not None and network.fallback_reason and not fell_back:
            fell_back = True
            yield Log(f"{network.fallback_reason}; going on with CUDA graphs.", "warning")
        if network is not None and network.setup_seconds > setup_seconds:
            what = "compiled the network" if network.mode == "compile" else "recorded CUDA graphs"
            yield Log(f"{what} for {b} samples per batch in {network.setup_seconds - setup_seconds:.1f} s "
                      "(once per batch size).", "info")
            setup_seconds = network.setup_seconds
        first += b
        ran.append(b)
        if x is None:
            continue
        stats.add(x.float())
        counter.nfe_finished = counter.nfe
        if len(kept) < config.keep_samples:
            kept.extend(norm.to_physical(x[: config.keep_samples - len(kept)].float().cpu().numpy()))
        yield Statistics(norm.to_physical(stats.mean.float().cpu().numpy()),
                         std_scale * norm.scale * stats.std().float().cpu().numpy(), stats.n)
    lost = stats.n == 0 and guard.found  # show the diverged samples' last estimates that passed
    if lost:
        counter.nfe_finished = counter.nfe
        stats.add(guard.last_estimates().float())
        kept = list(norm.to_physical(guard.last_estimates()[: config.keep_samples].float().cpu().numpy()))
    if stats.n == 0:
        yield Log("Stopped before any sample finished; nothing to show.", "warning")
        return
    elapsed = time.perf_counter() - t0
    if final_step is not None:  # the batch in progress was finished early: not posterior samples
        spread = Spread(UNKNOWN, f"the samples in progress were finished by a final denoising step at step "
                                 f"{final_step[0]} of {final_step[1]}; their spread is not a posterior std")
    result = _result(measurement, config, dataclasses.replace(setup, batches=ran), stats, kept, counter, elapsed,
                     start_iso, spread, calibration, run_memory.peak(),
                     complete=not stopped and not lost and stats.n == config.samples)
    result.metrics.update(chain_metrics(traces))
    if fit_before is not None:
        with torch.no_grad():
            result.metrics.update(prior_fit.after_run(setup, stats.mean, fit_before, result.metrics.get("residual_ratio")))
    if final_step is not None:
        result.provenance["final_denoising_step"] = f"{final_step[0]}/{final_step[1]}"
        yield Log(f"Stopped at step {final_step[0]} of {final_step[1]}; the samples in progress were finished "
                  "by a final denoising step (their clean estimate), not by the remaining steps.", "warning")
    result.provenance.update({k: v for k, v in (("divergence", guard.record(bool(lost))), ("retry", _retry)) if v})
    again = retry_config(config, setup.params, guard.record()) if config.retry_on_divergence and not stopped else None
    if again is not None:  # once: the retry's config has retry_on_divergence off
        yield Log(again[1]["message"], "warning")
        yield from run(measurement, again[0], stop=stop, denoiser=denoiser, finish=finish, _retry=again[1])
        return
    yield Finished(result)


def _result(measurement, config, setup, stats, kept, counter, elapsed, start_iso, spread, calibration,
            peak_bytes, complete) -> Result:
    from . import __version__
    from .calibration import provenance_record

    norm, op = setup.norm, setup.op
    mean = norm.to_physical(stats.mean.float().cpu().numpy())
    scale = calibration.scale if calibration is not None else 1.0
    std = scale * norm.scale * stats.std().float().cpu().numpy()
    metrics = compute_metrics(op, measurement, mean, std, stats.n, norm)
    metrics.update({
        "nfe": float(counter.nfe), "nfe_per_sample": counter.nfe_finished / max(stats.n, 1),
        "grad_evals": float(counter.grad), "operator_calls": float(counter.op_calls),
        "seconds": float(elapsed), "seconds_per_sample": float(elapsed) / max(stats.n, 1),
        "peak_memory_bytes": float(peak_bytes),  # this run's (RunMemory), not the process's
    })
    card = getattr(setup.denoiser, "card", None)
    provenance = {
        "solver": setup.info.name, "params": dataclasses.asdict(setup.params), "steps": config.steps,
        "samples": config.samples, "samples_done": stats.n, "seed": config.seed, "prior": setup.prior_name,
        "prior_card": card.to_json() if card is not None else "", "prior_hash": setup.prior_hash,
        "schedule": config.schedule, "precision": config.precision if setup.device.type == "cuda" else "fp32",
        "compile": _network_mode(setup), "channels_last": setup.channels_last,
        "checkpointing": bool(config.checkpointing),
        "device": device_name(setup.device), "batches": list(setup.batches),
        "normalization": [norm.scale, norm.offset], "software_version": __version__,
        "torch_version": str(torch.__version__), "elapsed_seconds": float(elapsed), "started": start_iso,
        "spread": spread.kind, "calibration": provenance_record(calibration),
        **(setup.warm.provenance(norm.scale) if setup.warm is not None else {"warm_start": "none"}),
        **({"weight_choice": dict(config.weight_choice)} if config.weight_choice else {}),
    }
    samples = np.stack(kept) if kept else None
    return Result(mean=mean, std=std, samples=samples, n_samples=stats.n, metrics=metrics,
                  provenance=provenance, std_is_posterior=spread.is_posterior, spread=spread.kind,
                  units=measurement.units,
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
            out["coverage90"] = coverage(mean, std, gt, n, 0.9)
            out["std_error_corr"] = std_error_correlation(std, mean, gt)
    return out
