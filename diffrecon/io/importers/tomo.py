"""Import one sinogram of parallel-beam tomography: APS Data Exchange and NeXus NXtomo.

APS Data Exchange (De Carlo et al., "Scientific data exchange: a schema for HDF5-based storage of
raw and analyzed data", J. Synchrotron Rad. 21 (2014) 1224): ``/exchange/data`` projections
``(angles, rows, columns)``, ``/exchange/data_white`` flat fields and ``/exchange/data_dark``
dark fields (same rows and columns), ``/exchange/theta`` rotation angles (degrees unless its
``units`` attribute says radians).

NeXus NXtomo (application definition, https://manual.nexusformat.org/classes/applications/NXtomo.html):
an ``NXentry`` whose ``definition`` is ``NXtomo`` holding ``instrument/detector/data``
``(frames, rows, columns)``, ``instrument/detector/image_key`` per frame (0 projection,
1 flat field, 2 dark field, 3 invalid) and ``sample/rotation_angle`` per frame (NX_ANGLE,
degrees unless ``units`` says otherwise).

Both become the same measurement: flat/dark correction ``T = (P - D) / (F - D)`` with the mean
flat and dark, non-positive transmissions clipped to a small positive floor, the line integrals
``y = -log T`` of one detector row, the detector rebinned (bin averaging by linear interpolation
of the cumulative sum) to ``size`` bins when asked, and a ``ParallelBeamCT`` forward model with
those angles whose image is ``n_detector x n_detector`` pixels, one pixel per detector bin.
Only the chosen detector row is read, never the whole volume; ``import_dxchange_rows`` and
``import_nxtomo_rows`` read a range of rows, one measurement per row with one noise level (the
median of the rows' estimates), the slices of a volume measurement.
"""
from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np

from ...errors import InputError
from ...measurement import Measurement
from ..h5 import attr_str, check_read, open_readonly, require_dataset
from .noise import rebinned_noise, tomography_noise
from ...operators import ParallelBeamCT
from ._common import check_size_arg, finite_or_fail, pick_index
from .stack import check_range, shared_noise

#: Transmissions below this are clipped before the logarithm (photon starvation, bad pixels).
MIN_TRANSMISSION = 1e-6
_MAX_ANGLES = 100_000
_MAX_WEIGHTS = 400_000_000
_ALL = np.s_[:]  # the parameter named ``slice`` (the CLI's word) hides the builtin below


def _read(ds: h5py.Dataset, index, path: Path) -> np.ndarray:
    check_read(ds, index, path, np.float64)
    try:
        arr = np.asarray(ds[index], dtype=np.float64)
    except (OSError, RuntimeError, ValueError, KeyError, TypeError) as err:
        raise InputError(f"File {path}: dataset {ds.name} cannot be read; the file may be truncated or "
                         f"damaged ({err}).") from None
    return finite_or_fail(arr, path, ds.name)


def _frames(f: h5py.Group, name: str, path: Path) -> h5py.Dataset:
    return require_dataset(f, name, path, ndim=3, kinds="fiu", whole=False,
                           what="a numeric (frames, rows, columns) stack of detector images")


def angles_in_degrees(values: np.ndarray, units: str, path: Path, name: str) -> np.ndarray:
    """Rotation angles converted from the dataset's ``units`` (degrees when absent)."""
    u = units.strip().lower()
    if u in ("", "deg", "degree", "degrees"):
        return values.astype(np.float64)
    if u in ("rad", "radian", "radians"):
        return np.degrees(values.astype(np.float64))
    raise InputError(f"File {path}: dataset {name} has units {units!r}; expected degrees or radians.")


def rebin(row: np.ndarray, n_out: int) -> np.ndarray:
    """Resample the last axis to ``n_out`` bins preserving bin averages (area-weighted)."""
    n_in = row.shape[-1]
    if n_in == n_out:
        return row
    edges_in = np.arange(n_in + 1, dtype=np.float64)
    cum = np.concatenate([np.zeros(row.shape[:-1] + (1,)), np.cumsum(row, axis=-1)], axis=-1)
    edges_out = np.linspace(0.0, n_in, n_out + 1)
    cum_out = np.stack([np.interp(edges_out, edges_in, c) for c in cum.reshape(-1, n_in + 1)])
    return (np.diff(cum_out, axis=-1) * (n_out / n_in)).reshape(row.shape[:-1] + (n_out,))


def sinogram_from_counts(proj: np.ndarray, flat: np.ndarray | None, dark: np.ndarray | None) -> np.ndarray:
    """``-log((P - D) / (F - D))`` with non-positive transmissions clipped (Beer-Lambert law)."""
    dark = 0.0 if dark is None else dark
    if flat is None:
        # Without flat fields the brightest value per detector pixel stands in for the beam.
        flat = np.max(proj, axis=0)
    transmission = (proj - dark) / np.maximum(flat - dark, MIN_TRANSMISSION)
    return -np.log(np.clip(transmission, MIN_TRANSMISSION, None))


