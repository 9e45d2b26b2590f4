"""How far one setting's std is off, measured by simulation, then stored (``diffrecon calibrate``).

For the measurement's forward model and noise level, a solver with its parameters, step budget,
schedule and prior (one *setting*, :func:`diffrecon.calibration.run_key`), N truths are drawn,
each is measured with the file's operator and noise, the solver reconstructs it with K samples
exactly as ``reconstruct`` would, and the std is compared with the error:

- **coverage**: the fraction of pixels whose truth lies in the t-interval
  ``mean +- t_{K-1} sqrt(1 + 1/K) std`` (:func:`diffrecon.metrics.coverage`, nominal 0.90);
- **error to std**: ``RMS(mean - truth) / (sqrt(1 + 1/K) RMS(std))``, 1 for an exact sampler.

The correction is one factor on the std: the one that makes the t-interval cover 90 % of the
pixels, pooled over the images; the coverage it reaches is measured leave-one-out (the factor
fitted on the other images), so the number shown is never scored on the images it was fitted on.

Where the prior is exact (the Gaussian or Gaussian-mixture prior, real images of at most
``EXACT_MAX_PIXELS`` pixels) the truths are drawn from the prior itself, so an exact posterior
sampler covers 90 % by construction, and the run is also held against the exact sampler: K draws
from the closed-form posterior (:mod:`diffrecon.validate.exact`) of each simulated measurement
give the coverage an exact sampler scores on the same images, and the ratio of the solver's
variance to the exact posterior variance is recorded. Otherwise the truths are procedural
phantoms from ``phantoms.CALIBRATION_SEEDS`` (disjoint from the training, validation and test
seeds). Either way the calibration holds for images like the truths drawn, which for a network
prior are phantoms like its training data.

With ``truths`` (``diffrecon calibrate --truths PATH``) the truths are the user's own
representative images instead (:func:`diffrecon.io.images.read_image_stack`: an HDF5 stack, a
folder of PNG/TIFF images or one such file), so the factor holds for images like those: each is
centre-cropped to the operator's image aspect and resized (antialiased) to its shape, the stack is
scaled to [0, 1] by its robust range (0.1/99.9 percentiles over all images, as training does) and
mapped into the prior's value range exactly as a phantom is. For an exact prior the solver is still
held against exact posterior draws of the same simulated measurements.
"""
from __future__ import annotations

import dataclasses
import json
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from .calibration import Calibration, load_store, run_key, setup_spread, setup_warm_start, store_path
from .engine import Finished, Log, Progress, RunConfig, prepare, run
from .errors import InputError, RunError
from .measurement import Measurement
from .metrics import COVERAGE_LEVEL, coverage, interval_factor
from .phantoms import CALIBRATION_SEEDS, phantom

DEFAULT_IMAGES = 8
EXACT_MAX_PIXELS = 4096  # dense closed-form posteriors beyond this take too long


@dataclasses.dataclass
class _Image:
    """One simulated measurement's statistics (physical units)."""

    mean: np.ndarray
    std: np.ndarray
    truth: np.ndarray
    exact_variance: np.ndarray | None = None
    exact_coverage: float | None = None  # of K exact posterior draws, same truth


def _is_exact(denoiser) -> bool:
    from .priors import GaussianMixturePrior, StationaryGaussianPrior

    return isinstance(denoiser, (StationaryGaussianPrior, GaussianMixturePrior))


def _phantom_truth(shape, index: int) -> np.ndarray:
    """A held-out phantom in [0, 1] of ``shape`` (C, H, W): cut from a square one, channels as copies."""
    c, h, w = shape
    side = max(h, w)
    p = phantom(side, CALIBRATION_SEEDS[index])
    top, left = (side - h) // 2, (side - w) // 2
    return np.broadcast_to(p[top:top + h, left:left + w], (c, h, w)).astype(np.float32)


def _user_truths(path, images: int, shape, *, dataset: str | None = None,
                 allow_external: bool = False) -> tuple[np.ndarray, str]:
    """Up to ``images`` of the user's images at ``shape`` (C, H, W), (N, C, H, W) in [0, 1] by the
    stack's robust range, and a phrase saying what they are; fewer than 2 is one sentence."""
    from .io.images import crop_resize, read_image_stack, robust_range

    role = "Calibration images"
    raw, description = read_image_stack(path, images, dataset=dataset, allow_external=allow_external, role=role,
                                        budget="calibration")
    count = sum(len(a) for a in raw)
    if count < 2:
        raise InputError(f"{role} {path} holds {count} image(s); calibration needs at least 2 (the correction is "
                         "checked on images it was not fitted on).")
    c, h, w = shape
    if raw[0].shape[1] not in (1, c):
        raise InputError(f"{role} {path} have {raw[0].shape[1]} channels and the measurement's images {c}; give "
                         f"1-channel images or {c}-channel ones.")
    low, high = robust_range(raw, str(path), role)
    x = torch.cat([crop_resize(torch.from_numpy(np.ascontiguousarray(a, np.float32)), h, w) for a in raw])
    x = ((x - low) / (high - low)).clamp_(0, 1).expand(-1, c, -1, -1)
    return np.ascontiguousarray(x.numpy()), (
        f"{description}; {len(x)} images, centre-cropped and resized to {h}x{w}, values [{low:.6g}, {high:.6g}] "
        "(0.1/99.9 percentiles) mapped to the prior's range")


