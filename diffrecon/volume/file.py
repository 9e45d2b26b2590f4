"""A volume result as an HDF5 file, written atomically.

Layout: datasets ``mean`` and ``std`` ``(Z, C, H, W)`` float32 in the slices' physical units,
``slice_psnr`` ``(Z,)`` where the slices had ground truth; attributes ``format``
(``diffrecon-volume``), ``units``, ``n_samples``, ``complete``, and ``metrics`` and
``provenance`` as JSON text.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np

from ..io.atomic import atomic_write
from .reconstruct import VolumeResult

VOLUME_FORMAT = "diffrecon-volume"


def write_volume(path: str | os.PathLike, result: VolumeResult) -> Path:
    def write(tmp: Path) -> None:
        with h5py.File(tmp, "w") as f:
            f.attrs.update(format=VOLUME_FORMAT, units=result.units, n_samples=result.n_samples,
                           complete=bool(result.complete), metrics=json.dumps(result.metrics),
                           provenance=json.dumps(result.provenance, default=str))
            f.create_dataset("mean", data=np.asarray(result.mean, np.float32))
            f.create_dataset("std", data=np.asarray(result.std, np.float32))
            if result.slice_psnr is not None:
                f.create_dataset("slice_psnr", data=np.asarray(result.slice_psnr, np.float64))

    return atomic_write(path, write)
