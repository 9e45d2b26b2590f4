"""Export from the window: float32 TIFF (ImageJ-readable), colour-mapped PNG with its colour
bar, and the HDF5 result file, written by :mod:`diffrecon.io` (atomically). Exports the data,
never the screen pixels; a PNG keeps the panel's colour levels.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError

EXPORTS = {  # file-dialog filter -> (what, kind)
    "HDF5 result (*.h5)": ("result", "hdf5"),
    "Posterior mean, float32 TIFF (*.tif)": ("mean", "tiff"),
    "Posterior std, float32 TIFF (*.tif)": ("std", "tiff"),
    "Samples, float32 TIFF stack (*.tif)": ("samples", "tiff"),
    "Error map (mean − truth), float32 TIFF (*.tif)": ("error", "tiff"),
    "Posterior mean, PNG with colour bar (*.png)": ("mean", "png"),
    "Posterior std, PNG with colour bar (*.png)": ("std", "png"),
    "Error map (mean − truth), PNG with colour bar (*.png)": ("error", "png"),
}
CMAPS = {"std": "inferno", "error": "RdBu_r"}
FORMATS = {"tiff": (".tif", ".tiff"), "png": (".png",), "hdf5": (".h5", ".hdf5", ".nxs")}


def export_kind(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    for kind, suffixes in FORMATS.items():
        if suffix in suffixes:
            return kind
    raise InputError(f"Cannot export to {Path(path).name}; valid extensions are .tif, .png and .h5.")


def resolve_target(path: str | Path, chosen_filter: str) -> tuple[Path, str]:
    """(file to write, what to write) from the save dialog's name and filter.

    The filter chooses the map; the suffix the format. A name without a known suffix gets the
    filter's; a suffix of another format writes the chosen map in that format where the format
    holds it, and is refused otherwise (never another map than the chosen one)."""
    what, kind = EXPORTS.get(chosen_filter, ("result", "hdf5"))
    path = Path(path)
    if path.suffix.lower() not in {s for suffixes in FORMATS.values() for s in suffixes}:
        return path.with_name(path.name + FORMATS[kind][0]), what
    typed = export_kind(path)
    if typed != kind and "hdf5" in (typed, kind):
        wanted = "the whole result" if what == "result" else f"the {what} map"
        raise InputError(f"{path.name} has the suffix {path.suffix}, but the chosen export is {wanted} as "
                         f"{kind.upper()}; name it {path.with_suffix(FORMATS[kind][0]).name} or choose another "
                         "file type.")
    return path, what


def export_array(result, what: str, truth: np.ndarray | None) -> np.ndarray:
    """The data behind ``what``: mean, std, samples, or error (mean − truth, 2-D)."""
    if what == "samples":
        if result.samples is None:
            raise InputError("This result holds no samples; raise keep_samples to export them.")
        return result.samples
    if what == "error":
        if truth is None:
            raise InputError("The error map needs a ground truth, which this measurement lacks.")
        from .views import to_2d

        return to_2d(result.mean) - truth
    if what not in ("mean", "std"):
        raise InputError(f"Cannot export {what!r}; valid choices are mean, std, samples, error and result.")
    return getattr(result, what)


def export_result(path: str | Path, result, what: str, *, truth: np.ndarray | None = None,
                  title: str = "", levels: tuple[float, float] | None = None) -> None:
    """Write ``what`` of ``result`` to ``path``; the kind (TIFF, PNG, HDF5) follows the suffix."""
    from ..io import write_result
    from ..io.export import export_array as write_array

    kind = export_kind(path)
    if kind == "hdf5":
        write_result(path, result)
        return
    data = export_array(result, what, truth)
    m = result.measurement
    write_array(data, path, "tiff" if kind == "tiff" else "png", units=result.units,
                pixel_size=m.pixel_size if m is not None else 1.0, pixel_unit=m.pixel_unit if m is not None else "px",
                title=title or what, cmap=CMAPS.get(what, "gray"), levels=levels)