def _build(sino: np.ndarray, angles_deg: np.ndarray, size: int | None, path: Path, row: int,
           attrs: dict, fmt: str, noise: tuple[float, str] = (0.0, "")) -> Measurement:
    if sino.shape[0] != angles_deg.shape[0]:
        raise InputError(f"File {path}: {sino.shape[0]} projections but {angles_deg.shape[0]} angles; "
                         "there must be one angle per projection.")
    if sino.shape[0] < 2:
        raise InputError(f"File {path}: only {sino.shape[0]} projection; a sinogram needs at least 2 angles.")
    n_det = size or sino.shape[1]
    # Joseph's system matrix holds about 2 * n_det weights per ray; refuse sizes it cannot hold.
    if 2 * n_det * n_det * sino.shape[0] > _MAX_WEIGHTS:
        raise InputError(f"File {path}: {sino.shape[0]} angles x {n_det} detector bins make a forward model "
                         f"too large to build; pass a smaller size (e.g. size=256).")
    noise_sigma = rebinned_noise(noise[0], sino.shape[1], n_det)
    sino = rebin(sino, n_det).astype(np.float32)
    op = ParallelBeamCT((1, n_det, n_det), angles_deg.astype(np.float32), n_detectors=n_det, noise_sigma=noise_sigma)
    y = sino[None]
    attrs = dict(attrs, source_format=fmt, detector_row=row, detector_binning=float(attrs.get("columns", n_det)) / n_det,
                 noise_source=noise[1])
    return Measurement(
        y=y, operator=op.to_spec(), noise_sigma=noise_sigma, units="1/px", value_range=None,
        ground_truth=None, pixel_size=1.0, pixel_unit="px",
        title=f"{path.name} row {row}", source=path, attrs=attrs,
    )


def import_dxchange(path: str | os.PathLike, slice: int | None = None, size: int | None = None, *,
                    allow_external: bool = False) -> Measurement:
    """Detector row ``slice`` (None: the middle) of an APS Data Exchange file as a CT measurement."""
    return _dxchange(Path(path), slice, None, size, allow_external)[0]


def import_dxchange_rows(path: str | os.PathLike, rows: tuple[int, int], size: int | None = None, *,
                         allow_external: bool = False) -> list[Measurement]:
    """Detector rows ``first .. end - 1`` of an APS Data Exchange file, one CT measurement per row
    with one forward model and one noise level (a volume measurement's slices)."""
    return shared_noise(_dxchange(Path(path), None, rows, size, allow_external))


def _dxchange(path: Path, slice, rows, size, allow_external: bool) -> list[Measurement]:
    size = check_size_arg(size, path)
    with open_readonly(path, allow_external=allow_external) as f:
        data = _frames(f, "exchange/data", path)
        n_ang, n_rows, cols = data.shape
        if not 2 <= n_ang <= _MAX_ANGLES or cols < 8:
            raise InputError(f"File {path}: dataset /exchange/data has shape {data.shape}; expected 2 to "
                             f"{_MAX_ANGLES} angles and at least 8 detector columns.")
        first, end = _row_range(slice, rows, n_rows, "the detector rows of /exchange/data", path)
        fields = {}
        for key in ("data_white", "data_dark"):
            if f"exchange/{key}" in f:
                ds = _frames(f, f"exchange/{key}", path)
                if ds.shape[1:] != (n_rows, cols) or ds.shape[0] < 1:
                    raise InputError(f"File {path}: dataset /exchange/{key} has shape {ds.shape}; expected "
                                     f"(n, {n_rows}, {cols}) matching /exchange/data.")
                fields[key] = _read(ds, (_ALL, np.s_[first:end]), path)
        proj = _read(data, (_ALL, np.s_[first:end]), path)
        attrs = {"columns": cols}
        if "exchange/theta" in f:
            th = require_dataset(f, "exchange/theta", path, shape=(n_ang,), kinds="fiu",
                                 what=f"{n_ang} rotation angles, one per projection")
            angles = angles_in_degrees(_read(th, (), path), attr_str(th.attrs, "units"), path, th.name)
        else:
            # tomopy's convention for files without angles: evenly over a half turn.
            angles = np.linspace(0.0, 180.0, n_ang, endpoint=False)
            attrs["theta_assumed"] = "evenly spaced over [0, 180) degrees"
    flats, darks = fields.get("data_white"), fields.get("data_dark")
    return [_from_counts(proj[:, r], None if flats is None else flats[:, r], None if darks is None else darks[:, r],
                         angles, size, path, first + r, attrs, "Data Exchange") for r in range(end - first)]


