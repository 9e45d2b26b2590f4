"""Import one slice of a fastMRI k-space file as a Cartesian MRI measurement.

fastMRI layout (Zbontar et al., "fastMRI: An Open Dataset and Benchmarks for Accelerated MRI",
arXiv:1811.08839, Sec. 4): ``kspace`` is ``(slices, coils, rows, columns)`` complex (multi-coil)
or ``(slices, rows, columns)`` (single-coil), rows along the read-out (fully sampled, 2x
oversampled) and columns along the phase encoding (the undersampled direction). Optional:
``reconstruction_rss`` / ``reconstruction_esc`` (the reference magnitude image, centre-cropped,
e.g. 320 x 320), ``ismrmrd_header`` (XML), and file attributes ``acquisition``, ``max``,
``norm``, ``patient_id`` (numbers may be stored as strings).

What the importer does, in order (see docs/importers.md):

1. reads only the chosen slice, detects the sampled columns (any non-zero sample);
2. estimates the noise level from the k-space corners (:func:`diffrecon.coils.estimate_noise_sigma`);
3. brings the image to the target shape (``size x size``, else the reference's shape, else the
   k-space shape): the coil images ``ifft2c(kspace)`` are cropped (or zero-padded) in image
   space and transformed back. Along the fully sampled read-out this is exact. Along the phase
   encoding it is exact only for fully sampled data; for undersampled data the k-space is cut to
   its central columns instead (an image-space crop would smear the unsampled columns into the
   sampled ones), which resizes the image along that axis, and the reference is then dropped;
4. applies a retrospective mask when ``acceleration`` is given (fully sampled data only);
5. estimates coil sensitivities from the auto-calibration region (:mod:`diffrecon.coils`);
   single-coil data get a one-coil "map" of unit magnitude carrying the low-resolution phase.

The image is therefore assumed real and non-negative (``image_complex=False``): the maps absorb
the object's smooth phase. ``coils="none"`` keeps single-coil data complex instead.
"""
from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from ...coils import (calibration_width, estimate_coil_maps, estimate_noise_sigma, fft2c, ifft2c, rss,
                      sampled_columns)
from ...errors import InputError
from ...measurement import Measurement
from ..h5 import attr_str, check_read, open_readonly, require_dataset
from .noise import kspace_noise
from ...operators import MRI, cartesian_mask
from .stack import check_range, same_operator, shared_noise
from ._common import MAX_SIDE, centre_crop_or_pad, check_size_arg, finite_or_fail, pick_index, value_range_of

_MAX_COILS = 128
_MAX_HEADER_BYTES = 1 << 20
_REFERENCES = ("reconstruction_rss", "reconstruction_esc")


def _read(ds, index, path: Path, dtype) -> np.ndarray:
    """``ds[index]`` as ``dtype``; h5py errors from damaged files become one InputError."""
    check_read(ds, index, path, dtype)
    try:
        arr = np.asarray(ds[index])
    except (OSError, RuntimeError, ValueError, KeyError, TypeError) as err:
        raise InputError(f"File {path}: dataset {ds.name} cannot be read; the file may be truncated or "
                         f"damaged ({err}).") from None
    return finite_or_fail(arr.astype(dtype, copy=False), path, ds.name)


def _number_attr(attrs, key: str) -> float | None:
    """fastMRI's ``max``/``norm`` are numbers in some files and strings in others."""
    if key not in attrs:
        return None
    v = attrs[key]
    if isinstance(v, bytes):
        v = v.decode("utf-8", "replace")
    try:
        out = float(np.asarray(v).reshape(()))
    except (TypeError, ValueError):
        return None
    return out if np.isfinite(out) else None


