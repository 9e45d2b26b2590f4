"""Images that carry physical units (DICOM, NIfTI): one slice, its unit and its pixel size (the
units and checks the DICOM and NIfTI readers share).

Medical files store integers and a rescale ``value = stored * slope + intercept``; a CT's
rescaled values are Hounsfield units. The CT forward model works in linear attenuation (1/cm,
pixels in cm, so that line integrals are dimensionless; see :mod:`diffrecon.problems.presets`),
so CT slices are converted with ``mu = mu_water * (1 + HU / 1000)`` (Hounsfield's definition,
air -1000 HU -> 0), negatives (below air, padding values) clipped to 0. ``mu_water`` is
0.193 1/cm, water at about 70 keV (NIST XCOM), the effective energy the demo's
attenuation range (soft tissue ~0.2 1/cm) refers to; give another for another beam.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import InputError
from ...limits import check_bytes, nbytes
from ._common import MAX_SIDE

#: Linear attenuation of water at about 70 keV in 1/cm (NIST XCOM: 0.193 cm^2/g x 1 g/cm^3).
MU_WATER_PER_CM = 0.193
#: What ``modality=`` may say: ``auto`` (DICOM: from the file's Modality; NIfTI: not CT),
#: ``ct`` (values are Hounsfield units, converted to 1/cm), ``other`` (values kept as rescaled).
MODALITIES = ("auto", "ct", "other")
#: Most files a folder of slices may hold (a whole-body CT has about 2000 slices).
MAX_FILES = 4096


@dataclass
class PhysicalImage:
    """One slice ``(C, H, W)`` float32 in ``units``, pixels of ``pixel_size`` ``pixel_unit``."""

    image: np.ndarray
    units: str
    pixel_size: float
    pixel_unit: str
    attrs: dict[str, Any] = field(default_factory=dict)


def check_modality(modality, path: Path) -> str:
    if modality is None:
        return "auto"
    if modality not in MODALITIES:
        raise InputError(f"Import of {path}: modality is {modality!r}; valid are {', '.join(MODALITIES)}.")
    return modality


def check_mu_water(mu_water, path: Path) -> float:
    if mu_water is None:
        return MU_WATER_PER_CM
    if isinstance(mu_water, bool) or not isinstance(mu_water, (int, float)) or not (
            math.isfinite(mu_water) and 0 < mu_water < 10):
        raise InputError(f"Import of {path}: mu_water is {mu_water!r}; expected the attenuation of water in 1/cm, "
                         "a number between 0 and 10 (0.193 at about 70 keV).")
    return float(mu_water)


def check_plane(shape, itemsize: int, path: Path, what: str) -> None:
    """Refuse a declared slice (rows, columns, samples...) before any pixel is read."""
    if len(shape) < 2 or any(int(s) < 1 for s in shape):
        raise InputError(f"File {path} declares {what} of shape {tuple(int(s) for s in shape)}; every side must be at "
                         "least 1.")
    if max(int(s) for s in shape[:2]) > MAX_SIDE or min(int(s) for s in shape[:2]) < 2:
        raise InputError(f"File {path} declares {what} of {int(shape[0])} x {int(shape[1])} pixels; image sides "
                         f"must lie in 2..{MAX_SIDE}.")
    check_bytes(nbytes(shape, max(int(itemsize), 4)), f"File {path}: {what}", "array")


def hounsfield_to_attenuation(hu: np.ndarray, mu_water: float) -> np.ndarray:
    """Linear attenuation (1/cm) of Hounsfield units: ``mu_water * (1 + HU / 1000)``, at least 0."""
    return np.clip(mu_water * (1.0 + np.asarray(hu, np.float64) / 1000.0), 0.0, None)


def spacing_mm(row: float, col: float, path: Path, where: str) -> float:
    """The (square) pixel size in mm from the spacing between rows and between columns."""
    ok = all(isinstance(v, float) and math.isfinite(v) and 0 < v < 1e4 for v in (row, col))
    if not ok:
        raise InputError(f"File {path}: {where} is ({row!r}, {col!r}); expected two positive sizes in mm.")
    if abs(row - col) > 0.01 * max(row, col):
        raise InputError(f"File {path} has non-square pixels ({row:g} x {col:g} mm, {where}); only square pixels "
                         "are simulated.")
    return float(col)


def physical_slice(values: np.ndarray, path: Path, *, ct: bool, mu_water: float, pixel_mm: float | None,
                   attrs: dict[str, Any]) -> PhysicalImage:
    """A rescaled 2-D slice as a :class:`PhysicalImage`: CT in 1/cm on cm pixels, else as given on mm pixels."""
    values = np.asarray(values, np.float64)
    if not np.isfinite(values).all():
        raise InputError(f"File {path} holds NaN or Inf pixel values after rescaling; all values must be finite.")
    if ct:
        image, units = hounsfield_to_attenuation(values, mu_water), "1/cm"
        attrs = {**attrs, "converted": f"Hounsfield units to linear attenuation, mu_water {mu_water:g} 1/cm"}
        size, unit = (pixel_mm / 10.0, "cm") if pixel_mm else (1.0, "px")
    else:
        image, units = values, "a.u."
        size, unit = (pixel_mm, "mm") if pixel_mm else (1.0, "px")
    return PhysicalImage(image.astype(np.float32)[None], units, float(size), unit, attrs)
