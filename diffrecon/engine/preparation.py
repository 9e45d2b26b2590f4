"""Before the first step: check the settings, then build what a run needs (operator, data in the
prior's units, prior, schedule, warm start, batches, how the network runs) as one :class:`Setup`.
Every refusal happens here, before any work."""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from ..limits import check_bytes, nbytes
from ..measurement import Measurement
from ..priors.acceleration import auto_mode, compile_cost, compiled_before, resolve_mode, shape_signature
from ..runtime import resolve_device
from ..schedule import make_sigmas
from ..solvers._common import SampleRNG
from .normalization import Normalization, estimate_range
from .planning import auto_batch, evaluations_per_sample, plan_batches
from .recipe import Recipe, RunConfig, RuntimeOptions


@dataclass
class Setup:
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
    budget: dict | None = None  # the budget schedule's record (budget.py), or None
    recipe: Recipe | None = None
    runtime: RuntimeOptions | None = None


_Setup = Setup  # the name older code knows


def check_settings(measurement: Measurement, config: RunConfig) -> tuple[Recipe, RuntimeOptions]:
    """The settings' cheap checks (before a prior is fitted or anything is built): the recipe and
    runtime options of ``config``, or InputError naming the setting."""
    recipe, runtime = config.recipe, config.runtime
    if recipe.schedule == "budget":
        from .budget import check
        check(recipe)
    check_bytes(8 * (recipe.steps + 1), f"steps={recipe.steps} (its table of noise levels)", "schedule")
    resolve_mode(runtime.compile, resolve_device(runtime.device))  # a device this machine lacks
    shape = tuple(int(v) for v in measurement.operator.image_shape)
    check_bytes(recipe.samples * nbytes(shape, 4), f"samples={recipe.samples} of {'x'.join(map(str, shape))} "
                "images", "samples")
    return recipe, runtime


def prepare(measurement: Measurement, config: RunConfig, denoiser=None, *, probe: bool = False,
            search: bool = True, progress=None) -> Setup:
    """Check every setting and build what a run needs; raises InputError before any work.
    ``probe``: for a few timed steps (:func:`~diffrecon.engine.plan`), where ``compile auto`` never compiles.
    ``search``: a budget schedule not yet cached is searched (``progress(done, total)``), else refused."""
    recipe, runtime = check_settings(measurement, config)
    info, params = recipe.info, recipe.params
    device = resolve_device(runtime.device)
    op, y = _operator_and_data(measurement, device)
    reason = info.unmet_need(op)
    if reason:
        raise InputError(f"{reason}; choose a solver that does not need it.")
    caveat = info.caveat(op, recipe.steps)
    warnings = [caveat] if caveat else []
    prior_name, prior_hash, prior_range = "none", "", (0.0, 1.0)
    sigmas = torch.linspace(1.0, 0.0, recipe.steps + 1, dtype=torch.float64)  # the baselines' step budget
    if info.uses_prior:
        denoiser, prior_name, prior_hash = _prior(recipe.prior, op, device, denoiser, warnings, recipe.seed)
        prior_range = tuple(denoiser.card.value_range)
        if recipe.schedule != "budget":  # searched below, in the prior's units
            sigmas = make_sigmas(recipe.steps, denoiser, recipe.schedule)

    phys = tuple(measurement.value_range) if measurement.value_range else estimate_range(op, y)
    if not (np.isfinite(phys).all() and phys[1] > phys[0]):
        raise InputError(f"The value range {phys} is not an increasing pair of finite numbers.")
    norm = Normalization.between(phys, prior_range)
    y = norm.measurement_to_prior(op, y)
    op.noise_sigma = float(measurement.noise_sigma) / norm.scale
    record = None
    if recipe.schedule == "budget" and info.uses_prior:
        from . import budget
        sigmas, record = budget.levels(recipe, info, params, op, denoiser, prior_name, prior_hash, search=search,
                                       progress=progress)
    warm = None
    if recipe.warm_start != "none" and info.uses_prior:  # the baselines have no diffusion to warm-start
        from .. import warm_start
        warm = warm_start.prepare(recipe.warm_start, op, y, denoiser, functools.partial(
            make_sigmas, denoiser=denoiser, kind=recipe.schedule), recipe.steps, recipe.sigma_start)
        sigmas = warm.sigmas

    batches = plan_batches(recipe.samples, min(runtime.batch_size or auto_batch(recipe.samples, device),
                                               recipe.samples))
    autocast = torch.bfloat16 if (device.type == "cuda" and runtime.precision == "bf16") else None
    setup = Setup(device, op, y, info, params, denoiser, sigmas, norm, batches, autocast, prior_name, prior_hash,
                  warnings, warm=warm, budget=record, recipe=recipe, runtime=runtime)
    if info.uses_prior:
        _accelerate(setup, probe)
    return setup


