"""DICOM images (pydicom, optional extra ``dicom``): one file, a multi-frame file, or a folder of
slices of one series, as a ground truth in physical units to simulate from.

A folder's slices are ordered by their position along the slice normal (ImagePositionPatient
projected on the cross product of the ImageOrientationPatient directions), else by
SliceLocation, else by InstanceNumber. Headers are read without pixels first; sizes are checked
against :mod:`diffrecon.limits` before the one slice needed is decoded. Links inside a folder
are not followed unless ``allow_external``. Units: see :mod:`.physical`.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ...errors import InputError, printable
from ...messages import quiet_libraries
from ._common import pick_index
from .physical_base import (MAX_FILES, PhysicalImage, check_modality, check_mu_water, check_plane, physical_slice,
                       spacing_mm)

_MAGIC_AT, _MAGIC = 128, b"DICM"
_HEADER_TAGS = ("Rows", "Columns", "SamplesPerPixel", "NumberOfFrames", "BitsAllocated", "Modality",
                "SeriesInstanceUID", "ImagePositionPatient", "ImageOrientationPatient", "SliceLocation",
                "InstanceNumber", "PixelSpacing", "RescaleSlope", "RescaleIntercept", "RescaleType")


def _pydicom():
    try:
        import pydicom
    except ImportError as err:
        raise InputError(f"DICOM files need the pydicom package ({err}); install diffrecon[dicom].") from None
    return pydicom


def is_dicom_file(path: Path) -> bool:
    """A DICOM Part 10 file: ``DICM`` after the 128-byte preamble."""
    try:
        if path.is_symlink() or not path.is_file():
            return False
        with path.open("rb") as f:
            f.seek(_MAGIC_AT)
            return f.read(4) == _MAGIC
    except OSError:
        return False


def _members(folder: Path, allow_external: bool) -> list[Path]:
    """The DICOM files of ``folder`` (hidden files skipped); a link is refused unless allowed."""
    found = []
    with os.scandir(folder) as it:
        for i, entry in enumerate(it):
            if i >= 4 * MAX_FILES:
                raise InputError(f"Folder {folder} holds more than {4 * MAX_FILES} entries; give a folder of one "
                                 f"series (at most {MAX_FILES} slices).")
            if entry.name.startswith("."):
                continue
            path = Path(entry.path)
            if entry.is_symlink():
                if not allow_external:
                    raise InputError(f"Folder {folder} holds the link {entry.name}, which is not followed; copy the "
                                     "file into the folder (or allow external files).")
                path = path.resolve()
            if is_dicom_file(path):
                found.append(path)
    if len(found) > MAX_FILES:
        raise InputError(f"Folder {folder} holds {len(found)} DICOM files; at most {MAX_FILES} slices are read.")
    return sorted(found)


def is_dicom(path: Path) -> bool:
    """A DICOM file, or a folder holding DICOM files (the first few entries are looked at)."""
    if path.is_dir() and not path.is_symlink():
        try:
            with os.scandir(path) as it:
                for i, entry in enumerate(it):
                    if i >= 32:
                        break
                    if not entry.name.startswith(".") and is_dicom_file(Path(entry.path)):
                        return True
        except OSError:
            return False
        return False
    return is_dicom_file(path)


def _header(path: Path):
    pydicom = _pydicom()
    try:
        with quiet_libraries("pydicom"):
            return pydicom.dcmread(path, stop_before_pixels=True, specific_tags=list(_HEADER_TAGS))
    except Exception as err:  # noqa: BLE001 - pydicom raises many types for damaged headers
        raise InputError(f"File {path} cannot be read as DICOM; it may be truncated or damaged "
                         f"({printable(err)[:160]}).") from None


def _number(ds, key: str, default, path: Path) -> float:
    value = ds.get(key, default)
    try:
        out = float(value if value is not None else default)
    except (TypeError, ValueError):
        out = float("nan")
    if not np.isfinite(out):
        raise InputError(f"File {path}: DICOM {key} is {printable(value)[:40]!s}; expected a finite number.")
    return out


def _vector(ds, key: str, n: int) -> np.ndarray | None:
    value = ds.get(key)
    try:
        v = np.asarray([float(x) for x in value], np.float64)
    except (TypeError, ValueError):
        return None
    return v if v.shape == (n,) and np.isfinite(v).all() else None


def _declared(ds, path: Path) -> tuple[int, int, int, int]:
    """Frames, rows, columns, samples, checked against the budgets before the pixels are read."""
    dims = []
    for key, default in (("NumberOfFrames", 1), ("Rows", None), ("Columns", None), ("SamplesPerPixel", 1)):
        value = ds.get(key, default)
        try:
            dims.append(int(value))
        except (TypeError, ValueError):
            raise InputError(f"File {path} lacks a valid DICOM {key} ({printable(value)[:40]}); it holds no image "
                             "pixels to read.") from None
    frames, rows, cols, samples = dims
    if samples not in (1, 3) or frames < 1:
        raise InputError(f"File {path} declares {samples} samples per pixel and {frames} frames; expected 1 "
                         "(grey) or 3 (colour) samples and at least one frame.")
    bits = _number(ds, "BitsAllocated", 16, path)
    check_plane((rows, cols, samples * frames), int(bits) // 8 or 1, path, "DICOM pixel data")
    return frames, rows, cols, samples


def _pixels(path: Path, frame: int, frames: int) -> np.ndarray:
    pydicom = _pydicom()
    try:
        with quiet_libraries("pydicom"):
            ds = pydicom.dcmread(path)
            arr = ds.pixel_array
    except Exception as err:  # noqa: BLE001 - truncated data, unknown compression, bad lengths
        raise InputError(f"File {path}: its DICOM pixel data cannot be decoded; it may be truncated, damaged "
                         f"or compressed without a decoder installed ({printable(err)[:160]}).") from None
    arr = np.asarray(arr)
    if frames > 1:
        arr = arr[frame]
    if arr.ndim == 3:  # colour, (rows, columns, 3)
        arr = np.moveaxis(arr, -1, 0)
    return arr


def _pixel_mm(ds, path: Path) -> float | None:
    spacing = _vector(ds, "PixelSpacing", 2)
    if spacing is None:
        return None
    return spacing_mm(float(spacing[0]), float(spacing[1]), path, "PixelSpacing")


def _is_ct(ds, modality: str) -> bool:
    if modality != "auto":
        return modality == "ct"
    return str(ds.get("Modality", "")).upper() == "CT" and str(ds.get("RescaleType", "HU") or "HU").upper() == "HU"


def _to_physical(ds, arr: np.ndarray, path: Path, modality: str, mu_water: float, attrs: dict) -> PhysicalImage:
    slope = _number(ds, "RescaleSlope", 1.0, path)
    intercept = _number(ds, "RescaleIntercept", 0.0, path)
    values = arr.astype(np.float64) * slope + intercept
    if values.ndim == 3 and _is_ct(ds, modality):
        raise InputError(f"File {path} is a colour image; a CT slice has one sample per pixel.")
    attrs = dict(attrs, source_format="dicom", modality=str(ds.get("Modality", "")), rescale_slope=slope,
                 rescale_intercept=intercept)
    img = physical_slice(values if values.ndim == 2 else values[0], path, ct=_is_ct(ds, modality),
                         mu_water=mu_water, pixel_mm=_pixel_mm(ds, path), attrs=attrs)
    if values.ndim == 3:  # colour stays a.u. on mm pixels
        img.image = values.astype(np.float32)
    return img


def _order(headers: list, files: list[Path], folder: Path) -> tuple[list[int], np.ndarray, str]:
    """The slice order of a series and each slice's position in mm along its axis."""
    first = _vector(headers[0], "ImageOrientationPatient", 6)
    positions = [_vector(h, "ImagePositionPatient", 3) for h in headers]
    if first is not None and all(p is not None for p in positions):
        normal = np.cross(first[:3], first[3:])
        key, how = np.array([float(p @ normal) for p in positions]), "ImagePositionPatient"
    elif all(h.get("SliceLocation") is not None for h in headers):
        key, how = np.array([_number(h, "SliceLocation", 0, f) for h, f in zip(headers, files)]), "SliceLocation"
    elif all(h.get("InstanceNumber") is not None for h in headers):
        key, how = np.array([_number(h, "InstanceNumber", 0, f) for h, f in zip(headers, files)]), "InstanceNumber"
    else:
        raise InputError(f"Folder {folder}: its slices carry neither ImagePositionPatient, SliceLocation nor "
                         "InstanceNumber, so their order is unknown.")
    order = [int(i) for i in np.argsort(key, kind="stable")]
    ordered = key[order]
    same = np.flatnonzero(np.diff(ordered) == 0)
    if same.size:
        a, b = files[order[same[0]]].name, files[order[same[0] + 1]].name
        raise InputError(f"Folder {folder}: slices {a} and {b} have the same {how} ({ordered[same[0]]:g}); "
                         "give a folder holding one series with one slice per position.")
    return order, ordered, how


