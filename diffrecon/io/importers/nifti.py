"""NIfTI-1/2 volumes (nibabel, optional extra ``nifti``), ``.nii`` or gzipped ``.nii.gz``, as a
ground truth in physical units to simulate from.

The header is checked first (dimensions, data type, the bytes they need, and for an
uncompressed file that the file holds them); then only the chosen slice ``data[:, :, k]`` is
read, scaled by ``scl_slope``/``scl_inter`` (nibabel applies them). The slice is shown with the
first voxel axis across and the second upwards (radiological rows for an RAS+ volume); the
orientation codes of the affine are recorded. Pixel size from the voxel sizes and ``xyzt_units``.
Units: see :mod:`.physical` (``modality="ct"`` converts Hounsfield units).
"""
from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np

from ...errors import InputError, printable
from ...messages import quiet_libraries
from ._common import pick_index
from .physical_base import PhysicalImage, check_modality, check_mu_water, check_plane, physical_slice, spacing_mm

_GZIP = b"\x1f\x8b"
_TO_MM = {"meter": 1000.0, "mm": 1.0, "micron": 1e-3, "unknown": 1.0}


def _head(path: Path, n: int = 544) -> bytes:
    try:
        with path.open("rb") as f:
            head = f.read(n)
        if head.startswith(_GZIP):
            with gzip.open(path, "rb") as g:
                return g.read(n)
        return head
    except (OSError, EOFError, gzip.BadGzipFile):
        return b""


def is_nifti(path: Path) -> bool:
    """NIfTI-1 (``sizeof_hdr`` 348, magic ``n+1``/``ni1`` at 344) or NIfTI-2 (540, ``n+2``/``ni2`` at 4)."""
    if not path.is_file():
        return False
    head = _head(path)
    if len(head) >= 348 and head[344:347] in (b"n+1", b"ni1") and 348 in (
            struct.unpack("<i", head[:4])[0], struct.unpack(">i", head[:4])[0]):
        return True
    return len(head) >= 540 and head[4:7] in (b"n+2", b"ni2") and 540 in (
        struct.unpack("<i", head[:4])[0], struct.unpack(">i", head[:4])[0])


def _load(path: Path):
    try:
        import nibabel
    except ImportError as err:
        raise InputError(f"NIfTI files need the nibabel package ({err}); install diffrecon[nifti].") from None
    try:
        with quiet_libraries("nibabel"):
            return nibabel, nibabel.load(str(path), mmap=False)
    except Exception as err:  # noqa: BLE001 - nibabel raises many types for damaged headers
        raise InputError(f"File {path} cannot be read as NIfTI; it may be truncated or damaged "
                         f"({printable(err)[:160]}).") from None


def read_nifti(path: str | os.PathLike, slice=None, *, modality="auto", mu_water=None) -> PhysicalImage:
    """Axial slice ``slice`` (third voxel axis; None: the middle one) of a NIfTI volume."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"File {path} does not exist; expected a NIfTI volume (.nii or .nii.gz).")
    modality, mu_water = check_modality(modality, path), check_mu_water(mu_water, path)
    nibabel, img = _load(path)
    header = img.header
    shape = tuple(int(s) for s in img.shape)
    if len(shape) < 2 or len(shape) > 3 and any(s != 1 for s in shape[3:]):
        raise InputError(f"File {path} holds a volume of shape {shape}; expected a 2-D image or a 3-D volume "
                         "(one time point).")
    shape = (*shape[:3], *([1] * (3 - min(len(shape), 3))))
    try:
        itemsize = np.dtype(header.get_data_dtype()).itemsize
    except TypeError:
        itemsize = 8
    check_plane((shape[0], shape[1]), itemsize, path, "a NIfTI slice")
    if not str(path).endswith(".gz"):  # a truncated file is refused before any voxel is read
        need = int(header.get_data_offset()) + int(np.prod(shape, dtype=np.int64)) * itemsize
        if path.stat().st_size < need:
            raise InputError(f"File {path} is {path.stat().st_size} bytes but its header declares {shape} voxels "
                             f"needing {need}; the file is truncated or the header is wrong.")
    k = pick_index(slice, shape[2], f"{shape[2]} slices", path)
    try:
        with quiet_libraries("nibabel"):
            proxy = img.dataobj
            data = np.asarray(proxy[..., k] if len(img.shape) == 3 else proxy, dtype=np.float64)
    except Exception as err:  # noqa: BLE001 - truncated gzip streams, bad offsets
        raise InputError(f"File {path}: its voxels cannot be read; the file may be truncated or damaged "
                         f"({printable(err)[:160]}).") from None
    data = data.reshape(shape[0], shape[1])
    plane = data.T[::-1]  # rows: second voxel axis, top = last; columns: first voxel axis
    zooms = [float(z) for z in header.get_zooms()[:3]] + [1.0] * 3
    space = header.get_xyzt_units()[0] if hasattr(header, "get_xyzt_units") else "unknown"
    scale = _TO_MM.get(space, 1.0)
    pixel_mm = spacing_mm(zooms[1] * scale, zooms[0] * scale, path, "voxel sizes")
    try:
        codes = "".join(nibabel.aff2axcodes(img.affine))
    except Exception:  # noqa: BLE001 - a degenerate affine has no orientation
        codes = "unknown"
    slope, inter = header.get_slope_inter() if hasattr(header, "get_slope_inter") else (None, None)
    attrs = {"source_format": "nifti", "slice": k, "slices": shape[2], "orientation": codes,
             "slice_spacing_mm": zooms[2] * scale, "scl_slope": float(slope) if slope is not None else 1.0,
             "scl_inter": float(inter) if inter is not None else 0.0}
    return physical_slice(plane, path, ct=modality == "ct", mu_water=mu_water, pixel_mm=pixel_mm, attrs=attrs)
