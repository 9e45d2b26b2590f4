"""DICOM and NIfTI images at the importer level: which of the two a path holds, its slice in
physical units (:mod:`.physical_base` has the units and checks shared by the two readers), and a
simulated measurement of it that keeps those units and the pixel size."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import InputError
from ...measurement import Measurement
from ._common import check_size_arg
from .dicom import is_dicom, read_dicom
from .image import read_image as read_plain_image
from .image import resample, simulate
from .nifti import is_nifti, read_nifti
from .physical_base import MODALITIES, MU_WATER_PER_CM, PhysicalImage  # noqa: F401 - the public names

def square_resample(img: PhysicalImage, size: int | None, path: Path) -> PhysicalImage:
    """``img`` zero-padded to a square (0: air, or no signal) and, with ``size``, resampled to
    ``size`` x ``size``; the pixel size follows, so physical lengths stay right."""
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
    path = Path(path)
    if is_dicom(path):
        return "dicom"
    return "nifti" if is_nifti(path) else None


def read_physical(path: Path, *, slice=None, modality=None, mu_water=None,
                  allow_external: bool = False) -> PhysicalImage:
    """The slice ``slice`` of a DICOM file or folder, or of a NIfTI volume, in physical units."""
    path = Path(path)
    kind = physical_format(path)
    if kind == "dicom":
        return read_dicom(path, slice, modality=modality, mu_water=mu_water, allow_external=allow_external)
    if kind == "nifti":
        return read_nifti(path, slice, modality=modality, mu_water=mu_water)
    raise InputError(f"File {path} is neither DICOM (DICM after a 128-byte preamble, or a folder of such files) "
                     "nor NIfTI (a .nii or .nii.gz header).")


def read_image(path, dataset: str | None = None, *, allow_external: bool = False, slice: int | None = None):
    """:func:`.image.read_image`, and DICOM or NIfTI files (their slice in physical units)."""
    if physical_format(Path(path)) is not None:
        return read_physical(Path(path), slice=slice, allow_external=allow_external).image
    return read_plain_image(path, dataset, allow_external=allow_external, slice=slice)
