"""Small synthetic files of the five import formats for the ``import_formats`` screenshots: a
fastMRI k-space file, a Data Exchange and an NXtomo tomography file, a DICOM CT series and a NIfTI
volume, 64 x 64 phantoms each (a few hundred kB in all). The DICOM and NIfTI files and the NXtomo
layout come from the test helpers (tests/medical_files.py, tests/test_importers.py)."""
from __future__ import annotations

import sys
from pathlib import Path

import h5py
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))

from medical_files import write_dicom, write_nifti  # noqa: E402
from test_importers import nxtomo_file  # noqa: E402

from diffrecon.coils import fft2c, ifft2c, rss  # noqa: E402
from diffrecon.operators import ParallelBeamCT, birdcage_maps  # noqa: E402
from diffrecon.phantoms import phantom  # noqa: E402
from diffrecon.volume.phantom import phantom_volume  # noqa: E402

SIZE = 64


def write_fastmri(path: Path, coils: int = 4, slices: int = 3) -> Path:
    """Fully sampled multi-coil k-space of ``slices`` phantoms in the fastMRI layout."""
    images = np.stack([phantom(SIZE, 7 + s) for s in range(slices)])
    maps = birdcage_maps((SIZE, SIZE), coils)
    kspace = fft2c(maps[None] * images[:, None]).astype(np.complex64)
    with h5py.File(path, "w") as f:
        f.create_dataset("kspace", data=kspace)
        f.create_dataset("reconstruction_rss", data=rss(ifft2c(kspace), axis=1).astype(np.float32))
        f.attrs["acquisition"] = "CORPD_FBK"
        f.create_dataset("ismrmrd_header", data=np.bytes_(
            f"<ismrmrdHeader><encoding><encodedSpace><matrixSize><x>{SIZE}</x><y>{SIZE}</y><z>1</z></matrixSize>"
            "<fieldOfView_mm><x>128.0</x><y>128.0</y><z>3</z></fieldOfView_mm></encodedSpace></encoding>"
            "</ismrmrdHeader>"))
    return path


def _counts(n_angles: int = 90, rows: int = 3):
    """Raw detector counts of a phantom (one per detector row), a flat field and a dark field."""
    angles = np.arange(n_angles) * 180.0 / n_angles
    op = ParallelBeamCT((1, SIZE, SIZE), angles, n_detectors=SIZE)
    x = np.stack([phantom(SIZE, 11 + r) * 0.05 for r in range(rows)])
    sino = op.A(torch.from_numpy(x)[:, None])[:, 0].numpy().astype(np.float64)  # (rows, angles, detectors)
    flat = 1000.0 + 50.0 * np.random.default_rng(0).random((rows, SIZE))
    dark = np.full((rows, SIZE), 10.0)
    proj = dark[None] + (flat - dark)[None] * np.exp(-sino.transpose(1, 0, 2))
    return angles, proj.astype(np.float32), flat.astype(np.float32), dark.astype(np.float32)


def write_dxchange(path: Path) -> Path:
    angles, proj, flat, dark = _counts()
    with h5py.File(path, "w") as f:
        f.create_dataset("exchange/data", data=proj)
        f.create_dataset("exchange/data_white", data=np.stack([flat, flat]))
        f.create_dataset("exchange/data_dark", data=dark[None])
        f.create_dataset("exchange/theta", data=angles).attrs["units"] = "degrees"
    return path


def write_nxtomo(path: Path) -> Path:
    angles, proj, flat, dark = _counts()
    nxtomo_file(path, np.concatenate([dark[None], np.stack([flat, flat]), proj]),
                np.array([2, 1, 1] + [0] * len(proj), np.int32), np.concatenate([[0.0, 0.0, 0.0], angles]),
                units="degree")
    return path


def _volume(n: int = 9) -> np.ndarray:
    return phantom_volume(n, SIZE, seed=3)


def write_dicom_series(folder: Path) -> Path:
    """A CT series of 9 slices 2.5 mm apart, air -1000 HU to bone +1000 HU."""
    folder.mkdir(parents=True, exist_ok=True)
    hu = -1000.0 + 2000.0 * _volume()
    for k, image in enumerate(hu):
        write_dicom(folder / f"IM{k:04d}", np.round(image + 1024), z=2.5 * k, instance=k + 1,
                    series="1.2.826.0.1.3680043.8.498.1", spacing=(2.0, 2.0))
    return folder


def write_nifti_volume(path: Path) -> Path:
    """An MR-like volume (x, y, z) of 9 slices, 2 x 2 x 3 mm voxels."""
    return write_nifti(path, np.ascontiguousarray(np.transpose(100.0 * _volume(), (2, 1, 0))), zooms=(2.0, 2.0, 3.0))
