"""Export of result maps as images: float32 TIFF for ImageJ/Fiji, colour-mapped PNG, plain HDF5.

The data are exported, not the pixels on screen: TIFF and HDF5 hold the float values; the PNG
shows every data pixel (nearest-neighbour, enlarged by a whole factor for small images) with a
colour bar labelled in the physical units and axes in the pixel unit. Every write is atomic: a
temporary file in the target folder, renamed over the target only once complete.
"""
from __future__ import annotations

import inspect
import math
import os
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..solvers.labels import spread_text
from .atomic import atomic_write
from .h5 import atomic_h5

FORMATS = ("tiff", "png", "h5")
WHAT = ("mean", "std", "samples", "error")
#: What "error" means everywhere (window, CLI, comparison grid, exported files): signed, mean minus truth.
ERROR_LABEL = "error (mean − truth)"
_SUFFIX = {"tiff": ".tif", "png": ".png", "h5": ".h5"}
_FORMAT_OF_SUFFIX = {".tif": "tiff", ".tiff": "tiff", ".png": "png", ".h5": "h5", ".hdf5": "h5"}
_PNG_MIN_SIDE = 512  # small maps are enlarged by a whole factor so each data pixel stays visible


def _imagej_keyword() -> dict:
    """tifffile spells ImageJ mode ``imagej=True`` in most versions and ``kind='imagej'`` in some."""
    import tifffile

    params = inspect.signature(tifffile.imwrite).parameters
    if "imagej" in params:
        return {"imagej": True}
    return {"kind": "imagej"}


def _write_tiff(tmp: Path, a: np.ndarray, units: str, pixel_size: float, pixel_unit: str, title: str) -> None:
    import tifffile

    a = np.squeeze(a.astype(np.float32), axis=tuple(i for i in range(a.ndim - 2) if a.shape[i] == 1))
    axes = {2: "YX", 3: "ZYX", 4: "ZCYX"}[a.ndim]
    finite = a[np.isfinite(a)]
    metadata = {"axes": axes, "unit": pixel_unit or "pixel",
                "Info": f"title={title}\nvalue_unit={units}\npixel_size={pixel_size} {pixel_unit}"}
    if finite.size:
        metadata.update(min=float(finite.min()), max=float(finite.max()))
    tifffile.imwrite(tmp, np.ascontiguousarray(a), resolution=(1.0 / pixel_size, 1.0 / pixel_size),
                     metadata=metadata, **_imagej_keyword())


def _write_png(tmp: Path, a: np.ndarray, units: str, pixel_size: float, pixel_unit: str, title: str,
               cmap: str, levels: tuple[float, float] | None = None) -> None:
    # Figure + Agg canvas, never pyplot: pyplot would pick a GUI backend and keep global state.
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if cmap not in colormaps:
        raise InputError(f"Colour map {cmap!r} is unknown; valid names include viridis, gray, magma, inferno.")
    h, w = a.shape[-2:]
    panels = a.reshape(-1, h, w)
    n = panels.shape[0]
    ncols = min(n, 4)
    nrows = math.ceil(n / ncols)
    scale = max(1, math.ceil(_PNG_MIN_SIDE / max(h, w)))
    dpi = 100
    fig = Figure(figsize=(ncols * w * scale / dpi + 1.6, nrows * h * scale / dpi + 0.9), dpi=dpi)
    FigureCanvasAgg(fig)
    finite = panels[np.isfinite(panels)]
    vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if levels is not None:
        vmin, vmax = (float(v) for v in levels)
    extent = (0.0, w * pixel_size, h * pixel_size, 0.0)
    image = None
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for i, ax in enumerate(axes.ravel()):
        if i >= n:
            ax.set_axis_off()
            continue
        image = ax.imshow(panels[i], cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest", extent=extent)
        ax.set_xlabel(f"x [{pixel_unit}]")
        if i % ncols == 0:
            ax.set_ylabel(f"y [{pixel_unit}]")
        if n > 1:
            ax.set_title(f"{i}", fontsize=8)
    if title:
        fig.suptitle(title)
    bar = fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.9)
    bar.set_label(f"{title or 'value'} [{units}]")
    fig.savefig(tmp, format="png", dpi=dpi)


def _write_h5(out: Path, a: np.ndarray, units: str, pixel_size: float, pixel_unit: str, title: str) -> None:
    with atomic_h5(out) as f:
        ds = f.create_dataset("data", data=np.ascontiguousarray(a))
        ds.attrs["units"] = units or ""
        ds.attrs["pixel_size"] = float(pixel_size)
        ds.attrs["pixel_unit"] = pixel_unit or ""
        ds.attrs["title"] = title or ""
        ds.attrs["interpretation"] = "image"


