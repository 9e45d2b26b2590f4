"""Volumes from a 2D prior: a stack of slices of one forward model reconstructed together.

Each diffusion step denoises every slice with the 2D prior (in batches of slices) and then takes
one data step on the whole volume that couples neighbouring slices along z (DiffusionMBIR,
Chung, Ryu, McCann, Klasky & Ye, CVPR 2023; DDS's 3D mode), here inside DiffPIR's
half-quadratic splitting. ``lam_z = 0`` is slice-by-slice DiffPIR.
"""
from __future__ import annotations

from .file import VOLUME_FORMAT, write_volume
from .phantom import phantom_volume, volume_demo
from .reconstruct import VolumeFinished, VolumeResult, check_slices, reconstruct_volume, z_inconsistency

__all__ = ["VOLUME_FORMAT", "VolumeFinished", "VolumeResult", "check_slices", "phantom_volume", "reconstruct_volume",
           "volume_demo", "write_volume", "z_inconsistency"]