def _pixel_size_mm(f, path: Path, rows: int) -> tuple[float | None, float | None]:
    """Read-out pixel pitch and slice thickness in mm from the ISMRMRD header's encoded field of
    view (mm / matrix; the thickness is the field of view along z of a 2D acquisition)."""
    ds = f.get("ismrmrd_header")
    if ds is None or not hasattr(ds, "dtype") or ds.dtype.kind not in "SOU" or ds.shape not in ((), (1,)):
        return None, None
    try:
        raw = ds[()]
        raw = raw[0] if isinstance(raw, np.ndarray) else raw
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        if len(text) > _MAX_HEADER_BYTES:
            return None, None
        root = ET.fromstring(text)
    except (OSError, ET.ParseError, ValueError, TypeError, IndexError):
        return None, None
    for el in root.iter():
        if el.tag.rsplit("}", 1)[-1] != "encodedSpace":
            continue
        fov = {c.tag.rsplit("}", 1)[-1]: c for c in el.iter()}

        def axis(name: str, end: str) -> float | None:
            try:
                value = float(next(c.text for c in fov[name] if c.tag.endswith(end)))
            except (KeyError, StopIteration, TypeError, ValueError):
                return None
            return value if np.isfinite(value) and value > 0 else None

        fov_x, mat_x, fov_z = axis("fieldOfView_mm", "x"), axis("matrixSize", "x"), axis("fieldOfView_mm", "z")
        size = fov_x / mat_x if fov_x and mat_x and int(mat_x) == rows else None
        return size, fov_z if axis("matrixSize", "z") == 1 else None
    return None, None


def _validate(f, path: Path):
    ks = require_dataset(f, "kspace", path, kinds="c", whole=False,
                         what="complex k-space (slices, coils, rows, columns) or (slices, rows, columns)")
    if ks.ndim not in (3, 4):
        raise InputError(f"File {path}: dataset /kspace has shape {ks.shape}; expected (slices, coils, rows, "
                         "columns) or (slices, rows, columns).")
    rows, cols = ks.shape[-2:]
    if not 8 <= min(rows, cols) <= max(rows, cols) <= MAX_SIDE or ks.shape[0] < 1:
        raise InputError(f"File {path}: dataset /kspace has shape {ks.shape}; rows and columns must lie in 8..{MAX_SIDE}.")
    if ks.ndim == 4 and not 1 <= ks.shape[1] <= _MAX_COILS:
        raise InputError(f"File {path}: dataset /kspace claims {ks.shape[1]} coils; expected 1 to {_MAX_COILS}.")
    reference = None
    for name in _REFERENCES:
        if name in f:
            reference = require_dataset(f, name, path, ndim=3, kinds="f", whole=False,
                                        what="a float (slices, rows, columns) reference image")
            if not 8 <= min(reference.shape[1:]) <= max(reference.shape[1:]) <= MAX_SIDE:
                raise InputError(f"File {path}: dataset /{name} has shape {reference.shape}; expected (slices, rows, "
                                 f"columns) with rows and columns from 8 to {MAX_SIDE}.")
            if reference.shape[0] != ks.shape[0]:
                raise InputError(f"File {path}: dataset /{name} has {reference.shape[0]} slices but /kspace "
                                 f"has {ks.shape[0]}; they must match.")
            break
    return ks, reference


def import_fastmri_slices(path: str | os.PathLike, rows: tuple[int, int], size: int | None = None,
                          acceleration: float | None = None, center_fraction: float | None = None, seed: int = 0,
                          coils: str = "auto", *, allow_external: bool = False) -> list[Measurement]:
    """Slices ``first .. end - 1`` of a fastMRI file, each as :func:`import_fastmri` makes it, with
    one noise level (the median of the slices' estimates); refused where their forward models
    differ (multi-coil sensitivities are estimated per slice), as a volume measurement holds one."""
    path = Path(path)
    with open_readonly(path, allow_external=allow_external) as f:
        ks_ds, _ = _validate(f, path)
        first, end = check_range(rows, ks_ds.shape[0], "the slices of /kspace", path)
    slices = [import_fastmri(path, z, size, acceleration, center_fraction, seed, coils, allow_external=allow_external)
              for z in range(first, end)]
    return same_operator(shared_noise(slices), path, "import single-coil data with coils='none' (one mask for "
                         "every slice), or multi-coil slices one at a time")


