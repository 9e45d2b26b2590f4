"""Retrospective re-simulation of a measurement with another sampling pattern. Qt-free.

A new sampling pattern can be applied honestly only to data that holds everything the new
pattern would measure:

* MRI with fully sampled k-space (every phase-encoding column measured): the new Cartesian mask
  is applied to the measured k-space itself, ``y' = M' y`` (retrospective undersampling, as the
  fastMRI challenge builds its inputs; Zbontar et al. 2018, sec. 4.2). The file's noise stays,
  measured entries keep their noise level.
* MRI, inpainting or CT with a ground truth: ``y' = A'(x_true) + noise``, white Gaussian noise at
  the file's noise level from a generator seeded with ``seed``.

Anything else (undersampled k-space without a ground truth, a CT sinogram without one) has no
data for the new pattern; :func:`options` then says why, and the GUI disables the controls.
Re-simulation always starts from the file's own measurement, which stays the way back.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
import torch

from .errors import InputError
from .measurement import Measurement
from .operators import build_operator, cartesian_mask, random_mask

MASK_KINDS = ("random", "equispaced")
MAX_CT_VIEWS = 720


@dataclass(frozen=True)
class Setting:
    """One editable sampling parameter, with the file's value and the valid range (inclusive)."""

    name: str  # acceleration | center_fraction | missing_fraction | views
    label: str
    value: float | None  # the file's value; None: not determined (centre fraction of a random mask)
    low: float
    high: float
    integer: bool = False
    optional: bool = False  # blank means "automatic"
    help: str = ""


@dataclass(frozen=True)
class Options:
    """What can be re-simulated for a measurement: ``settings`` empty when nothing applies."""

    available: bool
    reason: str  # why not (a sentence), or what the new measurement is computed from
    settings: tuple[Setting, ...] = ()


# ------------------------------------------------------------------------------ reading the file
def sampled_columns(mask: np.ndarray) -> np.ndarray:
    """Bool (W,) of phase-encoding columns measured in every row of an (H, W) k-space mask."""
    return np.asarray(mask, bool).reshape(-1, *np.shape(mask)[-2:]).all(axis=(0, 1))


def mask_acceleration(mask: np.ndarray) -> float:
    """Acceleration of a k-space mask: all k-space points over the measured ones."""
    m = np.asarray(mask, bool)
    return float(m.size / max(int(m.sum()), 1))


def center_fraction(mask: np.ndarray) -> float:
    """Width of the contiguous run of sampled columns around the k-space centre, over W."""
    cols = sampled_columns(mask)
    w = cols.size
    c = w // 2
    if not cols[c]:
        return 0.0
    lo, hi = c, c
    while lo > 0 and cols[lo - 1]:
        lo -= 1
    while hi < w - 1 and cols[hi + 1]:
        hi += 1
    return (hi - lo + 1) / w


def angular_range(angles_deg: np.ndarray) -> tuple[float, float]:
    """(first angle, covered range) of evenly spaced views: 30 views 6 degrees apart cover 180."""
    a = np.sort(np.asarray(angles_deg, np.float64).ravel())
    if a.size < 2:
        return float(a[0]) if a.size else 0.0, 180.0
    return float(a[0]), float(a[-1] - a[0] + np.median(np.diff(a)))


def source_name(m: Measurement) -> str:
    if m.source is not None:
        return Path(m.source).name
    return m.title or "the file"


def options(m: Measurement) -> Options:
    """The editable sampling settings of ``m``'s forward model, and whether they can be applied."""
    kind, spec = m.operator.kind, m.operator
    has_truth = m.ground_truth is not None
    if kind == "mri" and "mask" in spec.arrays:
        mask = np.asarray(spec.arrays["mask"], bool)
        w = mask.shape[-1]
        full = bool(mask.all())
        settings = (
            Setting("acceleration", "Acceleration", mask_acceleration(mask), 1.0, float(w),
                    help="k-space points over measured ones: 4 keeps a quarter of the columns."),
            Setting("center_fraction", "Centre fraction", center_fraction(mask) or None, 1.0 / w, 1.0,
                    optional=True, help="Fraction of columns fully sampled at the k-space centre; "
                                        "blank: 0.32 / acceleration (fastMRI)."),
        )
        if full:
            return Options(True, "from the file's fully sampled k-space", settings)
        if has_truth:
            return Options(True, "from the ground truth, noise at the file's level", settings)
        return Options(False, f"The file holds k-space undersampled x{mask_acceleration(mask):.3g} and no "
                              "ground truth, so another mask cannot be applied honestly.", settings)
    if kind == "inpaint" and "mask" in spec.arrays:
        mask = np.asarray(spec.arrays["mask"], bool)
        setting = Setting("missing_fraction", "Missing fraction", float(1.0 - mask.mean()), 0.0, 0.99,
                          help="Fraction of pixels not measured, drawn at random.")
        if has_truth:
            return Options(True, "from the ground truth, noise at the file's level", (setting,))
        return Options(False, "The file holds no ground truth, so other missing pixels cannot be "
                              "simulated honestly.", (setting,))
    if kind == "ct" and "angles_deg" in spec.arrays:
        angles = np.asarray(spec.arrays["angles_deg"]).ravel()
        first, covered = angular_range(angles)
        setting = Setting("views", "Views", float(angles.size), 1.0, float(MAX_CT_VIEWS), integer=True,
                          help=f"Projection angles spread evenly over the file's {covered:g} degrees.")
        if has_truth:
            return Options(True, "from the ground truth, noise at the file's level", (setting,))
        return Options(False, "The file holds no ground truth, so other views cannot be simulated "
                              "honestly.", (setting,))
    return Options(False, f"The {kind} forward model has no sampling pattern to change.")


