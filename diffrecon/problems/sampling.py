"""Sampling patterns that can be changed after the fact: MRI masks, inpainting masks, CT views.

Each rule reads the settings from a stored operator spec and makes the new pattern's arrays;
:mod:`diffrecon.resimulate` decides whether the file holds the data to apply it honestly.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from ..operators import cartesian_mask, random_mask
from .base import Resampling, Setting

MASK_KINDS = ("random", "equispaced")
MAX_CT_VIEWS = 720


# ------------------------------------------------------------------------------ reading patterns
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


# ------------------------------------------------------------------------------ MRI
def _mri_settings(spec) -> tuple[Setting, ...]:
    if "mask" not in spec.arrays:
        return ()
    mask = np.asarray(spec.arrays["mask"], bool)
    w = mask.shape[-1]
    return (
        Setting("acceleration", "Acceleration", mask_acceleration(mask), 1.0, float(w),
                help="k-space points over measured ones: 4 keeps a quarter of the columns."),
        Setting("center_fraction", "Centre fraction", center_fraction(mask) or None, 1.0 / w, 1.0,
                optional=True, help="Fraction of columns fully sampled at the k-space centre; "
                                    "blank: 0.32 / acceleration (fastMRI)."),
    )


def _mri_apply(spec, values: Mapping, mask_kind: str, seed: int) -> tuple[dict, str]:
    acc = float(values["acceleration"])
    mask = cartesian_mask(spec.image_shape[-2:], acc, values.get("center_fraction"), mask_kind, seed)
    return {"mask": mask}, f"retrospectively undersampled x{acc:g} ({mask_kind})"


MRI_RESAMPLING = Resampling(
    settings=_mri_settings,
    refused=lambda spec: (f"The file holds k-space undersampled x{mask_acceleration(spec.arrays['mask']):.3g} "
                          "and no ground truth, so another mask cannot be applied honestly."),
    apply=_mri_apply,
    from_data=lambda spec: bool(np.asarray(spec.arrays["mask"], bool).all()),
    restrict=lambda y, arrays: y * arrays["mask"],
    mask_kinds=MASK_KINDS,
)


# ------------------------------------------------------------------------------ inpainting
def _inpaint_settings(spec) -> tuple[Setting, ...]:
    if "mask" not in spec.arrays:
        return ()
    mask = np.asarray(spec.arrays["mask"], bool)
    return (Setting("missing_fraction", "Missing fraction", float(1.0 - mask.mean()), 0.0, 0.99,
                    help="Fraction of pixels not measured, drawn at random."),)


def _inpaint_apply(spec, values: Mapping, mask_kind: str, seed: int) -> tuple[dict, str]:
    frac = float(values["missing_fraction"])
    return {"mask": random_mask(spec.image_shape, frac, seed)}, f"re-simulated with {100 * frac:.3g} % of pixels missing"


INPAINT_RESAMPLING = Resampling(
    settings=_inpaint_settings,
    refused=lambda spec: "The file holds no ground truth, so other missing pixels cannot be simulated honestly.",
    apply=_inpaint_apply,
)


# ------------------------------------------------------------------------------ CT
def _ct_settings(spec) -> tuple[Setting, ...]:
    if "angles_deg" not in spec.arrays:
        return ()
    angles = np.asarray(spec.arrays["angles_deg"]).ravel()
    first, covered = angular_range(angles)
    return (Setting("views", "Views", float(angles.size), 1.0, float(MAX_CT_VIEWS), integer=True,
                    help=f"Projection angles spread evenly over the file's {covered:g} degrees."),)


def _ct_apply(spec, values: Mapping, mask_kind: str, seed: int) -> tuple[dict, str]:
    n = int(values["views"])
    first, covered = angular_range(spec.arrays["angles_deg"])
    return {"angles_deg": first + np.arange(n) * (covered / n)}, f"re-simulated with {n} views over {covered:g} degrees"


CT_RESAMPLING = Resampling(
    settings=_ct_settings,
    refused=lambda spec: "The file holds no ground truth, so other views cannot be simulated honestly.",
    apply=_ct_apply,
)
