"""Stacks of representative images from files: an HDF5 stack, a folder of PNG/TIFF images or one
(multi-page) PNG/TIFF file, for ``diffrecon train --data`` and ``diffrecon calibrate --truths``.

:func:`read_image_stack` returns the stored values as float32 ``(k, C, H, W)`` chunks (the images
of a folder may differ in shape, so each is its own chunk), unscaled. Files are read like every
other input: an HDF5 file through :func:`~diffrecon.io.h5.open_readonly` (links to other files,
virtual datasets and external storage refused unless ``allow_external``), and the size of what
would be decoded is checked against a budget of :mod:`diffrecon.limits` before anything is
decoded. Each refusal is one sentence beginning with the caller's ``role`` ("Training data",
"Calibration images") and naming the file or dataset.

:func:`robust_range` gives the stack's 0.1th and 99.9th percentiles over all images (never per
image), the range both callers map to their own; :func:`crop_resize` centre-crops images to an
aspect and resizes them with antialiasing (area-like when shrinking, so thin structures are not
aliased away).
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError, printable
from ..limits import check_bytes, nbytes
from ..messages import quiet_libraries

IMAGE_SUFFIXES = (".png", ".tif", ".tiff")
ROBUST_PERCENTILES = (0.1, 99.9)
_SUBSAMPLE = 4_000_000
_CHUNK = 256


def read_image_stack(path: str | Path, n_images: int, *, dataset: str | None = None, allow_external: bool = False,
                     role: str = "Training data", budget: str = "training") -> tuple[list[np.ndarray], str]:
    """The first ``n_images`` images of ``path`` as float32 ``(k, C, H, W)`` chunks, and a phrase
    saying where they came from. ``path`` is a folder of PNG/TIFF images (name order, multi-page
    files as their pages), one PNG/TIFF file, or an HDF5 file with an (N,H,W) or (N,C,H,W) stack
    (``dataset`` names it when the file holds several)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{role} {path} does not exist; give an HDF5 file with an image stack, a folder of "
                         f"{_suffix_words()} images or one such image file.")
    if path.is_dir():
        return _folder(path, n_images, role, budget)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        pages = _read_image(path, role, budget)
        return [pages[:n_images, None]], f"{path.suffix.lstrip('.').upper()} {path.name} ({len(pages)} page(s))"
    return _hdf5(path, dataset, n_images, allow_external, role, budget)


def robust_range(raw: list[np.ndarray], source: str, role: str = "Training data") -> tuple[float, float]:
    """The 0.1th and 99.9th percentiles of all values (a seeded subsample when there are many)."""
    flat = np.concatenate([a.ravel() for a in raw])
    if not np.isfinite(flat).all():
        raise InputError(f"{role} {source} contains NaN or infinite values; give finite images.")
    if flat.size > _SUBSAMPLE:
        flat = flat[np.random.default_rng(0).choice(flat.size, _SUBSAMPLE, replace=False)]
    low, high = (float(v) for v in np.percentile(flat, ROBUST_PERCENTILES))
    if not high > low:
        raise InputError(f"{role} {source} is constant (robust range [{low}, {high}]); give images with contrast.")
    return low, high


