"""The measurement file: ``y``, the forward model that made it, its noise level and units.

Layout (documented in docs/formats.md, version :data:`~diffrecon.measurement.FORMAT_VERSION`)::

    /                       attrs diffrecon_format="measurement", format_version, software_version,
                                  title, units, pixel_size, pixel_unit, value_range (2,)
    /measurement/y          (*meas_shape) float32 | complex64, attr noise_sigma
    /measurement/ground_truth   optional (C, H, W) in physical units
    /operator               attrs kind, image_shape (3,), params (JSON of spec.params);
                            one dataset per array parameter (bool masks as uint8, attr is_bool)

A result file carries the same groups and root attributes, so it reads as a measurement too.
"""
from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np

from .. import __version__
from ..errors import InputError, printable
from ..limits import check_bytes, nbytes
from ..measurement import FORMAT_VERSION, Measurement
from ..operators import OPERATORS, OperatorSpec, build_operator
from .h5 import (atomic_h5, attr_bool, attr_float, attr_int, attr_json, attr_str, open_readonly,
                 read_finite, require_dataset, require_group, set_attr)

#: Kinds of file that carry a measurement.
MEASUREMENT_KINDS = ("measurement", "result")
_RESERVED_Y_ATTRS = {"noise_sigma"}
_COMPRESS_ABOVE = 4096  # elements; small arrays stay contiguous and readable by anything


def _dataset(group: h5py.Group, name: str, data: np.ndarray) -> h5py.Dataset:
    data = np.ascontiguousarray(data)
    if data.size > _COMPRESS_ABOVE:
        return group.create_dataset(name, data=data, compression="gzip", compression_opts=4, shuffle=True)
    return group.create_dataset(name, data=data)


def _as_stored(a: np.ndarray, is_complex: bool) -> np.ndarray:
    return np.asarray(a, dtype=np.complex64 if is_complex else np.float32)


# ------------------------------------------------------------------------------ writing
def write_measurement(path: str | os.PathLike, m: Measurement) -> None:
    """Write ``m`` to ``path`` atomically (a temporary file in the same folder, then rename)."""
    with atomic_h5(path) as f:
        f.attrs["diffrecon_format"] = "measurement"
        write_measurement_into(f, m)


def write_measurement_into(f: h5py.File, m: Measurement) -> None:
    """The root attributes and the /measurement and /operator groups of ``m`` into an open file."""
    write_root_attrs(f, m)
    g = f.create_group("measurement")
    y = np.asarray(m.y)
    ds = _dataset(g, "y", _as_stored(y, np.iscomplexobj(y)))
    ds.attrs["noise_sigma"] = float(m.noise_sigma)
    if m.ground_truth is not None:
        gt = np.asarray(m.ground_truth)
        gds = _dataset(g, "ground_truth", _as_stored(gt, np.iscomplexobj(gt)))
        gds.attrs["units"] = m.units or ""
    for key, value in (m.attrs or {}).items():
        set_attr(g.attrs, str(key), value)
    write_operator_into(f, m.operator)


def write_root_attrs(f: h5py.File, m: Measurement) -> None:
    """The root attributes of a file holding ``m`` (format version, title, units, pixel size, value range)."""
    f.attrs["format_version"] = FORMAT_VERSION
    f.attrs["software_version"] = __version__
    f.attrs["title"] = m.title or ""
    f.attrs["units"] = m.units or ""
    f.attrs["pixel_size"] = float(m.pixel_size)
    f.attrs["pixel_unit"] = m.pixel_unit or ""
    if m.value_range is not None:
        f.attrs["value_range"] = np.asarray(m.value_range, dtype=np.float64)


def write_operator_into(f: h5py.File, spec: OperatorSpec) -> None:
    """The /operator group of ``spec``: its kind, image shape, params and arrays."""
    og = f.create_group("operator")
    og.attrs["kind"] = spec.kind
    og.attrs["image_shape"] = np.asarray(spec.image_shape, dtype=np.int64)
    set_attr(og.attrs, "params", dict(spec.params or {}))
    if "params" not in og.attrs:
        og.attrs["params"] = "{}"
    for name, arr in (spec.arrays or {}).items():
        arr = np.asarray(arr)
        if arr.dtype == np.bool_:
            _dataset(og, name, arr.astype(np.uint8)).attrs["is_bool"] = True
        elif arr.dtype.kind in "OUSV":
            raise ValueError(f"operator array {name} has dtype {arr.dtype}; only numeric arrays are stored")
        else:
            _dataset(og, name, arr)


# ------------------------------------------------------------------------------ reading
def read_measurement(path: str | os.PathLike, *, allow_external: bool = False) -> Measurement:
    """The measurement in ``path`` (a measurement or a result file), validated before use."""
    path = Path(path)
    with open_readonly(path, allow_external=allow_external) as f:
        check_format(f, path, MEASUREMENT_KINDS)
        return read_measurement_from(f, path)


def check_format(f: h5py.File, path: Path, accepted: tuple[str, ...]) -> str:
    """The file's ``diffrecon_format`` after checking it is one of ``accepted`` and not too new."""
    want = " or ".join(repr(a) for a in accepted)
    if "diffrecon_format" not in f.attrs:
        raise InputError(f"File {path} is not a diffrecon file (root attribute diffrecon_format is missing; expected {want}).")
    kind = attr_str(f.attrs, "diffrecon_format")
    if kind not in accepted:
        raise InputError(f"File {path} has diffrecon_format={kind!r}; expected {want}.")
    version = attr_int(f.attrs, "format_version", path, "the root", minimum=1)
    if version > FORMAT_VERSION:
        raise InputError(f"File {path} has format_version {version}, newer than this diffrecon reads "
                         f"(<= {FORMAT_VERSION}); update diffrecon to open it.")
    return kind


