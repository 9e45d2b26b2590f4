"""Procedural training images beyond phantoms: ``diffrecon train --data procedural``.

A documented mixture of seven image families, each a pure function of ``(size, index)`` drawn
with numpy (no file is read, nothing is downloaded, no evaluation image is used):

==============  ======  ============================================================================
family          weight  what it draws
==============  ======  ============================================================================
phantoms        0.20    :func:`diffrecon.phantoms.phantom` (body, organs, vessels, lesions, texture)
dead_leaves     0.15    occluding discs, ellipses and boxes with power-law sizes (r^-3), flat or
                        shaded: the scale-invariant edge statistics of natural images
fractal         0.10    1/f^beta Gaussian fields (beta 1.6..3.6), raw, folded (|f|) or soft-thresholded
texture         0.10    two band-pass / oriented-grating textures tiled by a smooth random partition
cells           0.15    microscopy-like cells and nuclei: blobs with inner texture, bright small
                        spots, blurred by a PSF, on dark (fluorescence) or bright (bright-field) ground
vessels         0.15    branching vessel trees and bundles of long smooth fibres of tapering width
organs          0.15    a smooth star-shaped body holding smooth organs with 1/f texture, a folded
                        cortex-like band in a third of them, and mild grain
==============  ======  ============================================================================

Each image then gets a random contrast (affine map to a sub-range of [0, 1], sometimes a gamma,
sometimes inverted) and, for a quarter of them, a slight blur, so the prior sees low- and
high-contrast images alike. Image ``i`` of the mixture draws its family and every value from
``numpy.random.default_rng([MIXTURE_SEED, i])``; phantoms use phantom seed ``i`` (inside
TRAIN_SEEDS, disjoint from the validation and test seeds). Values are in [0, 1] and map to
[-1, 1] for training like the phantoms.
"""
from __future__ import annotations

import math
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from ..phantoms import phantom

MIXTURE_SEED = 20261205
FAMILIES = {"phantoms": 0.20, "dead_leaves": 0.15, "fractal": 0.10, "texture": 0.10,
            "cells": 0.15, "vessels": 0.15, "organs": 0.15}
_F = np.float32


def _freqs(size: int) -> np.ndarray:
    """|k| in cycles per image on the FFT grid."""
    k = np.fft.fftfreq(size) * size
    return np.sqrt(k[:, None] ** 2 + k[None, :] ** 2).astype(_F)


def power_field(size: int, rng, beta: float, kmin: float = 1.0, kmax: float | None = None) -> np.ndarray:
    """Zero-mean unit-variance Gaussian field with power spectrum ~ 1/|k|^beta on [kmin, kmax]."""
    k = _freqs(size)
    amp = np.where(k >= kmin, np.maximum(k, kmin) ** (-beta / 2), 0.0)
    if kmax is not None:
        amp = amp * np.exp(-(k / kmax) ** 2)
    w = rng.standard_normal((size, size)).astype(_F)
    f = np.fft.ifft2(np.fft.fft2(w) * amp).real
    return ((f - f.mean()) / (f.std() + 1e-12)).astype(_F)


def blur(img: np.ndarray, sigma_px: float) -> np.ndarray:
    """Gaussian blur (periodic, by FFT) of std ``sigma_px`` pixels."""
    if sigma_px <= 0:
        return img
    k = np.fft.fftfreq(img.shape[0])
    g = np.exp(-2 * (np.pi * sigma_px) ** 2 * (k[:, None] ** 2 + k[None, :] ** 2))
    return np.fft.ifft2(np.fft.fft2(img) * g).real.astype(_F)


def _unit(img: np.ndarray, lo: float = 0.5, hi: float = 99.5) -> np.ndarray:
    a, b = np.percentile(img, (lo, hi))
    return np.clip((img - a) / (b - a + 1e-12), 0, 1).astype(_F)


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    c = (np.arange(size, dtype=_F) + 0.5)
    return np.meshgrid(c, c, indexing="ij")