def _row_range(slice, rows, count: int, what: str, path: Path) -> tuple[int, int]:
    """(first, end) of one row ``slice`` (None: the middle) or of the range ``rows``."""
    if rows is None:
        row = pick_index(slice, count, what, path)
        return row, row + 1
    return check_range(rows, count, what, path)


def _find_nxtomo(f: h5py.File, path: Path) -> h5py.Group:
    candidates = []
    for name in f:
        obj = f.get(name)
        if isinstance(obj, h5py.Group) and attr_str(obj.attrs, "NX_class") == "NXentry":
            definition = obj.get("definition")
            text = ""
            if isinstance(definition, h5py.Dataset) and definition.dtype.kind in "SOU" and definition.size == 1:
                raw = definition[()]
                raw = raw.reshape(-1)[0] if isinstance(raw, np.ndarray) else raw
                text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
            candidates.append((text.strip() != "NXtomo", name, obj))
    candidates.sort(key=lambda c: (c[0], c[1]))
    for _, _, obj in candidates:
        if isinstance(obj.get("instrument/detector/data"), h5py.Dataset):
            return obj
    raise InputError(f"File {path} has no NXentry (NXtomo) with instrument/detector/data; expected a NeXus "
                     "NXtomo file.")


def import_nxtomo(path: str | os.PathLike, slice: int | None = None, size: int | None = None, *,
                  allow_external: bool = False) -> Measurement:
    """Detector row ``slice`` (None: the middle) of a NeXus NXtomo file as a CT measurement."""
    return _nxtomo(Path(path), slice, None, size, allow_external)[0]


def import_nxtomo_rows(path: str | os.PathLike, rows: tuple[int, int], size: int | None = None, *,
                       allow_external: bool = False) -> list[Measurement]:
    """Detector rows ``first .. end - 1`` of a NeXus NXtomo file, one CT measurement per row with
    one forward model and one noise level (a volume measurement's slices)."""
    return shared_noise(_nxtomo(Path(path), None, rows, size, allow_external))


def _nxtomo(path: Path, slice, rows, size, allow_external: bool) -> list[Measurement]:
    size = check_size_arg(size, path)
    with open_readonly(path, allow_external=allow_external) as f:
        entry = _find_nxtomo(f, path)
        data = _frames(entry, "instrument/detector/data", path)
        n_frames, n_rows, cols = data.shape
        if cols < 8 or n_frames > 4 * _MAX_ANGLES:
            raise InputError(f"File {path}: dataset {data.name} has shape {data.shape}; expected at least 8 "
                             "detector columns and a plausible number of frames.")
        key_ds = require_dataset(entry, "instrument/detector/image_key", path, shape=(n_frames,), kinds="iu",
                                 what=f"{n_frames} integer image keys (0 projection, 1 flat, 2 dark)")
        angle_ds = require_dataset(entry, "sample/rotation_angle", path, shape=(n_frames,), kinds="fiu",
                                   what=f"{n_frames} rotation angles, one per frame")
        keys = _read(key_ds, (), path).astype(np.int64)
        if not np.isin(keys, (0, 1, 2, 3)).all():
            raise InputError(f"File {path}: dataset {key_ds.name} has values {np.unique(keys)[:6].tolist()}; "
                             "valid image keys are 0 (projection), 1 (flat), 2 (dark) and 3 (invalid).")
        first, end = _row_range(slice, rows, n_rows, f"the detector rows of {data.name}", path)
        angles_all = angles_in_degrees(_read(angle_ds, (), path), attr_str(angle_ds.attrs, "units"),
                                       path, angle_ds.name)
        counts = _read(data, (_ALL, np.s_[first:end]), path)
    out = []
    for r in range(end - first):
        row = counts[:, r]
        flats = row[keys == 1] if (keys == 1).any() else None
        darks = row[keys == 2] if (keys == 2).any() else None
        out.append(_from_counts(row[keys == 0], flats, darks, angles_all[keys == 0], size, path, first + r,
                                {"columns": cols}, "NXtomo"))
    return out


def _from_counts(proj, flats, darks, angles, size, path: Path, row: int, attrs: dict, fmt: str) -> Measurement:
    """Flat/dark frames ``(n, columns)`` (or None) to the sinogram and its noise level, then the measurement."""
    flat = None if flats is None else flats.mean(axis=0)
    dark = None if darks is None else darks.mean(axis=0)
    if not len(proj):
        return _build(proj, angles, size, path, row, attrs, fmt)
    sino = sinogram_from_counts(proj, flat, dark)
    return _build(sino, angles, size, path, row, attrs, fmt, tomography_noise(sino, flats, dark))
