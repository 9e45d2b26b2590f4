"""A range of detector rows (Data Exchange, NXtomo) or k-space slices (fastMRI) as a volume
measurement, with the distance between its slices in pixels of a slice."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..measurement import Measurement
from .measurement_file import VolumeMeasurement, is_volume_measurement, read_volume_measurement


def slice_distance(m: Measurement) -> float:
    """The distance between neighbouring imported slices in pixels of the image: detector rows are
    one detector pixel apart (an image pixel is ``detector_binning`` of them); MRI slices their
    thickness from the ISMRMRD header over the pixel size, 1 where the header does not say."""
    attrs = m.attrs or {}
    if "detector_binning" in attrs:
        return 1.0 / float(attrs["detector_binning"])
    thickness = attrs.get("slice_thickness_mm")
    if thickness and m.pixel_unit == "mm" and m.pixel_size > 0:
        return float(thickness) / float(m.pixel_size)
    return 1.0


def import_volume(path: str | os.PathLike, rows: tuple[int, int], format: str = "auto", *,
                  allow_external: bool = False, **options: Any) -> VolumeMeasurement:
    """Rows ``first .. end - 1`` (end excluded) of ``path`` as a :class:`VolumeMeasurement`: a
    volume measurement file's own slices, or an importer's range (``options`` as the importer's,
    ``slice`` excepted)."""
    from ..io.importers import open_rows

    if format in ("auto", "volume-measurement") and is_volume_measurement(path):
        return read_volume_measurement(path, rows=rows, allow_external=allow_external)
    slices = open_rows(path, rows, format, allow_external=allow_external, **options)
    return VolumeMeasurement(slices, slice_distance(slices[0]), None, str(Path(path)))
