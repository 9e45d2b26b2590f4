"""Plain images (TIFF, PNG, an HDF5 dataset) and simulated measurements built from them.

:func:`read_image` returns the stored values as float32 ``(C, H, W)`` without rescaling (a uint8
PNG reads as 0..255); :func:`simulate` turns such a ground truth into a measurement under one of
the forward models, with noise of a given standard deviation in the image's own units.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from ...errors import InputError, printable
from ...measurement import Measurement
from ...messages import quiet_libraries
from ..h5 import open_readonly, require_dataset
from ...problems import build, problem, simulate_names, simulate_options
from ._common import MAX_SIDE, check_size_arg, pick_index

_MAX_CHANNELS = 4
_TIFF = (".tif", ".tiff")
_PNG = (".png",)
_H5 = (".h5", ".hdf5", ".hdf", ".nxs", ".he5")
IMAGE_SUFFIXES = _TIFF + _PNG
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic and BigTIFF, both byte orders


def image_format(path: Path) -> str | None:
    """``tiff`` or ``png`` from the first bytes of ``path`` (else from its suffix), None otherwise.
    A DICOM file whose preamble is a TIFF header (``DICM`` at byte 128) is DICOM, not TIFF."""
    try:
        with path.open("rb") as f:
            head = f.read(132)
    except OSError:
        head = b""
    if head[128:132] == b"DICM":
        return None
    suffix = path.suffix.lower()
    if head[:4] in _TIFF_MAGIC or (suffix in _TIFF and not head.startswith(_PNG_MAGIC)):
        return "tiff"
    if head.startswith(_PNG_MAGIC) or suffix in _PNG:
        return "png"
    return None


def _to_chw(arr: np.ndarray, where: str) -> np.ndarray:
    """(H, W), (H, W, C<=4) or (C<=4, H, W) as float32 (C, H, W); alpha channels dropped."""
    arr = np.asarray(arr)
    if arr.dtype.kind not in "fiub":
        raise InputError(f"{where} holds dtype {arr.dtype}; expected a real numeric image.")
    if arr.ndim == 2:
        arr = arr[None]
    elif arr.ndim == 3 and arr.shape[-1] <= _MAX_CHANNELS < arr.shape[0]:
        arr = np.moveaxis(arr, -1, 0)
        if arr.shape[0] in (2, 4):  # grey + alpha, RGB + alpha
            arr = arr[:-1]
    elif not (arr.ndim == 3 and arr.shape[0] <= _MAX_CHANNELS):
        raise InputError(f"{where} has shape {arr.shape}; expected an image (H, W), (H, W, C) or "
                         f"(C, H, W) with at most {_MAX_CHANNELS} channels.")
    if min(arr.shape[1:]) < 2 or max(arr.shape[1:]) > MAX_SIDE:
        raise InputError(f"{where} has shape {arr.shape}; image sides must lie in 2..{MAX_SIDE}.")
    arr = arr.astype(np.float32)
    if not np.isfinite(arr).all():
        raise InputError(f"{where} contains NaN or Inf values; all pixel values must be finite.")
    return arr


def _check_claimed(shape, path: Path) -> None:
    if any(int(s) > MAX_SIDE for s in shape) or int(np.prod([int(s) for s in shape])) > MAX_SIDE * MAX_SIDE * 4:
        raise InputError(f"File {path} claims an image of shape {tuple(shape)}; sides up to {MAX_SIDE} are accepted.")


def _is_stack(shape) -> bool:
    """(N, H, W) with more slices than an image has channels: a stack of slices (TIFF pages)."""
    return len(shape) == 3 and int(shape[0]) > _MAX_CHANNELS and int(shape[-1]) > _MAX_CHANNELS


def _read_tiff(path: Path, slice=None) -> np.ndarray:
    """The image in a TIFF file; of a stack of slices (one page each), page ``slice`` (None: the
    middle one), the only page decoded."""
    import tifffile

    try:
        with quiet_libraries("tifffile"), tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            if _is_stack(series.shape):
                _check_claimed(series.shape[1:], path)
                k = pick_index(slice, int(series.shape[0]), f"{int(series.shape[0])} slices", path)
                if len(series.pages) == series.shape[0]:
                    return np.asarray(series.pages[k].asarray())
                _check_claimed(series.shape, path)
                return series.asarray()[k]
            if slice is not None:
                raise InputError(f"Import of {path}: slice applies to a stack of slices, and the file holds one "
                                 f"image of shape {tuple(series.shape)}.")
            _check_claimed(series.shape, path)
            return series.asarray()
    except InputError:
        raise
    except Exception as err:  # tifffile raises many types for damaged files
        raise InputError(f"File {path} cannot be read as TIFF; it may be truncated or damaged "
                         f"({printable(err)[:160]}).") from None


def _read_png(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with quiet_libraries("PIL"), Image.open(path) as im:
            _check_claimed((im.height, im.width), path)  # checked before the pixels are decoded
            if im.mode == "P":
                im = im.convert("RGBA")
            return np.asarray(im)
    except InputError:
        raise
    except Exception as err:  # PIL raises OSError, SyntaxError, ValueError, DecompressionBombError
        raise InputError(f"File {path} cannot be read as PNG; it may be truncated or damaged "
                         f"({printable(err)[:160]}).") from None


def _read_h5(path: Path, dataset: str | None, allow_external: bool) -> np.ndarray:
    with open_readonly(path, allow_external=allow_external) as f:
        if dataset is None:
            found: list[str] = []
            f.visititems(lambda name, obj: found.append(name) if isinstance(obj, h5py.Dataset)
                         and obj.ndim in (2, 3) and obj.dtype.kind in "fiu" else None)
            if len(found) != 1:
                listed = ", ".join(found[:5]) or "none"
                raise InputError(f"File {path} holds {len(found)} image-like datasets ({listed}); name one "
                                 "with dataset=.")
            dataset = found[0]
        ds = require_dataset(f, dataset, path, kinds="fiub", what="a real 2-D or 3-D image")
        if ds.ndim not in (2, 3):
            raise InputError(f"File {path}: dataset {ds.name} has shape {ds.shape}; expected a 2-D or 3-D image.")
        _check_claimed(ds.shape, path)
        try:
            return np.asarray(ds[()])
        except (OSError, RuntimeError, ValueError) as err:
            raise InputError(f"File {path}: dataset {ds.name} cannot be read; the file may be damaged ({err}).") from None


def read_image(path: str | os.PathLike, dataset: str | None = None, *, allow_external: bool = False,
               slice: int | None = None) -> np.ndarray:
    """The image in a TIFF, PNG or HDF5 file (``dataset`` names the HDF5 dataset) as float32
    ``(C, H, W)``, values as stored; ``slice`` picks one slice of a TIFF stack (None: the middle
    one). :func:`diffrecon.io.importers.read_image` reads DICOM and NIfTI files as well."""
    path = Path(path)
    if not path.is_file() and not path.is_dir():
        raise InputError(f"File {path} does not exist; expected a TIFF, PNG, HDF5, DICOM or NIfTI image.")
    suffix, kind = path.suffix.lower(), image_format(path)
    if kind == "tiff":
        arr, where = _read_tiff(path, slice), f"File {path}"
    elif kind == "png":
        arr, where = _read_png(path), f"File {path}"
    elif suffix in _H5 or h5py.is_hdf5(path):
        arr = _read_h5(path, dataset, allow_external)
        where = f"File {path}" + (f", dataset {dataset}," if dataset else "")
    else:
        if path.is_dir():
            raise InputError(f"Folder {path} holds no DICOM slices; an image is a TIFF, PNG, HDF5, DICOM or NIfTI "
                             "file, or a folder of DICOM slices.")
        raise InputError(f"File {path} has suffix {suffix!r}; valid image files are .tif, .tiff, .png and .h5.")
    return _to_chw(arr, where)


# ------------------------------------------------------------------------------ simulation
#: Options of each kind of simulated measurement and their defaults (from :mod:`diffrecon.problems`).
SIMULATE_OPTIONS: dict[str, dict[str, Any]] = simulate_options()


def resample(x: np.ndarray, size: int) -> np.ndarray:
    """``(C, H, W)`` resampled to ``(C, size, size)``: bilinear, anti-aliased when shrinking."""
    if x.shape[1:] == (size, size):
        return x
    out = torch.nn.functional.interpolate(torch.from_numpy(np.ascontiguousarray(x))[None], size=(size, size),
                                          mode="bilinear", align_corners=False, antialias=True)
    return out[0].numpy().astype(np.float32)


def simulate(image: np.ndarray, operator_kind: str, options: dict[str, Any] | None = None,
             noise: float = 0.0, seed: int = 0, *, units: str = "a.u.", pixel_size: float = 1.0,
             pixel_unit: str = "px", title: str = "", size: int | None = None) -> Measurement:
    """A measurement ``y = A x + noise`` of the ground truth ``image`` ((H, W) or (C, H, W)).

    ``noise`` is the standard deviation of white Gaussian noise in the image's units (per real
    component for complex measurements); ``seed`` fixes both the random mask and the noise.
    ``options`` may set the options of the problem preset (:mod:`diffrecon.problems`); others are refused.
    ``size`` resamples the image to ``size`` x ``size`` first (area-averaged when shrinking, so
    a prior's resolution can be met). ``pixel_size`` reaches the CT forward model (line
    integrals in image units times length). The file states no value range: the image's own
    min/max would hand the reconstruction information a real measurement does not have.
    """
    if operator_kind not in simulate_names():
        raise InputError(f"Simulated forward model {operator_kind!r} is unknown; valid kinds are "
                         f"{', '.join(simulate_names())}.")
    opts = problem(operator_kind).resolve(options)
    if not (isinstance(noise, (int, float)) and np.isfinite(noise) and noise >= 0):
        raise InputError(f"Simulation noise is {noise!r}; expected a finite standard deviation >= 0.")
    x = _to_chw(np.asarray(image), "The image to simulate from")
    if size is not None:
        x = resample(x, check_size_arg(size, "the image to simulate from"))
    if not (isinstance(pixel_size, (int, float)) and np.isfinite(pixel_size) and pixel_size > 0):
        raise InputError(f"Simulation pixel size is {pixel_size!r}; expected a positive number.")
    try:
        op = build(operator_kind, x.shape, opts, noise=noise, seed=seed, pixel_size=pixel_size)
    except (TypeError, ValueError, OverflowError, ZeroDivisionError) as err:
        if isinstance(err, InputError):
            raise
        raise InputError(f"Options {opts} are not valid for {operator_kind} ({err}).") from None
    generator = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        y = op.simulate(torch.from_numpy(x)[None], generator)[0].numpy()
    return Measurement(
        y=y, operator=op.to_spec(), noise_sigma=float(noise), units=units, value_range=None,
        ground_truth=x, pixel_size=pixel_size, pixel_unit=pixel_unit,
        title=title or f"simulated {operator_kind}", attrs={"simulated": operator_kind, "seed": int(seed)},
    )
