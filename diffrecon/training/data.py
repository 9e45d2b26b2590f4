"""Training images for ``diffrecon train``: procedural phantoms, an HDF5 stack or a folder of images.

All three end as one ``(N, C, size, size)`` float32 tensor in [-1, 1], held in memory and later on
the training device, so a training step never waits on numpy or the disk.

Scaling. Phantoms are in [0, 1] by construction and map affinely to [-1, 1]. Files have no known
range, so the data's *robust range* is used: the 0.1th and 99.9th percentiles ``(low, high)`` of
all pixel values (of a fixed random subsample of at most 4 million values), computed once over the
whole dataset, not per image, so one affine map ``x -> 2 (x - low) / (high - low) - 1`` relates
the prior's range to the data's units (what the engine's Normalization needs). The rare values
beyond the percentiles are clipped to [-1, 1]. ``low`` and ``high`` are written to the prior card.

Geometry. Each image is centre-cropped to a square and resized to ``size`` with antialiased
bilinear interpolation (area-like when shrinking, so thin structures are not aliased away).
"""
from __future__ import annotations

import math
import multiprocessing
import os
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError, printable
from ..limits import check_bytes, nbytes
from ..messages import quiet_libraries
from ..phantoms import TRAIN_SEEDS, phantom_batch

IMAGE_SUFFIXES = (".png", ".tif", ".tiff")
ROBUST_PERCENTILES = (0.1, 99.9)
MIN_IMAGES = 4
_SUBSAMPLE = 4_000_000
# Below this many pixels, starting worker processes costs more than drawing serially.
_SERIAL_PIXELS = 1 << 22


@dataclass(frozen=True)
class TrainingData:
    """``images`` (N, C, size, size) float32 in [-1, 1]; ``low``/``high`` are the data values
    mapped to -1 and +1; ``description`` says where the images came from, for the prior card."""

    images: torch.Tensor
    low: float
    high: float
    description: str


def load_training_data(data: str | Path, size: int, *, n_images: int, dataset: str | None = None,
                       workers: int | None = None, cache: str | Path | None = None,
                       allow_external: bool = False) -> TrainingData:
    """Load ``phantoms`` (the first ``n_images`` of TRAIN_SEEDS), ``procedural`` (the mixture of
    :mod:`.procedural`; ``cache`` keeps it on disk), an HDF5 file or an image folder."""
    if str(data) == "phantoms":
        return _phantoms(size, n_images, workers)
    if str(data) == "procedural":
        from .procedural import describe, procedural_stack

        stack = procedural_stack(n_images, size, cache=cache, workers=workers)
        return TrainingData(torch.from_numpy(stack).mul_(2).sub_(1), 0.0, 1.0, describe(n_images, size))
    path = Path(data)
    if not path.exists():
        raise InputError(f"Training data {path} does not exist; give 'phantoms', an HDF5 file or a folder of "
                         f"{'/'.join(s.lstrip('.').upper() for s in IMAGE_SUFFIXES)} images.")
    if path.is_dir():
        raw, description = _folder(path, n_images)
    else:
        raw, description = _hdf5(path, dataset, n_images, allow_external)
    count = sum(len(a) for a in raw)
    if count < MIN_IMAGES:
        raise InputError(f"Training data {path} holds {count} images; training needs at least {MIN_IMAGES}.")
    check_bytes(nbytes((count, raw[0].shape[1], size, size), 4),
                f"Training data {path}: {count} images of {raw[0].shape[1]} channel(s) at --size {size}", "training")
    low, high = robust_range(raw, str(path))
    images = torch.cat([_to_square(torch.from_numpy(np.ascontiguousarray(a, np.float32)), size) for a in raw])
    images = (2 * (images - low) / (high - low) - 1).clamp_(-1, 1)
    description = (f"{description}; {len(images)} images, centre-cropped and resized to {size}x{size}, "
                   f"values [{low:.6g}, {high:.6g}] (0.1/99.9 percentiles) mapped to [-1, 1]")
    return TrainingData(images.contiguous(), low, high, description)


def _phantoms(size: int, n_images: int, workers: int | None) -> TrainingData:
    if n_images > len(TRAIN_SEEDS):
        raise InputError(f"--n-images {n_images} exceeds the {len(TRAIN_SEEDS)} training phantom seeds.")
    first = TRAIN_SEEDS.start
    workers = workers or os.cpu_count() or 1
    if workers == 1 or n_images * size * size <= _SERIAL_PIXELS:
        stack = phantom_batch(n_images, size, first)
    else:
        chunk = math.ceil(n_images / (4 * workers))  # several chunks per worker balance uneven costs
        jobs = [(min(chunk, n_images - s), size, first + s) for s in range(0, n_images, chunk)]
        # spawn, not fork: the parent holds torch's thread pools, which a forked child can deadlock on;
        # the children import only diffrecon.phantoms (numpy), so they start quickly.
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            stack = np.concatenate(list(pool.map(phantom_batch, *zip(*jobs))))
    images = torch.from_numpy(stack).mul_(2).sub_(1)
    return TrainingData(images, 0.0, 1.0, f"{n_images} procedural phantoms (diffrecon.phantoms, seeds "
                        f"{first}..{first + n_images - 1}) of {size}x{size}, [0, 1] mapped to [-1, 1]")


def robust_range(raw: list[np.ndarray], source: str) -> tuple[float, float]:
    """The 0.1th and 99.9th percentiles of all values (a seeded subsample when there are many)."""
    flat = np.concatenate([a.ravel() for a in raw])
    if not np.isfinite(flat).all():
        raise InputError(f"Training data {source} contains NaN or infinite values; give finite images.")
    if flat.size > _SUBSAMPLE:
        flat = flat[np.random.default_rng(0).choice(flat.size, _SUBSAMPLE, replace=False)]
    low, high = (float(v) for v in np.percentile(flat, ROBUST_PERCENTILES))
    if not high > low:
        raise InputError(f"Training data {source} is constant (robust range [{low}, {high}]); give images with contrast.")
    return low, high


