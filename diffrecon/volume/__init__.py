"""Volumes from a 2D prior: a stack of slices of one forward model reconstructed together.

Each diffusion step denoises every slice with the 2D prior (in batches of slices) and then takes
the solver's data step on the whole volume with a term that couples neighbouring slices along z
(DiffusionMBIR, Chung, Ryu, McCann, Klasky & Ye, CVPR 2023; DDS's 3D mode), for DiffPIR (and its
posterior path), DDS and DDNM+. ``lam_z = 0`` is slice-by-slice reconstruction. Volume
measurements (a stack of sinograms or k-spaces with their one forward model) are read and written
by :mod:`.measurement_file`; the importers' row and slice ranges become one in :mod:`.imports`.
"""
from __future__ import annotations

from .file import VOLUME_FORMAT, read_volume, write_volume
from .measurement_file import (VOLUME_MEASUREMENT_FORMAT, VolumeMeasurement, is_volume_measurement,
                               read_volume_measurement, write_volume_measurement)
from .imports import import_volume, slice_distance
from .phantom import phantom_volume, volume_demo
from .reconstruct import (LAM_Z_ISOTROPIC, VolumeFinished, VolumeResult, check_slices, default_lam_z,
                          reconstruct_volume, z_inconsistency)
from .steps import VOLUME_SOLVERS

__all__ = ["LAM_Z_ISOTROPIC", "VOLUME_FORMAT", "VOLUME_MEASUREMENT_FORMAT", "VOLUME_SOLVERS", "VolumeFinished",
           "VolumeMeasurement", "VolumeResult", "check_slices", "default_lam_z", "import_volume", "is_volume_measurement",
           "phantom_volume", "read_volume", "read_volume_measurement", "reconstruct_volume", "volume_demo", "write_volume",
           "slice_distance", "write_volume_measurement", "z_inconsistency"]
