"""Importers of the formats scientists already have, and simulated measurements.

Each returns a :class:`~diffrecon.measurement.Measurement` (or, for :func:`read_image`, a float32
``(C, H, W)`` array); a bad file or setting raises :class:`~diffrecon.errors.InputError`. Files
are opened read-only and never modified. See docs/importers.md.

:data:`IMPORTERS` registers every format; ``detect(path)`` names a file's format from its content
and ``open(path, **options)`` reads any of them (:mod:`.registry`).
"""
from __future__ import annotations

from .fastmri import import_fastmri
from .image import SIMULATE_OPTIONS, simulate
from .physical import PhysicalImage, read_image, read_physical
from .registry import (IMPORTERS, ImporterInfo, ImportOption, detect, import_formats, importer,
                       open_measurement, open_rows)
from .tomo import import_dxchange, import_nxtomo

open = open_measurement  # noqa: A001 - ``importers.open(path)``, as the module is meant to be read

__all__ = ["IMPORTERS", "ImporterInfo", "ImportOption", "detect", "import_formats", "importer", "open",
           "open_measurement", "open_rows", "import_fastmri", "import_dxchange", "import_nxtomo", "read_image", "simulate",
           "read_physical", "PhysicalImage",
           "SIMULATE_OPTIONS"]
