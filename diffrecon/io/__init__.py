"""HDF5 measurement and result files (see docs/formats.md), and ``describe`` for ``diffrecon info``."""
from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np

from ..errors import InputError
from .h5 import MAX_ELEMENTS, atomic_h5, attr_str, open_readonly
from .measurement_file import read_measurement, write_measurement
from .result_file import read_result, write_result

_MAX_ATTR_CHARS = 100


def _attr_text(value) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray):
        text = np.array2string(value, threshold=8, separator=", ") if value.size else "[]"
    elif isinstance(value, np.generic):
        text = repr(value.item())
    else:
        text = repr(value)
    text = " ".join(text.split())
    return text if len(text) <= _MAX_ATTR_CHARS else text[: _MAX_ATTR_CHARS - 3] + "..."


def _tree(group: h5py.Group, lines: list[str], depth: int, seen: dict) -> None:
    pad = "  " * depth
    for key, value in group.attrs.items():
        lines.append(f"{pad}  @{key} = {_attr_text(value)}")
    for name in group:
        link = group.get(name, getlink=True)
        if isinstance(link, h5py.ExternalLink):
            lines.append(f"{pad}{name} -> external link {link.filename}:{link.path} (not followed)")
            continue
        if isinstance(link, h5py.SoftLink):
            lines.append(f"{pad}{name} -> soft link {link.path}")
            continue
        obj = group[name]
        if isinstance(obj, h5py.Dataset):
            extra = " (virtual)" if obj.is_virtual else ""
            key = obj.id.__hash__()
            if key in seen:
                extra += f" (hard link: same dataset as {seen[key]})"
            else:
                seen[key] = obj.name
            lines.append(f"{pad}{name}  dataset {obj.shape} {obj.dtype}{extra}")
            for key, value in obj.attrs.items():
                lines.append(f"{pad}    @{key} = {_attr_text(value)}")
        elif isinstance(obj, h5py.Group):
            key = obj.id.__hash__()
            if key in seen:
                lines.append(f"{pad}{name}/  (hard link: same group as {seen[key]}, shown above)")
                continue
            seen[key] = obj.name
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
                         f"{'posterior std' if r.std_is_posterior else 'seed spread (not a posterior std)'}"
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


__all__ = ["MAX_ELEMENTS", "atomic_h5", "describe", "open_readonly", "read_measurement", "read_result",
           "write_measurement", "write_result"]
