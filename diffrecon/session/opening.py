"""Opening any file the workbench reads: this project's measurement and result files, the
formats of :mod:`diffrecon.io.importers` (fastMRI, Data Exchange, NXtomo) and plain images.

An importer that leaves choices (slice, size, acceleration) is called with its defaults here,
and what it chose is spelt out in :attr:`Opened.note` so the window can show it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..measurement import Measurement, Result

#: The forward model and relative noise an opened image is simulated with until the import
#: dialog lets the user choose: denoising, noise σ 5 % of the image's value range.
IMAGE_FORWARD_MODEL = "denoise"
IMAGE_RELATIVE_NOISE = 0.05


@dataclass(frozen=True)
class Opened:
    """What a file held: a measurement, the result when it is a result file, the format it was
    read as (``measurement``, ``result``, ``fastmri``, ``dxchange``, ``nxtomo``, ``image``) and a
    note of the importer's default choices (empty for this project's own files)."""

    measurement: Measurement | None
    result: Result | None
    fmt: str
    note: str = ""


def diffrecon_kind(path: Path) -> str | None:
    """``measurement`` or ``result`` (the root's ``diffrecon_format``) for this project's files,
    None for any other HDF5 file; InputError naming the file when it is no HDF5 file."""
    from ..io.h5 import attr_str, open_readonly

    with open_readonly(path) as f:
        return attr_str(f.attrs, "diffrecon_format") if "diffrecon_format" in f.attrs else None


def import_note(fmt: str, m: Measurement) -> str:
    """The importer's choices for ``m`` in one line, e.g. 'fastMRI slice 1 of the file (the middle one), ...'."""
    a = m.attrs
    size = " × ".join(map(str, m.image_shape[-2:]))
    if fmt == "fastmri":
        sampled = "fully sampled" if a.get("fully_sampled") else f"acceleration ×{float(a.get('acceleration', 1)):.3g}"
        return (f"fastMRI, default choices: slice {a.get('slice')} (the middle one), image {size} "
                f"(the file's), {sampled}, no retrospective undersampling.")
    if fmt in ("dxchange", "nxtomo"):
        name = "Data Exchange" if fmt == "dxchange" else "NXtomo"
        return (f"{name}, default choices: detector row {a.get('detector_row')} (the middle one), "
                f"image {size} (one pixel per detector column).")
    if fmt == "image":
        return (f"Image, default choices: a simulated {IMAGE_FORWARD_MODEL} measurement with noise σ "
                f"{m.noise_sigma:.4g} ({IMAGE_RELATIVE_NOISE:.0%} of its value range).")
    return ""


def read_file(path: str | Path) -> Opened:
    """Whatever ``path`` holds, as an :class:`Opened`: the format comes from the importer registry
    (:func:`diffrecon.io.importers.detect`, by content); InputError with one sentence naming the
    file when it is none of the formats (or broken)."""
    from ..io import importers, read_result

    path = Path(path)
    try:
        info = importers.detect(path)
    except InputError as err:
        if "matches no import format" not in str(err):
            raise
        raise InputError(f"File {path} is neither a diffrecon measurement or result nor a file of an import "
                         "format (fastMRI: /kspace, Data Exchange: /exchange/data, NXtomo: an NXentry with "
                         "instrument/detector/data).") from None
    if info.name == "image":
        image = importers.read_image(path)
        spread = float(np.max(image) - np.min(image)) if image.size else 0.0
        m = importers.simulate(image, IMAGE_FORWARD_MODEL, noise=IMAGE_RELATIVE_NOISE * (spread or 1.0),
                               title=f"{path.name} (simulated {IMAGE_FORWARD_MODEL})")
        m.source = path
        return Opened(m, None, "image", import_note("image", m))
    if not info.imported:  # this project's own files: a result keeps its result
        if diffrecon_kind(path) == "result":
            result = read_result(path)
            return Opened(result.measurement, result, "result")
        return Opened(importers.open(path, info.name), None, "measurement")
    m = importers.open(path, info.name)
    return Opened(m, None, info.name, import_note(info.name, m))