def read_dicom_folder(folder: Path, slice=None, *, modality="auto", mu_water=None,
                      allow_external: bool = False) -> PhysicalImage:
    """Slice ``slice`` (None: the middle one, in position order) of the series in ``folder``."""
    files = _members(folder, allow_external)
    if not files:
        raise InputError(f"Folder {folder} holds no DICOM files (files with DICM after a 128-byte preamble).")
    headers = [_header(f) for f in files]
    pairs = [(h, f) for h, f in zip(headers, files) if h.get("Rows") is not None]  # DICOMDIR, reports: no pixels
    if not pairs:
        raise InputError(f"Folder {folder} holds DICOM files but none with image pixels.")
    headers, files = [p[0] for p in pairs], [p[1] for p in pairs]
    series = sorted({str(h.get("SeriesInstanceUID", "")) for h in headers})
    if len(series) > 1:
        raise InputError(f"Folder {folder} holds {len(series)} series ({', '.join(s[-12:] for s in series[:3])}...); "
                         "give a folder holding one series.")
    shapes = {_declared(h, f)[1:] for h, f in zip(headers, files)}
    if len(shapes) > 1 or any(_declared(h, f)[0] != 1 for h, f in zip(headers, files)):
        raise InputError(f"Folder {folder}: its slices differ in size ({sorted(shapes)[:3]}) or hold several frames; "
                         "a series of single-frame slices of one size is expected.")
    order, positions, how = _order(headers, files, folder)
    i = pick_index(slice, len(files), f"{len(files)} slices", folder)
    k = order[i]
    gaps = np.diff(positions)
    attrs = {"slice": i, "slices": len(files), "slice_order": how, "slice_position": float(positions[i]),
             "slice_spacing_mm": float(np.median(gaps)) if gaps.size else 0.0, "slice_file": files[k].name}
    arr = _pixels(files[k], 0, 1)
    return _to_physical(_header(files[k]), arr, files[k], check_modality(modality, folder),
                        check_mu_water(mu_water, folder), attrs)


def read_dicom_file(path: Path, slice=None, *, modality="auto", mu_water=None) -> PhysicalImage:
    """Frame ``slice`` (None: the middle one) of one DICOM file."""
    ds = _header(path)
    frames, _, _, _ = _declared(ds, path)
    i = pick_index(slice, frames, f"{frames} frames", path)
    return _to_physical(ds, _pixels(path, i, frames), path, check_modality(modality, path),
                        check_mu_water(mu_water, path), {"slice": i, "slices": frames})


def read_dicom(path: str | os.PathLike, slice=None, *, modality="auto", mu_water=None,
               allow_external: bool = False) -> PhysicalImage:
    """A DICOM file or a folder of one series' slices as a :class:`PhysicalImage`."""
    path = Path(path)
    if path.is_dir():
        return read_dicom_folder(path, slice, modality=modality, mu_water=mu_water, allow_external=allow_external)
    if not path.is_file():
        raise InputError(f"File {path} does not exist; expected a DICOM file or a folder of DICOM slices.")
    if not is_dicom_file(path) and not path.is_symlink():
        raise InputError(f"File {path} is not a DICOM file; expected DICM after a 128-byte preamble.")
    return read_dicom_file(path, slice, modality=modality, mu_water=mu_water)
