"""Images that carry physical units (DICOM, NIfTI): one slice, its unit and its pixel size.

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
from ...measurement import Measurement
from ._common import MAX_SIDE, check_size_arg

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


def square_resample(img: PhysicalImage, size: int | None, path: Path) -> PhysicalImage:
    """``img`` zero-padded to a square (0: air, or no signal) and, with ``size``, resampled to
    ``size`` x ``size``; the pixel size follows, so physical lengths stay right."""
    from .image import resample

    x = img.image
    c, h, w = x.shape
    n = max(h, w)
    if h != w:
        top, left = (n - h) // 2, (n - w) // 2
        x = np.pad(x, ((0, 0), (top, n - h - top), (left, n - w - left)))
    pixel_size = img.pixel_size
    size = check_size_arg(size, path)
    if size is not None and size != n:
        x = resample(x, size)
        pixel_size = pixel_size * n / size
    attrs = {**img.attrs, "padded_to_square": bool(h != w)} if h != w else img.attrs
    return PhysicalImage(x.astype(np.float32), img.units, float(pixel_size), img.pixel_unit, attrs)


def simulate_physical(img: PhysicalImage, path: Path, *, operator=None, options=None, noise=0.0, seed=0,
                      size=None, units=None, pixel_size=None, pixel_unit=None) -> Measurement:
    """A simulated measurement of ``img`` in its own units and pixel size (each may be overridden)."""
    from .image import simulate

    if operator is None:
        raise InputError(f"File {path} is an image, not a measurement; make a measurement from it with "
                         "diffrecon simulate.")
    img = square_resample(img, size, path)
    m = simulate(img.image, operator, options, noise=noise, seed=seed, units=units or img.units,
                 pixel_size=img.pixel_size if pixel_size is None else pixel_size,
                 pixel_unit=pixel_unit or img.pixel_unit, title=f"{path.name} simulated {operator}")
    m.attrs.update({k: v for k, v in img.attrs.items() if isinstance(v, (str, int, float, bool))})
    m.source = path
    return m


def physical_format(path: Path) -> str | None:
    """``dicom`` (a file, or a folder of slices) or ``nifti`` from the content of ``path``, else None."""
    from .dicom import is_dicom
    from .nifti import is_nifti

    path = Path(path)
    if is_dicom(path):
        return "dicom"
    return "nifti" if is_nifti(path) else None


def read_physical(path: Path, *, slice=None, modality=None, mu_water=None,
                  allow_external: bool = False) -> PhysicalImage:
    """The slice ``slice`` of a DICOM file or folder, or of a NIfTI volume, in physical units."""
    from .dicom import read_dicom
    from .nifti import read_nifti

    path = Path(path)
    kind = physical_format(path)
    if kind == "dicom":
        return read_dicom(path, slice, modality=modality, mu_water=mu_water, allow_external=allow_external)
    if kind == "nifti":
        return read_nifti(path, slice, modality=modality, mu_water=mu_water)
    raise InputError(f"File {path} is neither DICOM (DICM after a 128-byte preamble, or a folder of such files) "
                     "nor NIfTI (a .nii or .nii.gz header).")