def crop_resize(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, height, width): the largest centred crop of the target's aspect,
    then an antialiased bilinear resize (none when the crop already has the target's size)."""
    h, w = x.shape[-2:]
    if h * width > w * height:  # taller than the target: crop rows
        ch, cw = max(1, round(w * height / width)), w
    else:
        ch, cw = h, max(1, round(h * width / height))
    top, left = (h - ch) // 2, (w - cw) // 2
    x = x[..., top:top + ch, left:left + cw].float()
    if (ch, cw) != (height, width):
        x = F.interpolate(x, size=(height, width), mode="bilinear", antialias=True, align_corners=False)
    return x


def _suffix_words() -> str:
    return "/".join(s.lstrip(".").upper() for s in IMAGE_SUFFIXES)


def _kind(role: str) -> str:
    """'Training' of 'Training data': the word for one image or the folder of the role."""
    return role.split()[0]


def _hdf5(path: Path, dataset: str | None, n_images: int, allow_external: bool, role: str,
          budget: str) -> tuple[list[np.ndarray], str]:
    """The first ``n_images`` of a stack, as (k, C, H, W) chunks so resizing runs batched; the part
    read is checked against ``budget`` first, and a damaged file is one sentence."""
    import h5py

    from .h5 import check_read, open_readonly

    if not h5py.is_hdf5(path):
        raise InputError(f"{role} {path} is neither a folder, a {_suffix_words()} image nor an HDF5 file.")
    with open_readonly(path, allow_external=allow_external) as f:
        if dataset is None:
            stacks: list[str] = []
            f.visititems(lambda name, obj: stacks.append(name)
                         if isinstance(obj, h5py.Dataset) and obj.ndim in (3, 4) else None)
            if len(stacks) != 1:
                found = printable(", ".join(stacks[:6])) if stacks else "none"
                raise InputError(f"{role} {path}: name the image stack with --dataset "
                                 f"(3-D or 4-D datasets found: {found}).")
            dataset = stacks[0]
        ds = f.get(dataset)
        if not isinstance(ds, h5py.Dataset):
            raise InputError(f"{role} {path} has no dataset {printable(repr(dataset))}; give an (N,H,W) or "
                             "(N,C,H,W) dataset.")
        if ds.ndim not in (3, 4) or ds.dtype.kind not in "uif":
            raise InputError(f"{role} {path}:{printable(dataset)} has shape {ds.shape} and dtype {ds.dtype}; "
                             f"it must be a real (N,H,W) or (N,C,H,W) stack.")
        if ds.shape[-1] < 1 or ds.shape[-2] < 1:
            raise InputError(f"{role} {path}:{dataset} has shape {ds.shape}; its images are empty.")
        if ds.ndim == 4 and ds.shape[1] > 4:
            raise InputError(f"{role} {path}:{dataset} has {ds.shape[1]} channels; at most 4 are supported "
                             f"((N,H,W) or (N,C,H,W) with C <= 4).")
        check_read(ds, np.s_[:n_images], path, np.float32, budget)
        stack = np.asarray(ds[:n_images], np.float32)
    if stack.ndim == 3:
        stack = stack[:, None]
    return [stack[i:i + _CHUNK] for i in range(0, len(stack), _CHUNK)], f"HDF5 {path.name}:{dataset}"


def _read_image(path: Path, role: str, budget: str, already: int = 0) -> np.ndarray:
    """A file's pixels as (k, H, W): grayscale, colour reduced to luminance, multi-page as pages."""
    try:
        from PIL import Image

        with quiet_libraries("tifffile", "PIL"):
            warnings.simplefilter("error", Image.DecompressionBombWarning)  # an error, not a note on stderr
            if path.suffix.lower() == ".png":
                with Image.open(path) as im:
                    _budget_left(nbytes((im.height, im.width, 4), 4), path, already, role, budget)
                    # 16-bit and float PNGs keep their values; palette and colour become 8-bit luminance.
                    a = np.asarray(im if im.mode in ("L", "I", "I;16", "F") else im.convert("L"))
            else:
                import tifffile

                with tifffile.TiffFile(path) as tif:
                    series = tif.series[0]
                    _budget_left(nbytes(series.shape, max(4, series.dtype.itemsize)), path, already, role, budget)
                    a = series.asarray()
    except InputError:
        raise
    except Exception as err:  # noqa: BLE001 - any decoder failure is the file's fault
        raise InputError(f"{_kind(role)} image {path} cannot be read ({type(err).__name__}: "
                         f"{printable(str(err).strip().splitlines()[0] if str(err).strip() else '')[:160]}).") from None
    a = np.asarray(a, np.float32)
    if a.ndim == 3 and a.shape[-1] in (3, 4):
        a = a[..., :3] @ np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R BT.601 luminance
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3:
        raise InputError(f"{_kind(role)} image {path} has shape {a.shape}; give 2-D images or 3-D page stacks.")
    return a


def _budget_left(n: int, path: Path, already: int, role: str, budget: str) -> None:
    """Refuse decoding ``path`` (``n`` bytes) when the ``already`` bytes of the folder's earlier
    images plus it exceed ``budget``; nothing of it is decoded yet."""
    check_bytes(already + n, f"{_kind(role)} image {path} (with the {already} bytes of images before it)", budget)


def _folder(path: Path, n_images: int, role: str, budget: str) -> tuple[list[np.ndarray], str]:
    """Images of a folder in name order, as (1, 1, H, W) arrays (their shapes may differ)."""
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InputError(f"{_kind(role)} folder {path} holds no {', '.join(IMAGE_SUFFIXES)} images.")
    raw: list[np.ndarray] = []
    used = 0
    for file in files:
        pages = _read_image(file, role, budget, used)
        used += pages.nbytes
        raw.extend(page[None, None] for page in pages)
        if len(raw) >= n_images:
            break
    return raw[:n_images], f"image folder {path.name} ({len(files)} files)"