def _paint_shape(img, rng, cy, cx, r, value, kind: str, shade: float = 0.0) -> None:
    """Paint a soft-edged disc / ellipse / box of radius ``r`` pixels at (cy, cx), in its bounding box."""
    size = img.shape[0]
    R = r * 1.6 + 2
    y0, y1 = max(0, int(cy - R)), min(size, int(cy + R) + 1)
    x0, x1 = max(0, int(cx - R)), min(size, int(cx + R) + 1)
    if y0 >= y1 or x0 >= x1:
        return
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(_F) + 0.5
    dy, dx = yy - cy, xx - cx
    th = rng.uniform(0, np.pi)
    u, v = dx * math.cos(th) + dy * math.sin(th), -dx * math.sin(th) + dy * math.cos(th)
    if kind == "disc":
        sd = np.sqrt(u * u + v * v) - r
    elif kind == "ellipse":
        e = rng.uniform(0.35, 1.0)
        q = np.sqrt((u / r) ** 2 + (v / (r * e)) ** 2)
        sd = (q - 1) * r * e
    else:
        e = rng.uniform(0.3, 1.0)
        sd = np.maximum(np.abs(u) - r, np.abs(v) - r * e)
    cover = np.clip(0.5 - sd, 0, 1)
    val = value + shade * (u / (r + 1e-6))
    patch = img[y0:y1, x0:x1]
    patch += cover * (val - patch)


def dead_leaves(size: int, rng) -> np.ndarray:
    img = _unit(power_field(size, rng, rng.uniform(2.0, 3.5))) * rng.uniform(0.2, 1.0) + rng.uniform(0, 0.5)
    rmin, rmax = 1.5, size * rng.uniform(0.15, 0.4)
    n = int(rng.integers(150, 500) * (size / 128) ** 2)
    u = rng.uniform(size=n)
    # r^-3 density on [rmin, rmax]: inverse CDF of p(r) ~ r^-3
    radii = (rmin ** -2 - u * (rmin ** -2 - rmax ** -2)) ** -0.5
    radii = np.sort(radii)[::-1]  # large ones first, small ones on top: detail everywhere
    kinds = rng.choice(["disc", "ellipse", "box"], p=rng.dirichlet([2, 2, 1]))
    for r in radii:
        _paint_shape(img, rng, rng.uniform(-r, size + r), rng.uniform(-r, size + r), r, rng.uniform(),
                     kinds if rng.uniform() < 0.7 else rng.choice(["disc", "ellipse", "box"]),
                     shade=rng.uniform(-0.15, 0.15) if rng.uniform() < 0.3 else 0.0)
    if rng.uniform() < 0.5:
        img = img + rng.uniform(0.02, 0.08) * power_field(size, rng, rng.uniform(1.5, 3.0))
    return img


def fractal(size: int, rng) -> np.ndarray:
    f = power_field(size, rng, rng.uniform(1.6, 3.6))
    mode = rng.integers(3)
    if mode == 1:
        f = -np.abs(f)  # folded: ridges / cracks
    elif mode == 2:
        f = np.tanh(rng.uniform(1.5, 5.0) * (f - rng.uniform(-0.7, 0.7)))  # clouds with soft edges
    return f


