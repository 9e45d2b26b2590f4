"""Exports of a volume result for other programs, both written atomically.

* **ImageJ hyperstack TIFF** (:func:`export_tiff`, needs tifffile, the ``export`` extra): float32
  pages in ZCYX order, the channels being the mean's and then the std's (two channels for a
  single-channel volume), with the pixel size as the TIFF resolution, the slice distance as
  ImageJ's ``spacing``, the length unit as ``unit``, one display range per channel, a label per
  page (``mean z=3``) and the value unit in the Info text. Fiji opens it as a 2-channel stack with
  the right voxel size.
* **HDF5 volume** (:func:`export_h5`): datasets ``/mean`` and ``/std`` float32 ``(Z, Y, X)``
  (``(Z, C, Y, X)`` for several channels), each with ``units``, ``axes``, dimension labels,
  ``element_size`` ``[z, y, x]`` and ``element_size_unit`` (and ``element_size_um`` where the
  unit is a length, which Fiji's HDF5 reader takes), the run's metrics and provenance as JSON.

Both take ``progress(done, total)``, called after each slice written.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from ..errors import InputError
from ..io.atomic import atomic_write
from ..io.h5 import atomic_h5
from .file import volume_geometry
from .reconstruct import VolumeResult

Progress = Callable[[int, int], None] | None
#: Length units ImageJ and the HDF5 readers know, and their size in micrometres.
_MICROMETRES = {"nm": 1e-3, "um": 1.0, "µm": 1.0, "micron": 1.0, "mm": 1e3, "cm": 1e4, "m": 1e6}
_IMAGEJ_UNIT = {"px": "pixel", "pixel": "pixel", "um": "micron", "µm": "micron"}


def _tell(progress: Progress, done: int, total: int) -> None:
    if progress is not None:
        progress(done, total)


def hyperstack(result: VolumeResult) -> tuple[np.ndarray, list[str]]:
    """``(Z, 2C, H, W)`` float32 (the mean's channels, then the std's) and the channels' names."""
    mean, std = np.asarray(result.mean, np.float32), np.asarray(result.std, np.float32)
    c = mean.shape[1]
    names = ["mean", "std"] if c == 1 else [f"{q} c{i}" for q in ("mean", "std") for i in range(c)]
    return np.concatenate([mean, std], axis=1), names


def _ranges(data: np.ndarray) -> tuple[float, ...]:
    out: list[float] = []
    for ch in range(data.shape[1]):
        values = data[:, ch]
        finite = values[np.isfinite(values)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        out += [lo, hi if hi > lo else lo + 1.0]
    return tuple(out)


def export_tiff(path: str | os.PathLike, result: VolumeResult, *, progress: Progress = None) -> Path:
    """Write ``result`` as an ImageJ hyperstack TIFF (ZCYX float32) at ``path``."""
    try:
        import tifffile
    except ImportError:
        raise InputError("TIFF export needs tifffile; install it with pip install 'diffrecon[export]'.") from None
    from ..io.export import _imagej_keyword

    data, names = hyperstack(result)
    z, c = data.shape[:2]
    g = volume_geometry(result)
    labels = [f"{names[ch]} z={k}" for k in range(z) for ch in range(c)]
    metadata = {"axes": "ZCYX", "spacing": g.z_spacing, "unit": _IMAGEJ_UNIT.get(g.pixel_unit, g.pixel_unit),
                "Ranges": _ranges(data), "Labels": labels, "mode": "grayscale",
                "Info": f"diffrecon volume\nchannels={', '.join(names)}\nvalue_unit={result.units}\n"
                        f"pixel_size={g.pixel_size} {g.pixel_unit}\nz_spacing={g.z_spacing} {g.pixel_unit}\n"
                        f"n_samples={result.n_samples}\ncomplete={bool(result.complete)}"}

    def pages() -> Iterator[np.ndarray]:
        for k in range(z):
            for ch in range(c):
                yield data[k, ch]
            _tell(progress, k + 1, z)

    def write(tmp: Path) -> None:
        tifffile.imwrite(tmp, pages(), shape=data.shape, dtype=np.float32, metadata=metadata,
                         resolution=(1.0 / g.pixel_size, 1.0 / g.pixel_size), **_imagej_keyword())

    return atomic_write(path, write)


def export_h5(path: str | os.PathLike, result: VolumeResult, *, progress: Progress = None) -> Path:
    """Write ``result``'s mean and std as a plain HDF5 volume at ``path``."""
    mean, std = np.asarray(result.mean, np.float32), np.asarray(result.std, np.float32)
    g = volume_geometry(result)
    single = mean.shape[1] == 1
    axes = "ZYX" if single else "ZCYX"
    size = [g.z_spacing, g.pixel_size, g.pixel_size]
    z = mean.shape[0]
    with atomic_h5(path) as f:
        f.attrs.update(format="diffrecon-volume-export", units=result.units, n_samples=result.n_samples,
                       complete=bool(result.complete), metrics=json.dumps(result.metrics),
                       provenance=json.dumps(result.provenance, default=str))
        sets = {}
        for name, volume in (("mean", mean), ("std", std)):
            shape = (z, *mean.shape[2:]) if single else mean.shape
            ds = f.create_dataset(name, shape=shape, dtype=np.float32, chunks=(1, *shape[1:]))
            ds.attrs.update(units=result.units, axes=axes, element_size=np.asarray(size, np.float64),
                            element_size_unit=g.pixel_unit)
            if g.pixel_unit in _MICROMETRES:
                ds.attrs["element_size_um"] = np.asarray(size, np.float64) * _MICROMETRES[g.pixel_unit]
            for i, label in enumerate(axes.lower()):
                ds.dims[i].label = label
            sets[name] = (ds, volume)
        for k in range(z):
            for ds, volume in sets.values():
                ds[k] = volume[k, 0] if single else volume[k]
            _tell(progress, k + 1, z)
    return Path(path)


#: Export kinds by file suffix, and their writers.
WRITERS = {".tif": export_tiff, ".tiff": export_tiff, ".h5": export_h5, ".hdf5": export_h5}


def export_volume(path: str | os.PathLike, result: VolumeResult, *, progress: Progress = None) -> Path:
    """Write ``result`` to ``path`` in the format its suffix names (.tif/.tiff or .h5/.hdf5)."""
    writer = WRITERS.get(Path(path).suffix.lower())
    if writer is None:
        raise InputError(f"Cannot export a volume to {Path(path).name}; valid extensions are .tif, .tiff "
                         "(ImageJ hyperstack) and .h5, .hdf5 (HDF5 volume).")
    return writer(path, result, progress=progress)