# ------------------------------------------------------------------------------ checking values
def problems(m: Measurement, values: Mapping[str, float | None]) -> dict[str, str]:
    """One sentence per invalid value in ``values`` (by setting name); empty when all are valid."""
    found = {}
    for s in options(m).settings:
        v = values.get(s.name)
        if v is None:
            if not s.optional:
                found[s.name] = f"{s.label} is required: a number from {s.low:g} to {s.high:g}."
            continue
        if not np.isfinite(v) or not s.low <= v <= s.high or (s.integer and v != int(v)):
            what = "a whole number" if s.integer else "a number"
            found[s.name] = f"{s.label} must be {what} from {s.low:g} to {s.high:g} (got {v:g})."
    acc, cf = values.get("acceleration"), values.get("center_fraction")
    if "acceleration" not in found and "center_fraction" not in found and acc and cf is not None \
            and cf > 1.0 / acc + 1e-9:
        found["center_fraction"] = (f"Centre fraction must be at most 1 / acceleration = {1.0 / acc:.3g}, "
                                    "or the centre alone exceeds the sampled columns.")
    return found


# ------------------------------------------------------------------------------ re-simulating
def resimulate(m: Measurement, values: Mapping[str, float | None], *, mask_kind: str = "random",
               seed: int = 0) -> Measurement:
    """``m`` measured again with the sampling ``values`` (see :func:`options`), as a new
    measurement whose title says how it was derived; ``m`` itself is not changed."""
    opts = options(m)
    if not opts.available:
        raise InputError(opts.reason)
    bad = problems(m, values)
    if bad:
        raise InputError(next(iter(bad.values())))
    if mask_kind not in MASK_KINDS:
        raise InputError(f"Mask kind {mask_kind!r} is not known; valid kinds are {', '.join(MASK_KINDS)}.")
    spec, name = m.operator, source_name(m)
    arrays = dict(spec.arrays)
    if spec.kind == "mri":
        acc = float(values["acceleration"])
        cf = values.get("center_fraction")
        arrays["mask"] = cartesian_mask(spec.image_shape[-2:], acc, cf, mask_kind, seed)
        what = f"retrospectively undersampled x{acc:g} ({mask_kind}) from {name}"
    elif spec.kind == "inpaint":
        frac = float(values["missing_fraction"])
        arrays["mask"] = random_mask(spec.image_shape, frac, seed)
        what = f"re-simulated with {100 * frac:.3g} % of pixels missing from {name}"
    else:
        n = int(values["views"])
        first, covered = angular_range(spec.arrays["angles_deg"])
        arrays["angles_deg"] = first + np.arange(n) * (covered / n)
        what = f"re-simulated with {n} views over {covered:g} degrees from {name}"
    new_spec = dataclasses.replace(spec, arrays=arrays, noise_sigma=float(m.noise_sigma))
    op = build_operator(new_spec)
    with torch.no_grad():
        if spec.kind == "mri" and np.asarray(spec.arrays["mask"], bool).all():
            y = torch.as_tensor(np.asarray(m.y)) * torch.as_tensor(arrays["mask"])
        else:
            x = torch.as_tensor(np.asarray(m.ground_truth))[None].to(op.image_dtype)
            y = op.simulate(x, torch.Generator().manual_seed(int(seed)))[0]
    y = y.numpy().astype(np.asarray(m.y).dtype, copy=False)
    attrs = {**m.attrs, "derived_from": name, "derivation": what, "resimulation_seed": int(seed)}
    return dataclasses.replace(m, y=y, operator=new_spec, title=what, attrs=attrs)


def is_derived(m: Measurement | None) -> bool:
    return m is not None and "derivation" in m.attrs