def check(measurement: Measurement, config: RunConfig, images: int):
    """Refuse impossible settings in one sentence before any work; returns the engine's setup."""
    if images < 2:
        raise InputError(f"--images must be at least 2 (got {images}): the correction is checked on images it "
                         "was not fitted on.")
    if images > len(CALIBRATION_SEEDS):
        raise InputError(f"--images must be at most {len(CALIBRATION_SEEDS)} (got {images}).")
    if config.samples < 2:
        raise InputError(f"--samples must be at least 2 (got {config.samples}): a std needs two samples.")
    setup = prepare(measurement, config)
    spread = setup_spread(setup)
    if spread.kind not in ("posterior", "seed"):
        raise InputError(f"{spread.reason[:-1]}, so there is no uncertainty to calibrate; choose a sampler "
                         "or parameters that draw fresh noise and use the measurement.")
    return setup


def calibrate(measurement: Measurement, config: RunConfig, images: int = DEFAULT_IMAGES, *, stop=None,
              store: Path | None = None, truths: str | Path | None = None, dataset: str | None = None,
              allow_external: bool = False) -> Iterator:
    """Measure the setting of ``measurement`` x ``config``, store the correction, end with
    ``Finished(result=Calibration)``. Yields the engine's Progress (over all images) and Log events;
    ``stop`` (a threading.Event) ends it after the current solver step without storing anything
    (``Finished(result=None)``). ``truths`` (a folder, image file or HDF5 file; ``dataset`` and
    ``allow_external`` as for training data) replaces the phantoms or prior draws by up to
    ``images`` of the user's images."""
    setup = check(measurement, config, images)
    info, norm, prior = setup.info, setup.norm, setup.denoiser
    key, setting = run_key(measurement, prior=setup.prior_name, prior_hash=setup.prior_hash, solver=info.name,
                           params=dataclasses.asdict(setup.params), steps=len(setup.sigmas) - 1,
                           schedule=config.schedule, warm_start=setup_warm_start(setup))
    op_prior = setup.op  # prior units, noise scaled: the closed-form posterior's operator
    n_pixels = int(np.prod(op_prior.image_shape))
    exact = _is_exact(prior) and not op_prior.is_complex and not op_prior.image_complex and n_pixels <= EXACT_MAX_PIXELS
    from .operators import build_operator

    op = build_operator(measurement.operator)
    op.noise_sigma = float(measurement.noise_sigma)
    user = None
    if truths is not None:
        user, description = _user_truths(truths, images, op.image_shape, dataset=dataset,
                                         allow_external=allow_external)
        images = len(user)
        method = f"your images: {description}" + ("; the solver held against exact posterior draws" if exact else "")
    elif exact:
        method = "exact prior: truths drawn from the prior, the solver held against exact posterior draws"
    else:
        method = f"simulation: held-out phantoms (seeds {CALIBRATION_SEEDS[0]}-{CALIBRATION_SEEDS[images - 1]})"
    yield Log(f"Calibrating {setting} on {images} simulated measurements, {config.samples} samples each ({method}).")
    lo, hi = (float(v) for v in prior.card.value_range) if info.uses_prior else (0.0, 1.0)
    value_range = (float(norm.to_physical(lo)), float(norm.to_physical(hi)))
    run_config = dataclasses.replace(config, use_calibration=False, keep_samples=0, preview_interval=1e9)
    stats: list[_Image] = []
    t0 = time.perf_counter()
    for i in range(images):
        g = torch.Generator().manual_seed(int(CALIBRATION_SEEDS[i]))
        with torch.no_grad():
            if user is None and exact:
                x_prior = prior.sample(1, g).to(torch.float32).cpu()
                truth = norm.to_physical(x_prior[0].numpy())
            else:
                truth01 = user[i] if user is not None else _phantom_truth(op.image_shape, i)
                truth = norm.to_physical(lo + (hi - lo) * truth01)
            x = torch.as_tensor(np.asarray(truth)[None], dtype=op.image_dtype)
            y = op.simulate(x, g)[0].numpy()
        simulated = dataclasses.replace(measurement, y=y, ground_truth=np.asarray(truth, np.float32),
                                        value_range=value_range, title=f"calibration image {i + 1}")
        result = None
        for event in run(simulated, dataclasses.replace(run_config, seed=config.seed + i), stop=stop,
                         denoiser=prior if info.uses_prior else None):
            if isinstance(event, Progress):
                event.samples_done += i * config.samples
                event.samples_total = images * config.samples
                event.elapsed = time.perf_counter() - t0
                done = event.samples_done + event.step / max(event.steps, 1)
                event.eta = event.elapsed / done * (event.samples_total - done) if done else None
                event.work_done, event.work_total = (event.work_done + i * event.work_total,
                                                     images * event.work_total)  # over all images
                yield event
            elif isinstance(event, Log) and event.level == "warning" and i == 0:
                yield event
            elif isinstance(event, Finished):
                result = event.result
        if stop is not None and stop.is_set() or result is None or not result.complete:
            yield Log("Calibration stopped; nothing was stored.", "warning")
            yield Finished(result=None)
            return
        item = _Image(result.mean.astype(np.float64), result.std.astype(np.float64), np.asarray(truth, np.float64))
        if exact:
            from .validate.exact import exact_posterior

            y_prior = norm.measurement_to_prior(op_prior, torch.as_tensor(y)[None].to(op_prior.device))
            post = exact_posterior(prior, op_prior, y_prior)
            item.exact_variance = post.variance.numpy().reshape(item.mean.shape) * norm.scale**2
            draws = norm.to_physical(post.sample(config.samples, g).numpy().reshape(-1, *item.mean.shape))
            item.exact_coverage = coverage(draws.mean(0), draws.std(0, ddof=1), item.truth, config.samples)
        stats.append(item)
        score = coverage(item.mean, item.std, item.truth, config.samples)
        yield Log(f"image {i + 1} of {images}: coverage {score:.2f}")
    cal = summarise(stats, config.samples, key=key, setting=setting, method=method)
    save(cal, store)
    yield Log(f"Stored: std x {cal.scale:.3g}; {cal.status()} (uncorrected {cal.coverage:.2f}).")
    yield Finished(result=cal)


