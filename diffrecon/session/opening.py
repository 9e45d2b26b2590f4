"""Opening any file the workbench reads: this project's measurement and result files, the
formats of :mod:`diffrecon.io.importers` (fastMRI, Data Exchange, NXtomo, DICOM, NIfTI) and plain
images (simulated measurements of them).

An importer that leaves choices (slice, size, acceleration) is called with the options given
(an import dialog's) or its defaults, and what it chose is spelt out in :attr:`Opened.note` so the
window can show it.
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
    read as (``measurement``, ``result``, or an importer's name: ``fastmri``, ``dxchange``,
    ``nxtomo``, ``dicom``, ``nifti``, ``image``) and a
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


def import_note(fmt: str, m: Measurement, options: dict | None = None) -> str:
    """The importer's choices for ``m`` in one line, e.g. 'fastMRI slice 1 of the file (the middle one), ...';
    with ``options`` (chosen in an import dialog) the choices made instead of the defaults."""
    a = m.attrs
    size = " × ".join(map(str, m.image_shape[-2:]))
    if options:
        from ..io.importers import importer

        chosen = ", ".join(f"{k} {v}" for k, v in options.items() if v is not None)
        title = importer(fmt).title
        return f"{title[:1].upper()}{title[1:]}, chosen: {chosen}; image {size}."
    if fmt == "fastmri":
        sampled = "fully sampled" if a.get("fully_sampled") else f"acceleration ×{float(a.get('acceleration', 1)):.3g}"
        return (f"fastMRI, default choices: slice {a.get('slice')} (the middle one), image {size} "
                f"(the file's), {sampled}, no retrospective undersampling.")
    if fmt in ("dxchange", "nxtomo"):
        name = "Data Exchange" if fmt == "dxchange" else "NXtomo"
        return (f"{name}, default choices: detector row {a.get('detector_row')} (the middle one), "
                f"image {size} (one pixel per detector column).")
    if fmt in SIMULATED_FORMATS:
        name = {"image": "Image", "dicom": "DICOM", "nifti": "NIfTI"}[fmt]
        where = f"slice {a['slice']} (the middle one), " if "slice" in a else ""
        return (f"{name}, default choices: {where}a simulated {IMAGE_FORWARD_MODEL} measurement with noise σ "
                f"{m.noise_sigma:.4g} ({IMAGE_RELATIVE_NOISE:.0%} of its value range).")
    return ""


#: Formats that hold an image, which opens as a simulated measurement of it.
SIMULATED_FORMATS = ("image", "dicom", "nifti")


def import_format(path: str | Path):
    """The :class:`~diffrecon.io.importers.ImporterInfo` of ``path`` when it is a file of an import
    format (one that leaves choices: fastMRI, Data Exchange, NXtomo, DICOM, NIfTI, an image);
    None for this project's own files; InputError naming the file when it is no known format."""
    info = _detect(Path(path))
    return info if info.options else None


def _detect(path: Path):
    from ..io import importers

    try:
        return importers.detect(path)
    except InputError as err:
        if "matches no import format" not in str(err):
            raise
        raise InputError(f"File {path} is neither a diffrecon measurement or result nor a file of an import "
                         "format (fastMRI: /kspace, Data Exchange: /exchange/data, NXtomo: an NXentry with "
                         "instrument/detector/data, DICOM, NIfTI, TIFF or PNG).") from None


def _default_noise(fmt: str, path: Path, options: dict) -> float:
    """Noise σ :data:`IMAGE_RELATIVE_NOISE` of the value range of the image to simulate from."""
    from ..io import importers

    if fmt == "image":
        image = importers.read_image(path, options.get("dataset"), slice=options.get("slice"))
    else:
        image = importers.read_physical(path, slice=options.get("slice"), modality=options.get("modality"),
                                        mu_water=options.get("mu_water")).image
    spread = float(np.max(image) - np.min(image)) if image.size else 0.0
    return IMAGE_RELATIVE_NOISE * (spread or 1.0)


def read_file(path: str | Path, **options) -> Opened:
    """Whatever ``path`` holds, as an :class:`Opened`: the format comes from the importer registry
    (:func:`diffrecon.io.importers.detect`, by content); ``options`` go to the importer
    (:func:`diffrecon.io.importers.open`; those not given keep their defaults; an image's default
    forward model is :data:`IMAGE_FORWARD_MODEL` with noise :data:`IMAGE_RELATIVE_NOISE` of its
    range). InputError with one sentence naming the file when it is none of the formats (or broken)."""
    from ..io import importers, read_result

    path = Path(path)
    info = _detect(path)
    given = {k: v for k, v in options.items() if v is not None}
    if not info.options:  # this project's own files: a result keeps its result
        if given:
            raise InputError(f"File {path} is a diffrecon file; import options ({', '.join(given)}) apply "
                             "only to files of an import format.")
        if diffrecon_kind(path) == "result":
            result = read_result(path)
            return Opened(result.measurement, result, "result")
        return Opened(importers.open(path, info.name), None, "measurement")
    if info.needs_operator:
        given.setdefault("operator", IMAGE_FORWARD_MODEL)
        if "noise" not in given:
            given["noise"] = _default_noise(info.name, path, given)
    m = importers.open(path, info.name, **given)
    if info.name == "image":
        m.title = f"{path.name} (simulated {given['operator']})"
        m.source = path
    return Opened(m, None, info.name, import_note(info.name, m, {k: v for k, v in options.items() if v is not None}))
