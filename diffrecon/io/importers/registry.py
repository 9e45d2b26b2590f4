"""The importer registry: each format a measurement can be opened from, recognised by its content.

One :class:`ImporterInfo` per format holds how to recognise a file (the bytes it starts with, or
the layout of an HDF5 file), the options its reader takes, and the reader. ``diffrecon import``,
the window and the hostile-file tests read :data:`IMPORTERS`; :func:`detect` and
:func:`open_measurement` (``importers.open``) are the two entry points. Adding an importer: see
docs/architecture.md.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import h5py

from ...errors import InputError
from ...measurement import Measurement
from ..h5 import attr_str, open_readonly
from .image import IMAGE_SUFFIXES, image_format


@dataclass(frozen=True)
class ImportOption:
    """One option of an importer; ``None`` as a value always means "not given"."""

    name: str
    kind: type  # int | float | str | dict
    help: str = ""


@dataclass(frozen=True)
class ImporterInfo:
    """One format: ``sniff(h5py.File)`` (HDF5 formats) or ``sniff_file(path)`` (by its first bytes)
    recognises it; ``read(path, *, allow_external, **options)`` returns a Measurement.

    ``imported``: a foreign format that ``diffrecon import`` converts (False: the project's own
    files and plain images); ``needs_operator``: an image, which becomes a measurement only
    under a forward model (``operator=``, see ``diffrecon simulate``).
    """

    name: str
    title: str  # what the data is, e.g. "fastMRI k-space"
    layout: str  # how it is recognised, for messages
    read: Callable[..., Measurement]
    sniff: Callable[[h5py.File], bool] | None = None
    sniff_file: Callable[[Path], bool] | None = None
    options: tuple[ImportOption, ...] = ()
    suffixes: tuple[str, ...] = (".h5", ".hdf5")
    imported: bool = True
    needs_operator: bool = False
    #: ``read_rows(path, rows, *, allow_external, **options)``: a range of rows or slices as
    #: measurements of one forward model (a volume's slices); None where the format has none.
    read_rows: Callable[..., list[Measurement]] | None = None

    @property
    def option_names(self) -> tuple[str, ...]:
        return tuple(o.name for o in self.options)


# ------------------------------------------------------------------------------ readers
def _check_mask_options(path, acceleration, center_fraction) -> None:
    if center_fraction is not None and acceleration is None:
        raise InputError(f"Import of {path}: center_fraction applies only with acceleration (a retrospective mask).")


def _read_fastmri(path, *, allow_external=False, slice=None, size=None, acceleration=None, center_fraction=None,
                  seed=0, coils="auto") -> Measurement:
    from .fastmri import import_fastmri

    _check_mask_options(path, acceleration, center_fraction)
    return import_fastmri(path, slice, size, acceleration, center_fraction, seed, coils, allow_external=allow_external)


def _read_dxchange(path, *, allow_external=False, slice=None, size=None) -> Measurement:
    from .tomo import import_dxchange

    return import_dxchange(path, slice, size, allow_external=allow_external)


def _read_nxtomo(path, *, allow_external=False, slice=None, size=None) -> Measurement:
    from .tomo import import_nxtomo

    return import_nxtomo(path, slice, size, allow_external=allow_external)


def _rows_fastmri(path, rows, *, allow_external=False, size=None, acceleration=None, center_fraction=None, seed=0,
                  coils="auto") -> list[Measurement]:
    from .fastmri import import_fastmri_slices

    _check_mask_options(path, acceleration, center_fraction)
    return import_fastmri_slices(path, rows, size, acceleration, center_fraction, seed, coils,
                                 allow_external=allow_external)


def _rows_dxchange(path, rows, *, allow_external=False, size=None) -> list[Measurement]:
    from .tomo import import_dxchange_rows

    return import_dxchange_rows(path, rows, size, allow_external=allow_external)


def _rows_nxtomo(path, rows, *, allow_external=False, size=None) -> list[Measurement]:
    from .tomo import import_nxtomo_rows

    return import_nxtomo_rows(path, rows, size, allow_external=allow_external)


def _read_own(path, *, allow_external=False) -> Measurement:
    from ..measurement_file import read_measurement

    return read_measurement(path, allow_external=allow_external)


def _read_image(path, *, allow_external=False, operator=None, options=None, noise=0.0, seed=0, size=None,
                dataset=None, units="a.u.", pixel_size=1.0, pixel_unit="px", slice=None) -> Measurement:
    from .image import read_image, simulate

    if operator is None:
        raise InputError(f"File {path} is an image, not a measurement; make a measurement from it with "
                         "diffrecon simulate.")
    image = read_image(path, dataset, allow_external=allow_external, slice=slice)
    return simulate(image, operator, options, noise=noise, seed=seed, units=units, pixel_size=pixel_size,
                    pixel_unit=pixel_unit, size=size, title=f"{Path(path).name} simulated {operator}")


def _read_physical(path, *, allow_external=False, operator=None, options=None, noise=0.0, seed=0, size=None,
                   slice=None, modality=None, mu_water=None, units=None, pixel_size=None,
                   pixel_unit=None) -> Measurement:
    from .physical import read_physical, simulate_physical

    if operator is None:  # before any pixel is read
        raise InputError(f"File {path} is an image, not a measurement; make a measurement from it with "
                         "diffrecon simulate.")
    img = read_physical(path, slice=slice, modality=modality, mu_water=mu_water, allow_external=allow_external)
    return simulate_physical(img, path, operator=operator, options=options, noise=noise, seed=seed, size=size,
                             units=units, pixel_size=pixel_size, pixel_unit=pixel_unit)


def _sniff_dicom(path: Path) -> bool:
    from .dicom import is_dicom

    return is_dicom(path)


def _sniff_nifti(path: Path) -> bool:
    from .nifti import is_nifti

    return is_nifti(path)


# ------------------------------------------------------------------------------ recognising
def _is_fastmri(f: h5py.File) -> bool:
    return isinstance(f.get("kspace"), h5py.Dataset)


def _is_dxchange(f: h5py.File) -> bool:
    exchange = f.get("exchange")
    return isinstance(exchange, h5py.Group) and isinstance(exchange.get("data"), h5py.Dataset)


def _is_nxtomo(f: h5py.File) -> bool:
    for name in f:
        entry = f.get(name)
        if (isinstance(entry, h5py.Group) and attr_str(entry.attrs, "NX_class") == "NXentry"
                and isinstance(entry.get("instrument/detector/data"), h5py.Dataset)):
            return True
    return False


_SLICE = ImportOption("slice", int, "slice or detector row (default: the middle one)")
_SIZE = ImportOption("size", int, "image size in pixels (default: as stored)")
_SIMULATE = (ImportOption("operator", str, "forward model to simulate (see diffrecon simulate)"),
             ImportOption("options", dict, "options of the forward model"),
             ImportOption("noise", float, "noise standard deviation in the image's units"),
             ImportOption("seed", int, "seed of the mask and the noise"), _SIZE)
_PHYSICAL = (*_SIMULATE, _SLICE,
             ImportOption("modality", str, "auto (DICOM: from the file), ct (Hounsfield units to 1/cm) or other"),
             ImportOption("mu_water", float, "attenuation of water in 1/cm for CT (default 0.193, ~70 keV)"),
             ImportOption("units", str, "override the unit read from the file"),
             ImportOption("pixel_size", float, "override the pixel size read from the file"),
             ImportOption("pixel_unit", str, "override the pixel unit read from the file"))

#: Every format, in the order :func:`detect` tries them.
IMPORTERS: dict[str, ImporterInfo] = {i.name: i for i in (
    ImporterInfo("image", "an image", "a TIFF or PNG file", _read_image, sniff_file=lambda p: image_format(p) is not None,
                 options=(*_SIMULATE, ImportOption("slice", int, "slice of a TIFF stack (default: the middle one)"),
                          ImportOption("dataset", str, "dataset of an HDF5 image"),
                          ImportOption("units", str), ImportOption("pixel_size", float), ImportOption("pixel_unit", str)),
                 suffixes=IMAGE_SUFFIXES, imported=False, needs_operator=True),
    ImporterInfo("dicom", "a DICOM image or series", "DICM after a 128-byte preamble (a file, or a folder of slices)",
                 _read_physical, sniff_file=_sniff_dicom, options=_PHYSICAL, suffixes=(".dcm", ".dicom", ".ima"),
                 imported=False, needs_operator=True),
    ImporterInfo("nifti", "a NIfTI volume", "a NIfTI-1 or NIfTI-2 header (.nii, .nii.gz)", _read_physical,
                 sniff_file=_sniff_nifti, options=_PHYSICAL, suffixes=(".nii", ".nii.gz"), imported=False,
                 needs_operator=True),
    ImporterInfo("diffrecon", "a diffrecon measurement or result", "a diffrecon_format root attribute", _read_own,
                 sniff=lambda f: "diffrecon_format" in f.attrs, suffixes=(".h5", ".hdf5", ".nxs"), imported=False),
    ImporterInfo("fastmri", "fastMRI k-space", "/kspace", _read_fastmri, sniff=_is_fastmri,
                 options=(_SLICE, _SIZE,
                          ImportOption("acceleration", float, "retrospective undersampling of fully sampled k-space"),
                          ImportOption("center_fraction", float, "fully sampled centre of the retrospective mask"),
                          ImportOption("seed", int, "seed of the retrospective mask"),
                          ImportOption("coils", str, "auto: estimate coil maps; none: single-coil, complex image")),
                 read_rows=_rows_fastmri),
    ImporterInfo("dxchange", "APS Data Exchange projections", "/exchange/data", _read_dxchange, sniff=_is_dxchange,
                 options=(_SLICE, _SIZE), read_rows=_rows_dxchange),
    ImporterInfo("nxtomo", "NeXus NXtomo projections", "an NXentry with instrument/detector/data", _read_nxtomo,
                 sniff=_is_nxtomo, options=(_SLICE, _SIZE), suffixes=(".nxs", ".nx", ".h5", ".hdf5"),
                 read_rows=_rows_nxtomo),
)}


def importer(name: str) -> ImporterInfo:
    """The format ``name``; an unknown one is refused with the list of valid ones."""
    try:
        return IMPORTERS[name]
    except (KeyError, TypeError):
        raise InputError(f"Import format {name!r} is unknown; valid formats are auto, {', '.join(IMPORTERS)}.") from None


def import_formats() -> tuple[str, ...]:
    """The foreign formats ``diffrecon import`` converts."""
    return tuple(name for name, i in IMPORTERS.items() if i.imported)


def detect(path: str | os.PathLike, *, allow_external: bool = False) -> ImporterInfo:
    """The format of ``path``, from its content (its first bytes, else its HDF5 layout)."""
    path = Path(path)
    for info in IMPORTERS.values():
        if info.sniff_file is not None and info.sniff_file(path):
            return info
    with open_readonly(path, allow_external=allow_external) as f:
        for info in IMPORTERS.values():
            if info.sniff is not None and info.sniff(f):
                return info
    layouts = ", ".join(f"{i.name}: {i.layout}" for i in IMPORTERS.values() if i.imported)
    raise InputError(f"File {path} matches no import format ({layouts}); name the format explicitly.")


def open_measurement(path: str | os.PathLike, format: str = "auto", *, allow_external: bool = False,
                     **options: Any) -> Measurement:
    """The measurement in ``path`` in any registered format (``auto``: :func:`detect`). Options the
    format does not take are refused unless None (not given)."""
    info = detect(path, allow_external=allow_external) if format == "auto" else importer(format)
    given = {k: v for k, v in options.items() if v is not None}
    for name in given:
        if name not in info.option_names:
            takers = [i.title for i in IMPORTERS.values() if name in i.option_names]
            where = f"{' and '.join(takers)} only" if takers else "no format"
            raise InputError(f"Import of {path}: {name} applies to {where}, not to {info.title}.")
    return info.read(Path(path), allow_external=allow_external, **given)


def open_rows(path: str | os.PathLike, rows: tuple[int, int], format: str = "auto", *, allow_external: bool = False,
              **options: Any) -> list[Measurement]:
    """Rows (or slices) ``first .. end - 1`` of ``path`` in a format with ranges (fastMRI, Data
    Exchange, NXtomo): one measurement each, one forward model and noise level for all."""
    info = detect(path, allow_external=allow_external) if format == "auto" else importer(format)
    if info.read_rows is None:
        ranged = ", ".join(i.title for i in IMPORTERS.values() if i.read_rows is not None)
        raise InputError(f"Import of {path}: a range of rows applies to {ranged} only, not to {info.title}.")
    given = {k: v for k, v in options.items() if v is not None}
    for name in given:
        if name == "slice" or name not in info.option_names:
            raise InputError(f"Import of {path}: {name} does not apply to a range of rows of {info.title}.")
    return info.read_rows(Path(path), rows, allow_external=allow_external, **given)