def export_array(array: np.ndarray, out: str | os.PathLike, fmt: str | None = None, units: str = "a.u.",
                 pixel_size: float = 1.0, pixel_unit: str = "px", title: str = "", cmap: str = "viridis",
                 allow_overwrite: bool = True, levels: tuple[float, float] | None = None) -> Path:
    """Write ``array`` ((H, W), (C, H, W) or (k, C, H, W)) to ``out``; ``fmt`` from the suffix when None.
    ``levels`` (low, high) fixes a PNG's colour range (default: the data's range).

    Complex arrays are written only to HDF5 (an image format would have to drop a part of them).
    Returns the path written.
    """
    out = Path(out)
    if fmt is None:
        fmt = _FORMAT_OF_SUFFIX.get(out.suffix.lower())
        if fmt is None:
            raise InputError(f"Export target {out} has suffix {out.suffix!r}; valid suffixes are .tif, .png and .h5.")
    if fmt not in FORMATS:
        raise InputError(f"Export format {fmt!r} is unknown; valid formats are {', '.join(FORMATS)}.")
    a = np.asarray(array)
    if a.ndim not in (2, 3, 4) or min(a.shape[-2:]) < 1 or a.dtype.kind not in "fiubc":
        raise InputError(f"Export of {title or 'array'}: shape {a.shape} dtype {a.dtype}; expected a numeric "
                         "(H, W), (C, H, W) or (k, C, H, W) array.")
    if a.dtype.kind == "c" and fmt != "h5":
        raise InputError(f"Export of {title or 'array'} to {fmt}: the data are complex; export magnitude or "
                         "phase, or use the h5 format.")
    if not (isinstance(pixel_size, (int, float)) and math.isfinite(pixel_size) and pixel_size > 0):
        raise InputError(f"Export pixel_size is {pixel_size!r}; expected a positive number.")
    if out.exists() and not allow_overwrite:
        raise InputError(f"Export target {out} exists; choose another name or allow overwriting.")
    if fmt == "h5":
        a = a if a.dtype.kind == "c" else a.astype(np.float32)
        _write_h5(out, a, units, pixel_size, pixel_unit, title)
        return out
    if fmt == "tiff":
        return atomic_write(out, lambda tmp: _write_tiff(tmp, a, units, pixel_size, pixel_unit, title),
                            action="export to")
    return atomic_write(out, lambda tmp: _write_png(tmp, a.astype(np.float32), units, pixel_size, pixel_unit,
                                                    title, cmap, levels), action="export to")


def export_result(result_path: str | os.PathLike, what: str = "mean", fmt: str = "tiff",
                  out: str | os.PathLike | None = None, cmap: str = "viridis",
                  allow_overwrite: bool = True) -> Path:
    """Export one map of a result file: the posterior ``mean``, ``std``, the stored ``samples``,
    or the signed ``error`` ``mean - ground_truth`` (as in the window and the comparison grid; a PNG
    of it is drawn with a diverging colour map, levels symmetric about 0).

    ``out`` defaults to ``<result name>_<what>.<ext>`` beside the result. Returns the path written.
    """
    from .result_file import read_result

    result_path = Path(result_path)
    if what not in WHAT:
        raise InputError(f"Export of {result_path}: what is {what!r}; valid choices are {', '.join(WHAT)}.")
    if fmt not in FORMATS:
        raise InputError(f"Export format {fmt!r} is unknown; valid formats are {', '.join(FORMATS)}.")
    r = read_result(result_path)
    if out is None:
        out = result_path.with_name(f"{result_path.stem}_{what}{_SUFFIX[fmt]}")
    return export_map(r, what, out, fmt, cmap=cmap, allow_overwrite=allow_overwrite, source=str(result_path))


def map_of(result, what: str, source: str = "This result") -> np.ndarray:
    """The data behind ``what`` of an in-memory result: mean, std, samples, or the signed error
    mean − ground truth."""
    m = result.measurement
    if what == "mean":
        return result.mean
    if what == "std":
        return result.std
    if what == "samples":
        if result.samples is None:
            raise InputError(f"Result {source} stores no samples (/posterior/samples); export mean or std.")
        return result.samples
    if what == "error":
        if m is None or m.ground_truth is None:
            raise InputError(f"Result {source} has no ground truth (/measurement/ground_truth), so there is "
                             "no error map; export mean or std.")
        return result.mean - m.ground_truth
    raise InputError(f"Export of {source}: what is {what!r}; valid choices are {', '.join(WHAT)}.")


def export_map(result, what: str, out: str | os.PathLike, fmt: str | None = None, *, cmap: str = "viridis",
               title: str | None = None, levels: tuple[float, float] | None = None, allow_overwrite: bool = True,
               source: str = "in memory") -> Path:
    """Write one map (:func:`map_of`) of an in-memory result to ``out``; the CLI's export and the
    window's share it. ``title`` defaults to what the map is (the std's kind of spread); an error
    PNG gets a diverging colour map with levels symmetric about 0 unless ``levels`` are given."""
    data = map_of(result, what, source)
    m = result.measurement
    label = title or {"std": spread_text(result.spread), "error": ERROR_LABEL}.get(what, what)
    if what == "error":
        cmap = "RdBu_r" if cmap == "viridis" else cmap
        if levels is None:
            bound = float(np.max(np.abs(data))) or 1.0
            levels = (-bound, bound)
    return export_array(data, out, fmt, units=result.units, pixel_size=m.pixel_size if m else 1.0,
                        pixel_unit=m.pixel_unit if m else "px", title=label, cmap=cmap,
                        allow_overwrite=allow_overwrite, levels=levels)
