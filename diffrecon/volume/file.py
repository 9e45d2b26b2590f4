"""A volume result as an HDF5 file, written atomically, and read back with every part checked.

Layout: datasets ``mean`` and ``std`` ``(Z, C, H, W)`` float32 in the slices' physical units,
``slice_psnr`` ``(Z,)`` where the slices had ground truth; attributes ``format``
(``diffrecon-volume``), ``units``, ``n_samples``, ``complete``, the geometry ``z_spacing``,
``pixel_size`` and ``pixel_unit`` (the distance between slices and the pixel pitch, both in
``pixel_unit``), and ``metrics`` and ``provenance`` as JSON text.

The geometry travels in the result's provenance (keys ``z_spacing``, ``pixel_size``,
``pixel_unit``; :func:`with_geometry` sets them, :func:`volume_geometry` reads them with the
defaults 1, 1, px), so a result read back exports with the spacing it was written with.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path
from typing import NamedTuple

import h5py
import numpy as np

from ..errors import InputError
from ..io.atomic import atomic_write
from .reconstruct import VolumeResult

VOLUME_FORMAT = "diffrecon-volume"


class Geometry(NamedTuple):
    """Distance between slices and pixel pitch, both in ``pixel_unit``."""

    z_spacing: float = 1.0
    pixel_size: float = 1.0
    pixel_unit: str = "px"


def volume_geometry(result: VolumeResult) -> Geometry:
    """The geometry ``result`` records in its provenance (defaults: 1, 1, px)."""
    p, d = result.provenance or {}, Geometry()
    return Geometry(float(p.get("z_spacing", d.z_spacing)), float(p.get("pixel_size", d.pixel_size)),
                    str(p.get("pixel_unit", d.pixel_unit)))


def with_geometry(result: VolumeResult, *, z_spacing: float | None = None, pixel_size: float | None = None,
                  pixel_unit: str | None = None) -> VolumeResult:
    """A copy of ``result`` whose provenance records the given geometry (the others kept)."""
    old = volume_geometry(result)
    new = Geometry(old.z_spacing if z_spacing is None else float(z_spacing),
                   old.pixel_size if pixel_size is None else float(pixel_size),
                   old.pixel_unit if pixel_unit is None else str(pixel_unit))
    for name, value in (("z_spacing", new.z_spacing), ("pixel_size", new.pixel_size)):
        if not (math.isfinite(value) and value > 0):
            raise InputError(f"Volume {name} {value} is invalid; it must be a positive number of {new.pixel_unit}.")
    return dataclasses.replace(result, provenance={**(result.provenance or {}), **new._asdict()})


def write_volume(path: str | os.PathLike, result: VolumeResult) -> Path:
    geometry = volume_geometry(result)

    def write(tmp: Path) -> None:
        with h5py.File(tmp, "w") as f:
            f.attrs.update(format=VOLUME_FORMAT, units=result.units, n_samples=result.n_samples,
                           complete=bool(result.complete), metrics=json.dumps(result.metrics),
                           provenance=json.dumps(result.provenance, default=str), **geometry._asdict())
            f.create_dataset("mean", data=np.asarray(result.mean, np.float32))
            f.create_dataset("std", data=np.asarray(result.std, np.float32))
            if result.slice_psnr is not None:
                f.create_dataset("slice_psnr", data=np.asarray(result.slice_psnr, np.float64))

    return atomic_write(path, write)


def is_volume_result(path: str | os.PathLike) -> bool:
    """True when ``path`` is an HDF5 file whose root says it is a volume result (nothing else is read)."""
    from ..io.h5 import attr_str

    path = Path(path)
    try:
        if not (path.is_file() and h5py.is_hdf5(path)):
            return False
        with h5py.File(path, "r") as f:
            return attr_str(f.attrs, "format") == VOLUME_FORMAT
    except (OSError, RuntimeError, ValueError, KeyError):
        return False


def read_volume(path: str | os.PathLike) -> VolumeResult:
    """The :class:`VolumeResult` of a file :func:`write_volume` wrote. External links are refused,
    every dataset's rank, shape and size is checked before it is read, and a malformed file is one
    InputError sentence naming the file, the part and what is valid."""
    from ..io.h5 import attr_bool, attr_float, attr_int, attr_json, attr_str, open_readonly, read_finite, \
        require_dataset

    path = Path(path)
    with open_readonly(path) as f:
        fmt = attr_str(f.attrs, "format")
        if fmt != VOLUME_FORMAT:
            raise InputError(f"File {path} is no diffrecon volume result (its format attribute is {fmt!r}, "
                             f"expected {VOLUME_FORMAT!r}); diffrecon reconstruct-volume and the window write them.")
        mean_ds = require_dataset(f, "mean", path, ndim=4, kinds="f", what="a float (Z, C, H, W) array")
        std_ds = require_dataset(f, "std", path, shape=mean_ds.shape, kinds="f",
                                 what=f"a float array of the mean's shape {mean_ds.shape}")
        z = mean_ds.shape[0]
        if min(mean_ds.shape) < 1:
            raise InputError(f"File {path}: dataset /mean has shape {mean_ds.shape}; a volume needs at least one "
                             "slice, channel, row and column.")
        where = "the file's root"
        units = attr_str(f.attrs, "units", "a.u.")
        n_samples = attr_int(f.attrs, "n_samples", path, where, minimum=1)
        complete = attr_bool(f.attrs, "complete", path, where, True)
        metrics = attr_json(f.attrs, "metrics", path, where, {})
        provenance = attr_json(f.attrs, "provenance", path, where, {})
        for key, value in (("metrics", metrics), ("provenance", provenance)):
            if not isinstance(value, dict):
                raise InputError(f"File {path}: attribute {key} of {where} is JSON {type(value).__name__}; "
                                 "expected a JSON object.")
        if not all(isinstance(v, (int, float)) for v in metrics.values()):
            raise InputError(f"File {path}: attribute metrics of {where} holds values that are not numbers; "
                             "expected a JSON object of numbers.")
        geometry = {}
        for key in ("z_spacing", "pixel_size"):
            if key in f.attrs:
                geometry[key] = attr_float(f.attrs, key, path, where)
                if geometry[key] <= 0:
                    raise InputError(f"File {path}: attribute {key} of {where} is {geometry[key]:g}; "
                                     "expected a positive distance.")
        if "pixel_unit" in f.attrs:
            geometry["pixel_unit"] = attr_str(f.attrs, "pixel_unit")
        slice_psnr = None
        if "slice_psnr" in f:
            slice_psnr = [float(v) for v in np.asarray(require_dataset(
                f, "slice_psnr", path, shape=(z,), kinds="f", what=f"a float array of {z} values (one per slice)")[()])]
        mean = read_finite(mean_ds, path, np.float32)
        std = read_finite(std_ds, path, np.float32)
    if np.any(std < 0):
        raise InputError(f"File {path}: dataset /std holds negative values; a standard deviation is >= 0.")
    result = VolumeResult(mean, std, n_samples, {k: float(v) for k, v in metrics.items()}, slice_psnr,
                          provenance, units, complete)
    return with_geometry(result, **geometry)