def _texture(size: int, rng) -> np.ndarray:
    if rng.uniform() < 0.5:  # oriented grating, its phase warped by a smooth field
        y, x = _grid(size)
        th, period = rng.uniform(0, np.pi), rng.uniform(3, 24)
        warp = power_field(size, rng, 3.5) * rng.uniform(0, 6)
        t = np.sin(2 * np.pi * (x * math.cos(th) + y * math.sin(th)) / period + warp)
        return np.sign(t) * np.abs(t) ** rng.uniform(0.3, 1.5)
    # band-pass (and possibly anisotropic) noise
    k = np.fft.fftfreq(size) * size
    ky, kx = np.meshgrid(k, k, indexing="ij")
    th, aniso = rng.uniform(0, np.pi), rng.uniform(1, 6)
    u, v = kx * math.cos(th) + ky * math.sin(th), (-kx * math.sin(th) + ky * math.cos(th)) * aniso
    kr = np.sqrt(u * u + v * v)
    k0, bw = rng.uniform(4, size / 5), rng.uniform(0.15, 0.6)
    amp = np.exp(-0.5 * (np.log((kr + 1e-6) / k0) / bw) ** 2)
    f = np.fft.ifft2(np.fft.fft2(rng.standard_normal((size, size))) * amp).real
    return (f / (f.std() + 1e-12)).astype(_F)


def texture(size: int, rng) -> np.ndarray:
    a, b = _texture(size, rng), _texture(size, rng)
    part = 1 / (1 + np.exp(-power_field(size, rng, 3.0, kmax=size / 16) * rng.uniform(3, 20)))
    la, lb = rng.uniform(0.2, 0.8, 2)
    ca, cb = rng.uniform(0.05, 0.3, 2)
    return part * (la + ca * a) + (1 - part) * (lb + cb * b)


def cells(size: int, rng) -> np.ndarray:
    img = rng.uniform(0.0, 0.15) + 0.04 * power_field(size, rng, 3.5)
    scale = size / 128
    n = int(rng.integers(3, 60) * scale ** 2)
    rmean = rng.uniform(3, 14) * scale ** 0.5
    for _ in range(n):
        r = max(1.5, rng.normal(rmean, rmean * 0.3))
        cy, cx = rng.uniform(0, size, 2)
        level = rng.uniform(0.3, 1.0)
        _paint_shape(img, rng, cy, cx, r, level, "ellipse", shade=rng.uniform(-0.2, 0.2))
        if rng.uniform() < 0.4:  # nucleus / nucleolus
            _paint_shape(img, rng, cy + rng.normal(0, r / 4), cx + rng.normal(0, r / 4), r * rng.uniform(0.3, 0.6),
                         level * rng.uniform(0.3, 1.5), "ellipse")
    mask = img > img.mean()
    img = img + mask * rng.uniform(0, 0.12) * power_field(size, rng, rng.uniform(1.0, 2.5))
    for _ in range(int(rng.integers(0, 25) * scale)):  # small bright spots (mitoses, vesicles)
        _paint_shape(img, rng, *rng.uniform(0, size, 2), rng.uniform(0.7, 2.5), rng.uniform(0.6, 1.2), "disc")
    img = blur(img, rng.uniform(0.3, 2.0))
    if rng.uniform() < 0.25:  # bright-field: dark cells on a bright ground
        img = 1.2 - img
    return img


def _branch(rng, y, x, angle, width, length, depth, segments, size) -> None:
    step = max(1.0, width)
    for _ in range(int(length / step)):
        angle += rng.normal(0, 0.18)
        ny, nx = y + step * math.sin(angle), x + step * math.cos(angle)
        segments.append((y, x, ny, nx, width))
        y, x = ny, nx
        width *= rng.uniform(0.985, 1.0)
        if not (-20 < y < size + 20 and -20 < x < size + 20):
            return
        if depth < 5 and width > 0.6 and rng.uniform() < 0.05:
            side = rng.choice([-1, 1])
            _branch(rng, y, x, angle + side * rng.uniform(0.3, 1.2), width * rng.uniform(0.5, 0.85),
                    length * rng.uniform(0.3, 0.7), depth + 1, segments, size)


