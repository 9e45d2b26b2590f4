"""Importers of the formats scientists already have, and simulated measurements.

Each returns a :class:`~diffrecon.measurement.Measurement` (or, for :func:`read_image`, a float32
``(C, H, W)`` array); a bad file or setting raises :class:`~diffrecon.errors.InputError`. Files
are opened read-only and never modified. See docs/importers.md.
"""
from __future__ import annotations

from .fastmri import import_fastmri
from .image import SIMULATE_OPTIONS, read_image, simulate
from .tomo import import_dxchange, import_nxtomo

__all__ = ["import_fastmri", "import_dxchange", "import_nxtomo", "read_image", "simulate", "SIMULATE_OPTIONS"]