def _to_square(x: torch.Tensor, size: int) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, size, size): centre crop to a square, antialiased resize."""
    h, w = x.shape[-2:]
    m = min(h, w)
    top, left = (h - m) // 2, (w - m) // 2
    x = x[..., top:top + m, left:left + m].float()
    if m != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x


def _hdf5(path: Path, dataset: str | None, n_images: int, allow_external: bool = False) -> tuple[list[np.ndarray], str]:
    """The first ``n_images`` of a stack, as (k, C, H, W) chunks so resizing runs batched.

    The file is opened like every other input (:func:`~diffrecon.io.h5.open_readonly`): links to
    other files, virtual datasets and external storage are refused unless ``allow_external``, a
    damaged file is one sentence, and the part read is checked against the training budget first.
    """
    import h5py

    from ..io.h5 import check_read, open_readonly

    if not h5py.is_hdf5(path):
        raise InputError(f"Training data {path} is neither a folder nor an HDF5 file.")
    with open_readonly(path, allow_external=allow_external) as f:
        if dataset is None:
            stacks: list[str] = []
            f.visititems(lambda name, obj: stacks.append(name)
                         if isinstance(obj, h5py.Dataset) and obj.ndim in (3, 4) else None)
            if len(stacks) != 1:
                found = printable(", ".join(stacks[:6])) if stacks else "none"
                raise InputError(f"Training data {path}: name the image stack with --dataset "
                                 f"(3-D or 4-D datasets found: {found}).")
            dataset = stacks[0]
        ds = f.get(dataset)
        if not isinstance(ds, h5py.Dataset):
            raise InputError(f"Training data {path} has no dataset {printable(repr(dataset))}; give an (N,H,W) or (N,C,H,W) dataset.")
        if ds.ndim not in (3, 4) or ds.dtype.kind not in "uif":
            raise InputError(f"Training data {path}:{printable(dataset)} has shape {ds.shape} and dtype {ds.dtype}; "
                             f"it must be a real (N,H,W) or (N,C,H,W) stack.")
        if ds.shape[-1] < 1 or ds.shape[-2] < 1:
            raise InputError(f"Training data {path}:{dataset} has shape {ds.shape}; its images are empty.")
        if ds.ndim == 4 and ds.shape[1] > 4:
            raise InputError(f"Training data {path}:{dataset} has {ds.shape[1]} channels; at most 4 are supported "
                             f"((N,H,W) or (N,C,H,W) with C <= 4).")
        check_read(ds, np.s_[:n_images], path, np.float32, "training")
        stack = np.asarray(ds[:n_images], np.float32)
    if stack.ndim == 3:
        stack = stack[:, None]
    if stack.shape[1] > 4:
        raise InputError(f"Training data {path}:{dataset} has {stack.shape[1]} channels; at most 4 are supported "
                         f"((N,H,W) or (N,C,H,W) with C <= 4).")
    return [stack[i:i + 256] for i in range(0, len(stack), 256)], f"HDF5 {path.name}:{dataset}"


def _read_image(path: Path, already: int = 0) -> np.ndarray:
    """A file's pixels as (k, H, W): grayscale, colour reduced to luminance, multi-page as pages."""
    try:
        from PIL import Image

        with quiet_libraries("tifffile", "PIL"):
            warnings.simplefilter("error", Image.DecompressionBombWarning)  # an error, not a note on stderr
            if path.suffix.lower() == ".png":
                with Image.open(path) as im:
                    _budget_left(nbytes((im.height, im.width, 4), 4), path, already)
                    # 16-bit and float PNGs keep their values; palette and colour become 8-bit luminance.
                    a = np.asarray(im if im.mode in ("L", "I", "I;16", "F") else im.convert("L"))
            else:
                import tifffile

                with tifffile.TiffFile(path) as tif:
                    series = tif.series[0]
                    _budget_left(nbytes(series.shape, max(4, series.dtype.itemsize)), path, already)
                    a = series.asarray()
    except InputError:
        raise
    except Exception as err:  # noqa: BLE001 - any decoder failure is the file's fault
        raise InputError(f"Training image {path} cannot be read ({type(err).__name__}: "
                         f"{printable(str(err).strip().splitlines()[0] if str(err).strip() else '')[:160]}).") from None
    a = np.asarray(a, np.float32)
    if a.ndim == 3 and a.shape[-1] in (3, 4):
        a = a[..., :3] @ np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R BT.601 luminance
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3:
        raise InputError(f"Training image {path} has shape {a.shape}; give 2-D images or 3-D page stacks.")
    return a


def _budget_left(n: int, path: Path, already: int) -> None:
    """Refuse decoding ``path`` (``n`` bytes) when the ``already`` bytes of the folder's earlier
    images plus it exceed the training budget; nothing of it is decoded yet."""
    check_bytes(already + n, f"Training image {path} (with the {already} bytes of images before it)", "training")


def _folder(path: Path, n_images: int) -> tuple[list[np.ndarray], str]:
    """Images of a folder in name order, as (1, 1, H, W) arrays (their shapes may differ)."""
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InputError(f"Training folder {path} holds no {', '.join(IMAGE_SUFFIXES)} images.")
    raw: list[np.ndarray] = []
    used = 0
    for file in files:
        pages = _read_image(file, used)
        used += pages.nbytes
        raw.extend(page[None, None] for page in pages)
        if len(raw) >= n_images:
            break
    return raw[:n_images], f"image folder {path.name} ({len(files)} files)"