def _draw_segments(img, segments, value) -> None:
    size = img.shape[0]
    for y0, x0, y1, x1, w in segments:
        R = 3 * w + 2
        ya, yb = max(0, int(min(y0, y1) - R)), min(size, int(max(y0, y1) + R) + 1)
        xa, xb = max(0, int(min(x0, x1) - R)), min(size, int(max(x0, x1) + R) + 1)
        if ya >= yb or xa >= xb:
            continue
        yy, xx = np.mgrid[ya:yb, xa:xb].astype(_F) + 0.5
        dy, dx = y1 - y0, x1 - x0
        t = np.clip(((yy - y0) * dy + (xx - x0) * dx) / (dy * dy + dx * dx + 1e-9), 0, 1)
        d2 = (yy - y0 - t * dy) ** 2 + (xx - x0 - t * dx) ** 2
        prof = np.exp(-d2 / (2 * (0.5 * w + 0.35) ** 2)).astype(_F)
        patch = img[ya:yb, xa:xb]
        np.maximum(patch, value * prof, out=patch)


def vessels(size: int, rng) -> np.ndarray:
    lines = np.zeros((size, size), _F)
    segments: list = []
    scale = size / 128
    if rng.uniform() < 0.6:  # vessel trees from the border or inside
        for _ in range(int(rng.integers(1, 5))):
            y, x = rng.uniform(0, size, 2)
            _branch(rng, y, x, rng.uniform(0, 2 * np.pi), rng.uniform(1.0, 4.0) * scale ** 0.5,
                    size * rng.uniform(0.3, 0.9), 0, segments, size)
    else:  # fibre bundles: many long, nearly parallel smooth curves
        base = rng.uniform(0, np.pi)
        for _ in range(int(rng.integers(5, 40) * scale ** 0.5)):
            y, x = rng.uniform(0, size, 2)
            _branch(rng, y, x, base + rng.normal(0, 0.3), rng.uniform(0.5, 2.0),
                    size * rng.uniform(0.3, 1.0), 6, segments, size)
    _draw_segments(lines, segments, 1.0)
    bg = rng.uniform(0.05, 0.4) + rng.uniform(0, 0.1) * power_field(size, rng, 3.0)
    img = bg + rng.uniform(0.4, 0.9) * lines
    return -img if rng.uniform() < 0.3 else img  # dark vessels on a bright ground (angiography)


def _star(size, rng, cy, cx, r, y, x, n_harm=6, rough=0.25) -> np.ndarray:
    """Soft coverage of a star-shaped region whose radius is ``r`` times a random Fourier series."""
    ang = np.arctan2(y - cy, x - cx)
    rad = np.ones_like(ang)
    for h in range(1, n_harm + 1):
        rad += rng.normal(0, rough / h) * np.cos(h * ang + rng.uniform(0, 2 * np.pi))
    return np.clip(0.5 - (np.hypot(y - cy, x - cx) - r * np.maximum(rad, 0.3)), 0, 1)


def organs(size: int, rng) -> np.ndarray:
    y, x = _grid(size)
    c = size / 2
    img = np.full((size, size), rng.uniform(0, 0.1), _F)
    body_r = size * rng.uniform(0.3, 0.7)
    body = _star(size, rng, c + rng.normal(0, size * 0.05), c + rng.normal(0, size * 0.05), body_r, y, x, 4, 0.12)
    img += body * (rng.uniform(0.3, 0.6) + 0.08 * power_field(size, rng, 3.0) - img)
    if rng.uniform() < 0.35:  # cortex-like folded band: a thresholded band-pass field inside the body
        fold = np.tanh(4 * power_field(size, rng, 2.0, kmin=3, kmax=size / 10))
        inner = _star(size, rng, c, c, body_r * 0.8, y, x, 4, 0.08)
        img += inner * body * rng.uniform(0.1, 0.3) * fold
    for _ in range(int(rng.integers(2, 9))):
        r = body_r * rng.uniform(0.08, 0.4)
        cy, cx = c + rng.normal(0, body_r * 0.4, 2)
        cover = _star(size, rng, cy, cx, r, y, x) * body
        value = rng.uniform(0.05, 1.0) + 0.1 * power_field(size, rng, rng.uniform(2, 3.5))
        img += cover * (value - img)
    img += rng.uniform(0.01, 0.06) * power_field(size, rng, rng.uniform(0.5, 1.5)) * body  # grain
    return blur(img, rng.uniform(0.3, 1.2))


