"""HDF5 measurement and result files (see docs/formats.md), ``describe`` for ``diffrecon info`` and
``import_file`` for ``diffrecon import`` (the importer chosen from the file's layout)."""
from __future__ import annotations

import os
from pathlib import Path

import h5py

from ..calibration import status_text
from ..errors import InputError, printable
from ..solvers.labels import spread_text
from . import importers
from .h5 import MAX_ELEMENTS, atomic_h5, attr_str, attr_text, open_readonly
from .measurement_file import read_measurement, write_measurement
from .result_file import read_result, write_result

def _tree(group: h5py.Group, lines: list[str], depth: int, seen: dict) -> None:
    """Names and attribute keys come from the file, so each is escaped: no control character in
    them reaches the terminal."""
    pad = "  " * depth
    for key, value in group.attrs.items():
        lines.append(f"{pad}  @{printable(key)} = {attr_text(value)}")
    for raw in group:
        name = printable(raw)
        link = group.get(raw, getlink=True)
        if isinstance(link, h5py.ExternalLink):
            lines.append(f"{pad}{name} -> external link {printable(link.filename)}:{printable(link.path)} (not followed)")
            continue
        if isinstance(link, h5py.SoftLink):
            lines.append(f"{pad}{name} -> soft link {printable(link.path)}")
            continue
        obj = group[raw]
        if isinstance(obj, h5py.Dataset):
            extra = " (virtual)" if obj.is_virtual else ""
            key = obj.id.__hash__()
            if key in seen:
                extra += f" (hard link: same dataset as {seen[key]})"
            else:
                seen[key] = printable(obj.name)
            lines.append(f"{pad}{name}  dataset {obj.shape} {obj.dtype}{extra}")
            for key, value in obj.attrs.items():
                lines.append(f"{pad}    @{printable(key)} = {attr_text(value)}")
        elif isinstance(obj, h5py.Group):
            key = obj.id.__hash__()
            if key in seen:
                lines.append(f"{pad}{name}/  (hard link: same group as {seen[key]}, shown above)")
                continue
            seen[key] = printable(obj.name)
            lines.append(f"{pad}{name}/")
            _tree(obj, lines, depth + 1, seen)


def describe(path: str | os.PathLike) -> str:
    """A tree of any HDF5 file (groups, datasets with shape and dtype, attributes), followed
    by a summary when it is a diffrecon measurement or result. Reads no dataset values except
    for the summary of a diffrecon file; links to other files are shown, never followed."""
    path = Path(path)
    lines = [f"{path}"]
    with open_readonly(path, allow_external=True) as f:
        _tree(f, lines, 1, {})
        kind = attr_str(f.attrs, "diffrecon_format") if "diffrecon_format" in f.attrs else ""
    if kind not in ("measurement", "result"):
        lines.append("Not a diffrecon file (no diffrecon_format root attribute).")
        return "\n".join(lines)
    lines.append("")
    try:
        if kind == "result":
            r = read_result(path)
            lines.append(f"diffrecon result: {r.n_samples} samples, mean {r.mean.shape}, "
                         f"{spread_text(r.spread)}, {status_text(r.provenance)}"
                         f"{'' if r.complete else ', stopped early'}")
            prov = r.provenance
            lines.append(f"  solver {prov.get('solver', '?')}, steps {prov.get('steps', '?')}, "
                         f"seed {prov.get('seed', '?')}, prior {prov.get('prior', '?')}, device {prov.get('device', '?')}")
            if r.metrics:
                lines.append("  metrics: " + ", ".join(f"{k}={v:.4g}" for k, v in r.metrics.items()))
            m = r.measurement
        else:
            m = read_measurement(path)
        if m is not None:
            lines.append(f"diffrecon measurement: {m.title or '(untitled)'}")
            lines.append(f"  operator {m.operator.kind}, image {m.image_shape}, y {m.y.shape} {m.y.dtype}, "
                         f"noise_sigma {m.noise_sigma:.4g}")
            lines.append(f"  units {m.units}, pixel {m.pixel_size:g} {m.pixel_unit}, value_range {m.value_range}, "
                         f"ground truth {'yes' if m.ground_truth is not None else 'no'}")
    except InputError as err:
        lines.append(f"diffrecon {kind} file, but not valid: {err}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------ importing
#: Formats :func:`import_file` reads (see docs/importers.md): the registry's foreign formats.
IMPORT_FORMATS = importers.import_formats()


def detect_import_format(path: str | os.PathLike, *, allow_external: bool = False) -> str:
    """The import format of ``path``, recognised by its content (:func:`importers.detect`);
    images and diffrecon's own files are refused with what to do instead."""
    info = importers.detect(path, allow_external=allow_external)
    if info.needs_operator:
        raise InputError(f"File {path} is an image, not a measurement; make a measurement from it with "
                         "diffrecon simulate.")
    if not info.imported:
        with open_readonly(path, allow_external=allow_external) as f:
            kind = attr_str(f.attrs, "diffrecon_format")
        raise InputError(f"File {path} is already a diffrecon {kind} file; open it directly instead of importing it.")
    return info.name


def import_file(path: str | os.PathLike, fmt: str = "auto", *, slice: int | None = None, size: int | None = None,
                acceleration: float | None = None, center_fraction: float | None = None, seed: int = 0,
                allow_external: bool = False):
    """A :class:`~diffrecon.measurement.Measurement` from a file in one of :data:`IMPORT_FORMATS`
    (``auto``: :func:`detect_import_format`). ``acceleration``, ``center_fraction`` and ``seed``
    (a retrospective undersampling mask) apply to fully sampled fastMRI k-space only."""
    path = Path(path)
    if fmt not in ("auto", *IMPORT_FORMATS):
        raise InputError(f"Import format {fmt!r} is unknown; valid formats are auto, {', '.join(IMPORT_FORMATS)}.")
    if fmt == "auto":
        fmt = detect_import_format(path, allow_external=allow_external)
    options = dict(slice=slice, size=size, acceleration=acceleration, center_fraction=center_fraction)
    if "seed" in importers.importer(fmt).option_names:  # the seed of a mask; other formats draw nothing
        options["seed"] = seed
    return importers.open(path, fmt, allow_external=allow_external, **options)


__all__ = ["IMPORT_FORMATS", "MAX_ELEMENTS", "atomic_h5", "describe", "detect_import_format", "import_file",
           "open_readonly", "read_measurement", "read_result", "write_measurement", "write_result"]