def save(cal: Calibration, path: Path | None = None) -> Path:
    """Add or replace ``cal`` in the store (:func:`diffrecon.calibration.store_path`), atomically;
    returns the store's path. Reading the store is :func:`diffrecon.calibration.lookup`."""
    from .io.atomic import atomic_write

    path = path or store_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    records = load_store(path)
    records[cal.key] = cal.to_dict()
    text = json.dumps({"format": "diffrecon calibrations", "version": 1, "calibrations": records}, indent=1)
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text), action="write the calibration store")


def summarise(stats: list[_Image], k: int, *, key: str = "", setting: str = "", method: str = "",
              level: float = COVERAGE_LEVEL) -> Calibration:
    """The correction and its coverages from the images' statistics (see the module docstring)."""
    from . import __version__

    factor = interval_factor(k, level)
    raw = float(np.mean([coverage(s.mean, s.std, s.truth, k, level) for s in stats]))
    err2 = sum(float(np.sum((s.mean - s.truth) ** 2)) for s in stats)
    std2 = sum(float(np.sum(s.std**2)) for s in stats)
    error_to_std = float(np.sqrt(err2 / ((1 + 1 / k) * std2))) if std2 > 0 else float("inf")
    variance_ratio = exact_coverage = None
    if stats and all(s.exact_variance is not None for s in stats):
        exact_var = sum(float(np.sum(s.exact_variance)) for s in stats)
        variance_ratio = std2 / exact_var if exact_var > 0 else float("inf")
        exact_coverage = float(np.mean([s.exact_coverage for s in stats]))
    ratios = [_ratios(s, factor) for s in stats]
    scale = _quantile(np.concatenate(ratios), level)
    calibrated = []
    for i, s in enumerate(stats):  # leave one out: the factor never saw the image it is scored on
        others = _quantile(np.concatenate([r for j, r in enumerate(ratios) if j != i]), level)
        calibrated.append(coverage(s.mean, others * s.std, s.truth, k, level) if np.isfinite(others) else 0.0)
    if not (np.isfinite(scale) and scale > 0):
        raise RunError("The std is zero where the error is not on more than "
                       f"{100 * (1 - level):.0f} % of the pixels, so no factor on it can make it calibrated; "
                       "this setting's spread is not an uncertainty (try parameters with fresh noise).")
    return Calibration(key=key, setting=setting, scale=scale, coverage=raw,
                       coverage_calibrated=float(np.mean(calibrated)), error_to_std=error_to_std,
                       n_images=len(stats), samples=k, level=level, method=method, variance_ratio=variance_ratio,
                       exact_coverage=exact_coverage,
                       created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                       software_version=__version__)


def _ratios(s: _Image, factor: float) -> np.ndarray:
    """Per pixel, the std factor that would just cover the truth: |error| / (t-factor std)."""
    err = np.abs(s.mean - s.truth).ravel()
    half = factor * s.std.ravel()
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(err == 0, 0.0, err / half)


def _quantile(values: np.ndarray, level: float) -> float:
    return float(np.quantile(values, level, method="higher"))