def import_fastmri(path: str | os.PathLike, slice: int | None = None, size: int | None = None,
                   acceleration: float | None = None, center_fraction: float | None = None, seed: int = 0,
                   coils: str = "auto", *, allow_external: bool = False) -> Measurement:
    """One slice of a fastMRI file as an ``MRI`` measurement (see the module docstring)."""
    path = Path(path)
    size = check_size_arg(size, path)
    if coils not in ("auto", "none"):
        raise InputError(f"Import of {path}: coils is {coils!r}; valid values are 'auto' and 'none'.")
    with open_readonly(path, allow_external=allow_external) as f:
        ks_ds, ref_ds = _validate(f, path)
        index = pick_index(slice, ks_ds.shape[0], "the slices of /kspace", path)
        kspace = _read(ks_ds, index, path, np.complex64)
        if kspace.ndim == 2:
            kspace = kspace[None]
        reference = _read(ref_ds, index, path, np.float32) if ref_ds is not None else None
        ref_name = ref_ds.name if ref_ds is not None else None
        pixel_size, thickness = _pixel_size_mm(f, path, kspace.shape[-2])
        attrs = {key: attr_str(f.attrs, key) for key in ("acquisition", "patient_id") if key in f.attrs}
        max_attr, norm_attr = _number_attr(f.attrs, "max"), _number_attr(f.attrs, "norm")

    n_coils, rows, cols = kspace.shape
    columns = sampled_columns(kspace)
    if not columns.any():
        raise InputError(f"File {path}: slice {index} of /kspace is all zeros; there is nothing to reconstruct.")
    fully_sampled = bool(columns.all())
    noise_sigma, noise_source = kspace_noise(estimate_noise_sigma(kspace, columns))

    target = (size, size) if size else (tuple(reference.shape) if reference is not None else (rows, cols))
    coil_images = ifft2c(kspace)
    # Read-out (rows): image-space crop, exact because every sampled column is complete.
    coil_images = centre_crop_or_pad(coil_images, (target[0], cols))
    if fully_sampled or target[1] == cols:
        coil_images = centre_crop_or_pad(coil_images, target)
        kspace = fft2c(coil_images)
        columns = np.ones(target[1], bool) if fully_sampled else columns
    else:
        kspace = centre_crop_or_pad(fft2c(coil_images), target)
        columns = centre_crop_or_pad(columns[None, :], (1, target[1]))[0]
        if reference is not None:
            attrs["reference_dropped"] = "phase-encode resize of undersampled data changes the geometry"
            reference = None
    h, w = target

    if acceleration is not None:
        if not fully_sampled:
            raise InputError(f"Import of {path}: acceleration applies to fully sampled k-space only; slice "
                             f"{index} is already undersampled ({int(columns.sum())} of {w} columns).")
        mask = np.asarray(cartesian_mask((h, w), acceleration, center_fraction=center_fraction, seed=seed), bool)
        mask = np.broadcast_to(mask, (h, w)).copy()
    else:
        mask = np.broadcast_to(columns[None, :], (h, w)).copy()
    y = (kspace * mask).astype(np.complex64)

    if reference is not None:
        ground_truth = centre_crop_or_pad(reference, target)[None]
    elif fully_sampled:
        ground_truth = rss(coil_images)[None].astype(np.float32)
    else:
        ground_truth = None

    image_complex = False
    if coils == "none":
        if n_coils > 1:
            raise InputError(f"Import of {path}: coils='none' needs single-coil data, but /kspace has "
                             f"{n_coils} coils; use coils='auto'.")
        coil_maps, image_complex = None, True
    else:
        calib = calibration_width(mask.any(axis=0))
        coil_maps = estimate_coil_maps(y, calib)
        if n_coils == 1:
            coil_maps = np.exp(1j * np.angle(coil_maps)).astype(np.complex64)

    op = MRI((1, h, w), mask, coil_maps=coil_maps, noise_sigma=noise_sigma, image_complex=image_complex)
    attrs.update(source_format="fastMRI", slice=index, coils=n_coils, fully_sampled=fully_sampled,
                 acceleration=float(w / max(1, mask.any(axis=0).sum())), noise_source=noise_source)
    if ref_name and ground_truth is not None:
        attrs["reference"] = ref_name
    if norm_attr is not None:
        attrs["norm"] = norm_attr
    if max_attr is not None:
        attrs["max"] = max_attr
    if thickness is not None:
        attrs["slice_thickness_mm"] = thickness
    return Measurement(
        y=y, operator=op.to_spec(), noise_sigma=noise_sigma, units="a.u.",
        value_range=value_range_of(ground_truth, max_attr), ground_truth=ground_truth,
        pixel_size=pixel_size or 1.0, pixel_unit="mm" if pixel_size else "px",
        title=f"{path.name} slice {index}", source=path, attrs=attrs,
    )
