"""Export from the window: float32 TIFF (ImageJ-readable), colour-mapped PNG with its colour
bar, and the HDF5 result file. Exports the data, never the screen pixels; every write goes to a
temporary file in the target folder first and is renamed into place (atomic on one filesystem).
"""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ..errors import InputError

EXPORTS = {  # file-dialog filter -> (what, kind)
    "HDF5 result (*.h5)": ("result", "hdf5"),
    "Posterior mean, float32 TIFF (*.tif)": ("mean", "tiff"),
    "Posterior std, float32 TIFF (*.tif)": ("std", "tiff"),
    "Samples, float32 TIFF stack (*.tif)": ("samples", "tiff"),
    "Error map, float32 TIFF (*.tif)": ("error", "tiff"),
    "Posterior mean, PNG with colour bar (*.png)": ("mean", "png"),
    "Posterior std, PNG with colour bar (*.png)": ("std", "png"),
    "Error map, PNG with colour bar (*.png)": ("error", "png"),
}
CMAPS = {"std": "inferno", "error": "RdBu_r"}
FORMATS = {"tiff": (".tif", ".tiff"), "png": (".png",), "hdf5": (".h5", ".hdf5", ".nxs")}


@contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary path beside ``path``; on success rename it over ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_tiff(path: str | Path, image: np.ndarray, *, unit: str = "", pixel_size: float = 1.0) -> None:
    """A float32 ImageJ hyperstack: (H, W), (C, H, W) or samples (k, C, H, W)."""
    import tifffile

    data = np.ascontiguousarray(np.asarray(image, dtype=np.float32))
    axes = {2: "YX", 3: "CYX", 4: "TCYX"}.get(data.ndim)
    if axes is None:
        raise InputError(f"Cannot export an array of shape {data.shape} to {Path(path).name}; 2 to 4 axes are valid.")
    metadata = {"axes": axes, "unit": unit or "px"}
    resolution = (1.0 / pixel_size, 1.0 / pixel_size) if pixel_size > 0 else None
    with atomic_path(path) as tmp:
        try:
            tifffile.imwrite(tmp, data, kind="imagej", metadata=metadata, resolution=resolution)
        except TypeError:  # tifffile before 2025 spells the ImageJ flavour imagej=True
            tifffile.imwrite(tmp, data, imagej=True, metadata=metadata, resolution=resolution)


def write_png(path: str | Path, image: np.ndarray, *, title: str = "", unit: str = "",
              cmap: str = "viridis", levels: tuple[float, float] | None = None) -> None:
    """The 2-D image colour-mapped at its own resolution with a labelled colour bar (matplotlib)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    data = np.asarray(image, dtype=np.float32)
    while data.ndim > 2:
        data = data[0]
    h, w = data.shape
    fig = Figure(figsize=(max(3.0, 4.0 * w / max(h, 1)) + 1.2, 4.0), dpi=150)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    vmin, vmax = levels if levels is not None else (None, None)
    im = ax.imshow(data, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    bar = fig.colorbar(im, ax=ax)
    bar.set_label(unit)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")


def write_result_file(path: str | Path, result) -> None:
    """The HDF5 result via the io layer, through a temporary file."""
    import dataclasses

    from ..io import write_result

    # str subclasses (torch's TorchVersion) have no HDF5 type; store them as plain strings
    provenance = {k: str(v) if isinstance(v, str) else v for k, v in (result.provenance or {}).items()}
    with atomic_path(path) as tmp:
        write_result(tmp, dataclasses.replace(result, provenance=provenance))


def export_kind(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    for kind, suffixes in FORMATS.items():
        if suffix in suffixes:
            return kind
    raise InputError(f"Cannot export to {Path(path).name}; valid extensions are .tif, .png and .h5.")


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
    kind = export_kind(path)
    if kind == "hdf5":
        write_result_file(path, result)
        return
    data = export_array(result, what, truth)
    if kind == "tiff":
        pixel = result.measurement.pixel_size if result.measurement is not None else 1.0
        write_tiff(path, data, unit=result.units, pixel_size=pixel)
    else:
        write_png(path, data, title=title, unit=result.units, cmap=CMAPS.get(what, "gray"), levels=levels)
