"""The export dialog's choices over :mod:`diffrecon.io.export`, the CLI's export: the save
dialog's filters, the file and map they name, and the colour map each map is drawn with. The
writing is the session's (:meth:`diffrecon.session.Session.export`): the data, never the screen
pixels; a PNG keeps the panel's colour levels."""
from __future__ import annotations

from pathlib import Path

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


def export_result(session, path: str | Path, what: str, *, title: str = "",
                  levels: tuple[float, float] | None = None) -> Path:
    """Write ``what`` of the session's result to ``path`` (the kind follows the suffix, checked
    first so a wrong one is named before anything is computed)."""
    export_kind(path)
    return session.export(path, what, title=title or None, levels=levels, cmap=CMAPS.get(what, "gray"))
