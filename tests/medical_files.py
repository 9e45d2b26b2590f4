"""Small DICOM, NIfTI and TIFF-stack files for the tests (pydicom, nibabel, tifffile)."""
from __future__ import annotations

from pathlib import Path

import nibabel
import numpy as np
import tifffile
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, MRImageStorage, generate_uid


def write_dicom(path, stored: np.ndarray, *, modality="CT", z=0.0, series=None, instance=1, spacing=(0.5, 0.5),
                slope=1.0, intercept=-1024.0, orientation=(1, 0, 0, 0, 1, 0), position=None) -> Path:
    """A DICOM Part 10 file of int16 ``stored`` (rows, columns) or (frames, rows, columns)."""
    stored = np.asarray(stored, np.int16)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage if modality == "CT" else MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = modality
    ds.SeriesInstanceUID = series or generate_uid()
    ds.InstanceNumber = instance
    ds.Rows, ds.Columns = stored.shape[-2:]
    if stored.ndim == 3:
        ds.NumberOfFrames = stored.shape[0]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.PixelSpacing = list(spacing)
    ds.ImageOrientationPatient = list(orientation)
    ds.ImagePositionPatient = list(position if position is not None else (0.0, 0.0, z))
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    ds.PixelData = stored.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return Path(path)


def write_series(folder: Path, n=5, size=16, **kw) -> Path:
    """``n`` slices whose HU value is 100 x their position index; files named and numbered in a
    scrambled order, so only ImagePositionPatient tells the order."""
    folder.mkdir(parents=True, exist_ok=True)
    uid = generate_uid()
    for rank, k in enumerate(np.random.default_rng(3).permutation(n)):
        write_dicom(folder / f"IM{rank:04d}", np.full((size, size), 1024 + 100 * k), z=-20.0 + 2.5 * k,
                    series=uid, instance=n - rank, **kw)
    return folder


def write_nifti(path, data: np.ndarray, zooms=(0.8, 0.8, 2.0), slope=None, inter=None) -> Path:
    img = nibabel.Nifti1Image(np.asarray(data), np.diag([*zooms[:3], 1.0]))
    img.header.set_zooms(zooms[: np.asarray(data).ndim])
    img.header.set_xyzt_units("mm")
    if slope is not None:
        img.header.set_slope_inter(slope, inter)
    nibabel.save(img, str(path))
    return Path(path)


def write_stack(path, n=9, size=16) -> Path:
    tifffile.imwrite(path, np.stack([np.full((size, size), k, np.uint16) for k in range(n)]))
    return Path(path)



def set_bytes(path: Path, offset: int, raw: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(raw)


def huge_dicom(path: Path) -> Path:
    """A 16 x 16 DICOM slice whose Rows and Columns say 65535."""
    write_dicom(path, np.zeros((16, 16)))
    for tag in (b"\x28\x00\x10\x00US", b"\x28\x00\x11\x00US"):
        set_bytes(path, path.read_bytes().index(tag) + 8, b"\xff\xff")
    return path


def huge_nifti(path: Path) -> Path:
    """A 16 x 16 x 2 NIfTI volume whose header says 30000 x 30000 x 2."""
    write_nifti(path, np.zeros((16, 16, 2), np.float32))
    set_bytes(path, 42, np.array([30000, 30000, 2], "<i2").tobytes())
    return path
