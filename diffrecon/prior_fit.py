"""Prior-fit indicator: does the prior explain these data, or would its structures be invented?

Measured, not guessed. A denoiser that fits an image removes added noise of level ``sigma`` and
returns that image; on an image unlike its training data it also changes the image. The
statistic is the denoiser's RMS change of an image ``x`` under noise of a probe level,
``d(x) = rms(D(x + sigma_p n, sigma_p) - x) / sigma_p``, taken relative to the same statistic on
the prior's reference images (for the bundled prior: its training family, procedural phantoms
from the validation seeds): ``fit = d(x) / d(reference)``, about 1 where the prior fits.

* before a run: ``x`` is the TV reconstruction (no prior involved), and the reference is the TV
  reconstruction of reference images measured by the same forward model at the same noise, so
  the artefacts of TV itself (which no prior's training images hold) count on both sides;
* after a run: ``x`` is the posterior mean against the reference images themselves, plus the
  residual against the noise level (``||A mean - y|| / (sigma sqrt(m))``, about 1 where prior
  and data agree).

The warning fires when the before or after statistic exceeds ``THRESHOLD`` (set between the
values on phantoms and on real images, benchmarks/real_images.py) or the residual ratio exceeds
``RESIDUAL_THRESHOLD``.
"""
from __future__ import annotations

import math

import numpy as np
import torch

PROBE = 0.25  # probe noise level as a fraction of the prior's value range width
N_REFERENCE = 4
FIT_ITERATIONS = 300  # TV iterations for the indicator: its artefacts, not its last digits, matter
THRESHOLD = 1.3  # above every phantom (0.96-1.26) in benchmarks/real_images.py
RESIDUAL_THRESHOLD = 2.0
WARNING = "This prior does not fit these data; structures in the mean may come from the prior."


def _reference(shape, lo: float, hi: float, device) -> torch.Tensor:
    from .phantoms import VALIDATION_SEEDS, phantom

    c, h, w = shape
    imgs = [np.broadcast_to(phantom(max(h, w), VALIDATION_SEEDS[-1 - k])[:h, :w], (c, h, w)) for k in range(N_REFERENCE)]
    return torch.as_tensor(np.stack(imgs), device=device) * (hi - lo) + lo


def denoiser_change(denoiser, x: torch.Tensor, sigma: float, seed: int = 0) -> torch.Tensor:
    """Per image ``rms(D(x + sigma n, sigma) - x) / sigma`` (``x``: (B, C, H, W), prior units)."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    noise = torch.randn(x.shape, generator=g).to(x.device)
    with torch.no_grad():
        out = denoiser(x + sigma * noise, sigma)
    return (out - x).float().flatten(1).square().mean(1).sqrt() / sigma


def fit_statistic(denoiser, x: torch.Tensor, op=None) -> float:
    """``d(x) / d(reference)`` for one image ``x`` ((C, H, W) or (1, C, H, W), prior units).
    With ``op``, the reference images are TV reconstructions of their own simulated
    measurements under ``op`` (``x`` is then a TV reconstruction too)."""
    lo, hi = (float(v) for v in denoiser.card.value_range)
    x = x.reshape(1, *x.shape[-3:]).real.float()
    ref = _reference(tuple(x.shape[1:]), lo, hi, x.device).to(x.dtype)
    if op is not None:
        from .warm_start import classical
        with torch.no_grad():
            clean = op.A(ref.to(op.image_dtype))
            g = torch.Generator(device="cpu").manual_seed(1)
            y = clean + (op.noise_like(clean.cpu(), g).to(clean.device) if op.noise_sigma > 0 else 0)
        ref = classical(op, y, max_iter=FIT_ITERATIONS).real.float()
    d = denoiser_change(denoiser, torch.cat([x, ref]), PROBE * (hi - lo))
    return float(d[0] / d[1:].mean().clamp_min(1e-12))


def assess(before: float | None, after: float | None, residual_ratio: float | None) -> dict[str, float]:
    """The indicator's numbers for a result's metrics; ``prior_fit_warning`` 1.0 if it fires."""
    out: dict[str, float] = {}
    if before is not None:
        out["prior_fit"] = before
    if after is not None:
        out["prior_fit_after"] = after
    fires = any(v is not None and math.isfinite(v) and v > THRESHOLD for v in (before, after)) or \
        (residual_ratio is not None and residual_ratio > RESIDUAL_THRESHOLD)
    if out:
        out["prior_fit_warning"] = float(fires)
    return out


def before_run(setup) -> float | None:
    """The statistic on the TV reconstruction of an engine setup (None without a prior)."""
    if not setup.info.uses_prior or getattr(setup.denoiser, "card", None) is None:
        return None
    from .warm_start import classical

    x = setup.warm.x0 if setup.warm is not None else classical(setup.op, setup.y[:1], max_iter=FIT_ITERATIONS)
    return fit_statistic(setup.denoiser, x, setup.op)


def after_run(setup, mean: torch.Tensor, before: float | None, residual_ratio: float | None) -> dict[str, float]:
    """The result's indicator numbers: ``mean`` is the posterior mean in the prior's units."""
    if before is None:
        return {}
    return assess(before, fit_statistic(setup.denoiser, mean), residual_ratio)


#: what to try where the bundled phantom prior does not fit (benchmarks/real_images.py: with the
#: same pipeline the procedural prior reached TV on 35 of 40 real-image rows, the default on 24)
TRY_GENERAL = (" The bundled prior 'procedural' was trained on images beyond phantoms (cells, vessels, "
               "textures, natural-image statistics): try --prior procedural (window: Priors).")


def message(before: float, prior_name: str = "") -> tuple[str, str]:
    """The log line (and its level) shown before a run; where the bundled phantom prior
    (``prior_name`` "default") does not fit, it names the general one to try."""
    if before > THRESHOLD:
        return (f"Prior fit {before:.2f} (1: like the prior's training images; above {THRESHOLD:g}: unlike them). "
                + WARNING + (TRY_GENERAL if prior_name == "default" else ""), "warning")
    return f"Prior fit {before:.2f} (1: like the prior's training images; warning above {THRESHOLD:g}).", "info"
