"""A small phantom volume: ellipsoids whose cross-sections change slowly from slice to slice,
measured slice by slice under a demo problem of the registry (sparse-view CT by default)."""
from __future__ import annotations

import numpy as np

from ..errors import InputError
from ..measurement import Measurement


def phantom_volume(n_slices: int, size: int, seed: int = 0, *, z_spacing: float | None = None) -> np.ndarray:
    """``(n_slices, size, size)`` float32 in [0, 1]: a body ellipsoid holding a few smaller
    ellipsoids of other values, a pure function of its arguments. The volume spans z in
    [-0.7, 0.7] of the unit cube, so neighbouring slices differ little and a structure's
    cross-section grows, shrinks and moves along z; ``z_spacing`` instead sets the distance
    between slices in pixels (1: isotropic voxels, centred on z = 0)."""
    if int(n_slices) != n_slices or n_slices < 2:
        raise InputError(f"A phantom volume needs an integer number of slices of at least 2 (got {n_slices}).")
    if int(size) != size or size < 8:
        raise InputError(f"Phantom size must be an integer of at least 8 pixels (got {size}).")
    if z_spacing is not None and not (np.isfinite(z_spacing) and z_spacing > 0):
        raise InputError(f"z_spacing {z_spacing} is invalid; it must be a positive number of pixels.")
    rng = np.random.default_rng(int(seed))
    n, s = int(n_slices), int(size)
    half = 0.7 if z_spacing is None else min(1.0, (n - 1) / 2 * float(z_spacing) * 2 / (s - 1))
    z, y, x = np.meshgrid(np.linspace(-half, half, n), np.linspace(-1, 1, s), np.linspace(-1, 1, s), indexing="ij")
    vol = np.zeros((n, s, s), np.float64)
    shapes = [((0.0, 0.0, 0.0), (0.85, 0.7, 1.6), 0.0, 0.25)]  # centre, semi-axes (x, y, z), angle, value
    for _ in range(5):
        centre = (rng.uniform(-0.45, 0.45), rng.uniform(-0.35, 0.35), rng.uniform(-0.5, 0.5))
        axes = (rng.uniform(0.1, 0.3), rng.uniform(0.1, 0.3), rng.uniform(0.4, 0.9))
        shapes.append((centre, axes, rng.uniform(0, np.pi), rng.choice([0.0, 0.5, 0.75, 1.0])))
    for (cx, cy, cz), (a, b, c), theta, value in shapes:
        u = (x - cx) * np.cos(theta) + (y - cy) * np.sin(theta)
        v = -(x - cx) * np.sin(theta) + (y - cy) * np.cos(theta)
        inside = (u / a) ** 2 + (v / b) ** 2 + ((z - cz) / c) ** 2 <= 1.0
        vol[inside] = value
    return vol.astype(np.float32)


def volume_demo(n_slices: int = 8, size: int = 32, *, kind: str = "ct", seed: int = 0, noise: float | None = None,
                options: dict | None = None, z_spacing: float | None = None) -> list[Measurement]:
    """One measurement per slice of :func:`phantom_volume` under demo problem ``kind`` (its
    options updated by ``options``, e.g. ``{"n_views": 12}``), all with the same operator and
    noise level (the middle slice's relative level unless ``noise`` is given); slice ``z``'s
    noise is drawn with seed ``seed + z``."""
    from ..demo import demo_measurement

    vol = phantom_volume(n_slices, size, seed, z_spacing=z_spacing)
    if noise is None:
        noise = demo_measurement(kind, vol[len(vol) // 2], seed, options=options).noise_sigma
    out = []
    for z, image in enumerate(vol):
        m = demo_measurement(kind, image, seed + z, noise=noise, options=options)
        chosen = ", ".join(f"{k} {v}" for k, v in (options or {}).items())
        m.title = f"Phantom volume, {kind}{', ' + chosen if chosen else ''}: slice {z + 1} of {len(vol)}"
        m.attrs = {"volume_slice": z, "volume_seed": int(seed)}
        out.append(m)
    return out