def _operator_and_data(measurement: Measurement, device: torch.device):
    """The forward model on ``device`` and ``y`` with a batch axis, after checking y fits it."""
    from ..operators import build_operator

    op = build_operator(measurement.operator).to(device)
    y_np = np.asarray(measurement.y)
    if tuple(y_np.shape) != tuple(op.meas_shape):
        raise InputError(
            f"The measurement y has shape {tuple(y_np.shape)} but the {op.kind} forward model expects {tuple(op.meas_shape)}."
        )
    if not np.all(np.isfinite(y_np)):
        raise InputError("The measurement y contains NaN or infinite values; every entry must be finite.")
    return op, torch.as_tensor(y_np).to(device=device, dtype=op.meas_dtype).unsqueeze(0)


def _prior(name: str, op, device: torch.device, denoiser, warnings: list[str], seed: int = 0):
    """``(denoiser, name, weight hash)``: the prior ``name`` at the operator's image size on
    ``device`` (or ``denoiser`` as given), after checking it fits the image. A network trained at
    another size runs on the whole image (fully convolutional) or on overlapping patches whose grid
    offset follows ``seed`` and the noise level (:mod:`diffrecon.priors.patches`); the default
    prior falls back to the Gaussian only where its network cannot denoise the size."""
    prior_hash = ""
    if denoiser is None:
        from ..priors import load_prior, prior_for_size, prior_weight_hash

        name, why = prior_for_size(name, tuple(op.image_shape))  # reads the card only
        warnings += [why] if why else []
        denoiser = load_prior(name, tuple(op.image_shape), device=device, shift_seed=seed)
        size = getattr(denoiser, "size_info", None) or {"mode": "native"}
        if size.get("trained_resolution") and size["mode"] != "native":
            how = "on overlapping patches" if size["mode"] == "patches" else "padded"
            warnings.append(f"The prior {name!r} was trained at {'x'.join(map(str, size['trained_resolution']))}; "
                            f"it runs {how} at {'x'.join(map(str, op.image_shape[1:]))}.")
        prior_hash = prior_weight_hash(denoiser)
    else:
        name = getattr(denoiser.card, "name", "custom")
    denoiser = denoiser.to(device)
    if tuple(denoiser.image_shape) != tuple(op.image_shape):
        c, h, w = denoiser.image_shape
        raise InputError(
            f"The prior {name!r} takes {c}x{h}x{w} images but this measurement's image is "
            f"{'x'.join(map(str, op.image_shape))}; crop or resample the data, or use the gaussian prior, which fits any size."
        )
    return denoiser, name, prior_hash


def _accelerate(setup: Setup, probe: bool) -> None:
    """How a network prior runs: graphs or compile (auto decided here), memory format, checkpointing."""
    runtime, device = setup.runtime, setup.device
    setup.compile_mode = resolve_mode(runtime.compile, device)
    setup.channels_last = runtime.channels_last and device.type == "cuda"
    if not hasattr(setup.denoiser, "accelerate"):
        return
    fallback = None
    if runtime.compile == "auto" and device.type == "cuda" and not probe:
        setup.compile_mode, why, _ = _auto_compile(
            setup.denoiser, "grad" in setup.info.needs, setup.batches,
            evaluations_per_sample(setup.info, setup.params, len(setup.sigmas) - 1), setup.autocast, device)
        setup.notes.append(f"Network: {why}.")
        fallback = "graphs"
    setup.denoiser.accelerate(setup.compile_mode, setup.channels_last, runtime.checkpointing, fallback=fallback)


def network_call(setup: Setup):
    """The prior's :class:`~diffrecon.priors.acceleration.NetworkCall`, or None (no network)."""
    return getattr(setup.denoiser, "network_call", None) if setup.info.uses_prior else None


def network_mode(setup: Setup) -> str:
    """The mode the network ran in: auto's choice, or graphs where compiling failed."""
    network = network_call(setup)
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


def batch_start(setup: Setup, seed: int, indices) -> tuple[SampleRNG, torch.Tensor, torch.Tensor]:
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