def read_operator_spec(f: h5py.File, path: Path, noise_sigma: float) -> OperatorSpec:
    og = require_group(f, "operator", path)
    kind = attr_str(og.attrs, "kind")
    if kind not in OPERATORS:
        raise InputError(f"File {path}: attribute kind of /operator is {kind!r}; "
                         f"valid kinds are {', '.join(sorted(OPERATORS))}.")
    raw_shape = np.asarray(og.attrs.get("image_shape", []))
    if raw_shape.shape != (3,) or raw_shape.dtype.kind not in "iu" or (raw_shape <= 0).any():
        raise InputError(f"File {path}: attribute image_shape of /operator is {raw_shape.tolist()}; "
                         "expected three positive integers (C, H, W).")
    image_shape = tuple(int(s) for s in raw_shape)
    # Building the operator allocates image-sized buffers, so the claim is checked before that.
    check_bytes(nbytes(image_shape, 4), f"File {path}: attribute image_shape {image_shape} of /operator (one "
                "float32 image)", "array")
    params = attr_json(og.attrs, "params", path, "/operator", default={})
    if not isinstance(params, dict):
        raise InputError(f"File {path}: attribute params of /operator is not a JSON object.")
    arrays = {}
    for name in og:
        ds = require_dataset(og, name, path, kinds="fciub", what="a numeric array")
        arr = read_finite(ds, path)
        is_bool = attr_bool(ds.attrs, "is_bool", path, ds.name, default=False)
        arrays[name] = arr.astype(bool) if is_bool else arr
    return OperatorSpec(kind, image_shape, params, arrays, noise_sigma)


def build_file_operator(spec: OperatorSpec, path: Path):
    """The forward model ``spec`` read from ``path`` describes; one InputError naming the file if it cannot be built."""
    try:
        return build_operator(spec)
    except InputError as err:
        raise InputError(f"File {path}: {err}") from None
    except (TypeError, ValueError, KeyError, IndexError, RuntimeError, OverflowError, RecursionError) as err:
        raise InputError(f"File {path}: group /operator does not describe a valid {spec.kind} "
                         f"forward model ({printable(str(err)[:200])}).") from None


def read_measurement_from(f: h5py.File, path: Path) -> Measurement:
    """Validate and read the measurement part of an open diffrecon file."""
    require_group(f, "measurement", path)
    y_ds = require_dataset(f, "measurement/y", path, kinds="fc")
    noise_sigma = attr_float(y_ds.attrs, "noise_sigma", path, "/measurement/y", default=np.nan)
    if noise_sigma < 0:
        raise InputError(f"File {path}: attribute noise_sigma of /measurement/y is {noise_sigma}; expected >= 0.")
    spec = read_operator_spec(f, path, noise_sigma)
    op = build_file_operator(spec, path)
    meas_shape = tuple(op.meas_shape)
    if tuple(y_ds.shape) != meas_shape:
        raise InputError(f"File {path}: dataset /measurement/y has shape {y_ds.shape}, but the {spec.kind} "
                         f"operator measures shape {meas_shape}.")
    if op.is_complex != (y_ds.dtype.kind == "c"):
        want = "complex64" if op.is_complex else "float32"
        raise InputError(f"File {path}: dataset /measurement/y has dtype {y_ds.dtype}; the {spec.kind} "
                         f"operator expects {want}.")
    y = read_finite(y_ds, path, np.complex64 if op.is_complex else np.float32)

    ground_truth = None
    if "ground_truth" in f["measurement"]:
        kinds = "fc" if op.image_complex else "f"
        gt_ds = require_dataset(f, "measurement/ground_truth", path, shape=op.image_shape, kinds=kinds,
                                what=f"a (C, H, W) = {op.image_shape} image")
        ground_truth = read_finite(gt_ds, path, np.complex64 if gt_ds.dtype.kind == "c" else np.float32)

    extra = {k: (v.item() if isinstance(v, np.generic) else v)
             for k, v in f["measurement"].attrs.items() if k not in _RESERVED_Y_ATTRS}
    return Measurement(y=y, operator=spec, noise_sigma=noise_sigma, ground_truth=ground_truth, source=path,
                       attrs=extra, **read_root_attrs(f, path))


def read_root_attrs(f: h5py.File, path: Path) -> dict:
    """The root attributes :func:`write_root_attrs` writes, checked: units, value_range, pixel_size,
    pixel_unit and title, as Measurement's fields."""
    value_range = None
    if "value_range" in f.attrs:
        vr = np.asarray(f.attrs["value_range"])
        if vr.shape != (2,) or vr.dtype.kind not in "fiu" or not np.isfinite(vr).all() or vr[0] >= vr[1]:
            raise InputError(f"File {path}: root attribute value_range is {vr.tolist()}; expected two finite numbers low < high.")
        value_range = (float(vr[0]), float(vr[1]))
    pixel_size = attr_float(f.attrs, "pixel_size", path, "the root", default=1.0)
    if pixel_size <= 0:
        raise InputError(f"File {path}: root attribute pixel_size is {pixel_size}; expected a positive number.")
    return dict(units=attr_str(f.attrs, "units", "a.u."), value_range=value_range, pixel_size=pixel_size,
                pixel_unit=attr_str(f.attrs, "pixel_unit", "px"), title=attr_str(f.attrs, "title"))
