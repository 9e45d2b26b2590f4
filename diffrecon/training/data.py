"""Training images for ``diffrecon train``: procedural phantoms, an HDF5 stack, a folder of images
or one PNG/TIFF file (the files read by :func:`diffrecon.io.images.read_image_stack`).

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
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from ..io.images import IMAGE_SUFFIXES, crop_resize, read_image_stack, robust_range
from ..limits import check_bytes, nbytes
from ..phantoms import TRAIN_SEEDS, phantom_batch

MIN_IMAGES = 4
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
    raw, description = read_image_stack(path, n_images, dataset=dataset, allow_external=allow_external)
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


def _to_square(x: torch.Tensor, size: int) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, size, size): centre crop to a square, antialiased resize."""
    return crop_resize(x, size, size)
