"""The volume measurement file: a stack of slice measurements of one forward model.

The measurement file's layout (docs/formats.md) with the data stacked on a leading axis::

    /                          attrs diffrecon_format="volume-measurement", format_version,
                                     software_version, title, units, pixel_size, pixel_unit,
                                     value_range (2,), z_spacing (slice distance in pixels)
    /measurement/y             (Z, *meas_shape) float32 | complex64, attr noise_sigma
    /measurement/slice_index   (Z,) int64: each slice's index in its source (detector row, k-space slice)
    /measurement/ground_truth  optional (Z, C, H, W) in physical units
    /operator                  as in the measurement file: the one forward model of every slice

CT stacks hold one sinogram per detector row, MRI stacks one k-space per slice. Reading checks
every size before anything is read or built and reads only the slices asked for (``rows``).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..io.h5 import atomic_h5, attr_float, check_read, open_readonly, require_dataset, require_group, set_attr
from ..io.measurement_file import (_as_stored, _dataset, build_file_operator, check_format, read_operator_spec,
                                   read_root_attrs, write_operator_into, write_root_attrs)
from ..limits import check_bytes, nbytes
from ..measurement import Measurement
from .reconstruct import check_slices

VOLUME_MEASUREMENT_FORMAT = "volume-measurement"
#: Most slices a volume measurement may hold.
MAX_SLICES = 100_000
#: Per-slice attributes the importers and the demo set; the file keeps them in /measurement/slice_index.
_SLICE_KEYS = ("volume_slice", "detector_row", "slice")
_SLICE_TITLE = re.compile(r"[:,]?\s+(slice|row)\s+\d+.*$")


@dataclass
class VolumeMeasurement:
    """A stack of slice measurements of one forward model, in z order."""

    slices: list[Measurement]
    z_spacing: float = 1.0  # distance between neighbouring slices, in pixels of a slice
    truth: np.ndarray | None = None  # (Z, C, H, W) where known
    source: str = ""


def _slice_index(m: Measurement, z: int) -> int:
    for key in _SLICE_KEYS:
        value = (m.attrs or {}).get(key)
        if isinstance(value, (int, np.integer)):
            return int(value)
    return z


def write_volume_measurement(path: str | os.PathLike, slices: list[Measurement], *, z_spacing: float = 1.0,
                             truth: np.ndarray | None = None) -> Path:
    """Write the stack ``slices`` (one shared operator and noise level) to ``path`` atomically;
    ``truth`` ``(Z, C, H, W)`` (default: the slices' ground truth where every slice has one)."""
    slices = list(slices)
    check_slices(slices)
    if not (np.isfinite(z_spacing) and z_spacing > 0):
        raise InputError(f"z_spacing {z_spacing} is invalid; it must be a positive number of pixels.")
    first, n_z = slices[0], len(slices)
    if n_z > MAX_SLICES:
        raise InputError(f"A volume measurement holds at most {MAX_SLICES} slices (got {n_z}).")
    y0 = np.asarray(first.y)
    for z, m in enumerate(slices[1:], start=2):
        if np.shape(m.y) != y0.shape:
            raise InputError(f"Slice {z} has data of shape {np.shape(m.y)} but slice 1 has {y0.shape}; "
                             "every slice must be measured alike.")
    image_shape = tuple(int(s) for s in first.operator.image_shape)
    check_bytes(nbytes((n_z, *y0.shape), 8), f"A volume of {n_z} slices of shape {y0.shape}", "array")
    if truth is None and all(m.ground_truth is not None for m in slices):
        truth = np.stack([np.asarray(m.ground_truth) for m in slices])
    if truth is not None:
        truth = np.asarray(truth)
        if truth.size != nbytes((n_z, *image_shape), 1) or truth.shape[0] != n_z:
            raise InputError(f"truth has shape {truth.shape}; expected ({n_z}, {', '.join(map(str, image_shape))}), "
                             "one image per slice.")
        truth = truth.reshape(n_z, *image_shape)
    ranges = [m.value_range for m in slices]
    value_range = (min(r[0] for r in ranges), max(r[1] for r in ranges)) if all(ranges) else None
    title = _SLICE_TITLE.sub("", first.title or "") or "volume"
    with atomic_h5(path) as f:
        f.attrs["diffrecon_format"] = VOLUME_MEASUREMENT_FORMAT
        write_root_attrs(f, replace(first, title=title, value_range=value_range))
        f.attrs["z_spacing"] = float(z_spacing)
        g = f.create_group("measurement")
        stack = np.stack([_as_stored(np.asarray(m.y), np.iscomplexobj(y0)) for m in slices])
        _dataset(g, "y", stack).attrs["noise_sigma"] = float(first.noise_sigma)
        g.create_dataset("slice_index", data=np.asarray([_slice_index(m, z) for z, m in enumerate(slices)], np.int64))
        if truth is not None:
            _dataset(g, "ground_truth", _as_stored(truth, np.iscomplexobj(truth))).attrs["units"] = first.units or ""
        for key, value in (first.attrs or {}).items():
            if key not in _SLICE_KEYS:
                set_attr(g.attrs, str(key), value)
        write_operator_into(f, first.operator)
    return Path(path)


def is_volume_measurement(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a readable HDF5 file that says it is a volume measurement (never raises)."""
    try:
        with open_readonly(path) as f:
            return f.attrs.get("diffrecon_format") in (VOLUME_MEASUREMENT_FORMAT, VOLUME_MEASUREMENT_FORMAT.encode())
    except (InputError, OSError):
        return False


def check_rows(rows, count: int, where: str) -> tuple[int, int]:
    """``rows`` (first, end), end excluded as in Python's slices, checked against ``count`` (None: all)."""
    from ..io.importers.stack import parse_range

    if rows is None:
        return 0, count
    found = parse_range(rows, count)
    if found is None:
        raise InputError(f"rows {rows!r} is invalid for {where}; expected (first, end) with 0 <= first < end <= "
                         f"{count}, end excluded.")
    return found


def read_volume_measurement(path: str | os.PathLike, *, rows: tuple[int, int] | None = None,
                            allow_external: bool = False) -> VolumeMeasurement:
    """The stack in ``path`` (slices ``rows = (first, end)`` of it, end excluded; None: all), validated."""
    path = Path(path)
    with open_readonly(path, allow_external=allow_external) as f:
        check_format(f, path, (VOLUME_MEASUREMENT_FORMAT,))
        g = require_group(f, "measurement", path)
        y_ds = require_dataset(f, "measurement/y", path, kinds="fc", whole=False,
                               what="a (slices, *measurement shape) float32 or complex64 stack")
        if y_ds.ndim < 2 or not 1 <= y_ds.shape[0] <= MAX_SLICES:
            raise InputError(f"File {path}: dataset /measurement/y has shape {y_ds.shape}; expected 1 to "
                             f"{MAX_SLICES} slices on its first axis and the measurement's shape after it.")
        n_z = int(y_ds.shape[0])
        a, b = check_rows(rows, n_z, f"file {path} ({n_z} slices)")
        noise_sigma = attr_float(y_ds.attrs, "noise_sigma", path, "/measurement/y", default=np.nan)
        if noise_sigma < 0:
            raise InputError(f"File {path}: attribute noise_sigma of /measurement/y is {noise_sigma}; expected >= 0.")
        z_spacing = attr_float(f.attrs, "z_spacing", path, "the root", default=1.0)
        if z_spacing <= 0:
            raise InputError(f"File {path}: root attribute z_spacing is {z_spacing}; expected a positive number.")
        spec = read_operator_spec(f, path, noise_sigma)
        op = build_file_operator(spec, path)
        if tuple(y_ds.shape[1:]) != tuple(op.meas_shape):
            raise InputError(f"File {path}: dataset /measurement/y has shape {y_ds.shape}, but the {spec.kind} "
                             f"operator measures shape {tuple(op.meas_shape)} per slice.")
        if op.is_complex != (y_ds.dtype.kind == "c"):
            raise InputError(f"File {path}: dataset /measurement/y has dtype {y_ds.dtype}; the {spec.kind} operator "
                             f"expects {'complex64' if op.is_complex else 'float32'}.")
        y = _read_rows(y_ds, a, b, path, np.complex64 if op.is_complex else np.float32)
        index = np.arange(a, b)
        if "slice_index" in g:
            index = _read_rows(require_dataset(g, "slice_index", path, shape=(n_z,), kinds="iu",
                                               what=f"{n_z} integer slice indices"), a, b, path, np.int64)
        truth = None
        if "ground_truth" in g:
            gt = require_dataset(g, "ground_truth", path, shape=(n_z, *op.image_shape),
                                 kinds="fc" if op.image_complex else "f", whole=False,
                                 what=f"one {tuple(op.image_shape)} image per slice")
            truth = _read_rows(gt, a, b, path, np.complex64 if gt.dtype.kind == "c" else np.float32)
        root = read_root_attrs(f, path)
        extra = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in g.attrs.items()}
    title = root.pop("title") or path.name
    slices = [Measurement(y=y[i], operator=spec, noise_sigma=noise_sigma,
                          ground_truth=None if truth is None else truth[i], source=path,
                          attrs=dict(extra, volume_slice=int(index[i])),
                          title=f"{title}: slice {i + 1} of {b - a} (index {int(index[i])})", **root)
              for i in range(b - a)]
    return VolumeMeasurement(slices, z_spacing, truth, str(path))


def _read_rows(ds, a: int, b: int, path: Path, dtype) -> np.ndarray:
    """Slices ``a:b`` of ``ds`` as ``dtype`` after checking their size; NaN or Inf refused."""
    check_read(ds, np.s_[a:b], path, dtype)
    arr = np.asarray(ds[a:b]).astype(dtype, copy=False)
    if arr.dtype.kind in "fc" and not np.isfinite(arr).all():
        raise InputError(f"File {path}: dataset {ds.name} contains NaN or Inf values; all values must be finite.")
    return arr