GENERATORS = {"dead_leaves": dead_leaves, "fractal": fractal, "texture": texture, "cells": cells,
              "vessels": vessels, "organs": organs}


def mixture_image(size: int, index: int) -> tuple[np.ndarray, str]:
    """Image ``index`` of the mixture (float32 in [0, 1]) and its family name."""
    rng = np.random.default_rng([MIXTURE_SEED, int(index)])
    names = list(FAMILIES)
    family = names[int(rng.choice(len(names), p=np.array(list(FAMILIES.values())) / sum(FAMILIES.values())))]
    if family == "phantoms":
        img = phantom(size, int(index)).astype(_F)
    else:
        img = _unit(GENERATORS[family](size, rng))
    lo, hi = rng.uniform(0, 0.25), rng.uniform(0.75, 1.0)
    if rng.uniform() < 0.2:
        img = img ** rng.uniform(0.6, 1.6)
    if rng.uniform() < 0.1 and family != "phantoms":
        img = 1 - img
    if rng.uniform() < 0.25:
        img = blur(img, rng.uniform(0.3, 1.0))
    if rng.uniform() < 0.5:  # half keep the full range, half a reduced contrast
        img = lo + (hi - lo) * img
    return np.clip(img, 0, 1).astype(_F), family


def mixture_batch(n: int, size: int, first: int) -> np.ndarray:
    """Images ``first .. first+n-1`` of the mixture as an (n, 1, size, size) float32 stack."""
    return np.stack([mixture_image(size, first + i)[0] for i in range(n)])[:, None]


def make_mixture(n_images: int, size: int, first: int = 0, workers: int | None = None) -> np.ndarray:
    """``n_images`` mixture images (n, 1, size, size) in [0, 1], drawn in parallel processes."""
    workers = workers or os.cpu_count() or 1
    if workers == 1 or n_images * size * size <= 1 << 20:
        return mixture_batch(n_images, size, first)
    chunk = max(1, math.ceil(n_images / (4 * workers)))
    jobs = [(min(chunk, n_images - s), size, first + s) for s in range(0, n_images, chunk)]
    # spawn, not fork: the parent may hold torch's thread pools, which a forked child can deadlock on
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        return np.concatenate(list(pool.map(mixture_batch, *zip(*jobs))))


def procedural_stack(n_images: int, size: int, *, cache=None, workers: int | None = None) -> np.ndarray:
    """The first ``n_images`` mixture images; with ``cache`` (a folder) they are kept there as
    ``procedural-<seed>-<size>-<n>.npy`` and read back by later runs (generation takes minutes)."""
    from pathlib import Path

    path = None if cache is None else Path(cache) / f"procedural-{MIXTURE_SEED}-{size}-{n_images}.npy"
    if path is not None and path.is_file():
        stack = np.load(path, allow_pickle=False)
        if stack.shape == (n_images, 1, size, size):
            return stack
    stack = make_mixture(n_images, size, workers=workers)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, stack)
        tmp.replace(path)
    return stack


def describe(n_images: int, size: int, first: int = 0) -> str:
    mix = ", ".join(f"{k} {v:.2f}" for k, v in FAMILIES.items())
    return (f"{n_images} procedural images (diffrecon.training.procedural mixture seed {MIXTURE_SEED}, "
            f"indices {first}..{first + n_images - 1}: {mix}) of {size}x{size}, [0, 1] mapped to [-1, 1]")


if __name__ == "__main__":  # python -m diffrecon.training.procedural N SIZE CACHE: fill the cache once
    import sys

    procedural_stack(int(sys.argv[1]), int(sys.argv[2]), cache=sys.argv[3])
