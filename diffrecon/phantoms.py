"""Procedural tomography / MRI phantoms for demos, prior fitting and prior training.

A phantom is a body outline (optionally with a bright skull or dark fat rim) holding organs
(ellipses and convex polygons) whose intensities vary smoothly (low-order polynomials and
smooth random fields), plus fine structure a reconstruction must recover: thin curved vessels,
small lesions and a mild texture. The smooth variation and the fine structure are what make
the images more than piecewise constant, so total variation alone does not solve the inverse
problem (cf. the piecewise-constant Shepp & Logan, IEEE TNS 21(3), 1974, which it does).

Shapes are drawn with a one-pixel soft edge (partial-volume effect) from approximate signed
distances, all on the full pixel grid with numpy, so a 128 x 128 phantom takes a few ms.
Every phantom is a pure function of ``(size, seed)``; the three seed ranges never overlap.
"""
from __future__ import annotations

import numpy as np

from .errors import InputError

TRAIN_SEEDS = range(0, 1_000_000)
VALIDATION_SEEDS = range(1_000_000, 1_100_000)
TEST_SEEDS = range(1_000_000_000, 1_000_100_000)
CALIBRATION_SEEDS = range(2_000_000_000, 2_000_100_000)  # diffrecon calibrate's held-out truths

_F = np.float32


class _Canvas:
    """The pixel grid in normalised coordinates [-1, 1] and the painting operations."""

    def __init__(self, size: int, rng: np.random.Generator):
        self.size, self.rng = size, rng
        self.pix = 2.0 / size
        c = ((np.arange(size, dtype=_F) + 0.5) * self.pix - 1.0).astype(_F)
        self.y, self.x = np.meshgrid(c, c, indexing="ij")
        self.img = np.zeros((size, size), _F)

    def soft(self, sd: np.ndarray) -> np.ndarray:
        """Coverage of a pixel by the region ``sd < 0`` with a one-pixel ramp (partial volume)."""
        return np.clip(0.5 - sd / self.pix, 0.0, 1.0)

    def superellipse_sd(self, cx, cy, a, b, theta, p=2.0) -> np.ndarray:
        """Approximate signed distance to ``(|u|/a)^p + (|v|/b)^p = 1`` in the rotated frame."""
        ct, st = np.cos(theta), np.sin(theta)
        dx, dy = self.x - cx, self.y - cy
        u, v = dx * ct + dy * st, -dx * st + dy * ct
        q = (np.abs(u) / a) ** p + (np.abs(v) / b) ** p
        return (q ** (1.0 / p) - 1.0) * min(a, b)

    def polygon_sd(self, cx, cy, radius, n_vertices) -> np.ndarray:
        """Signed distance (exact inside) to a random convex polygon: max over its edge half-planes."""
        ang = np.sort(self.rng.uniform(0, 2 * np.pi, n_vertices))
        rad = radius * self.rng.uniform(0.7, 1.0, n_vertices)
        vx, vy = cx + rad * np.cos(ang), cy + rad * np.sin(ang)
        ex, ey = np.roll(vx, -1) - vx, np.roll(vy, -1) - vy
        length = np.hypot(ex, ey) + 1e-12
        nx, ny = ey / length, -ex / length  # outward normals of a counter-clockwise polygon
        d = (self.x[..., None] - vx) * nx + (self.y[..., None] - vy) * ny
        return d.max(axis=-1)

    def smooth_field(self, corr: float) -> np.ndarray:
        """Unit-variance Gaussian random field with correlation length ``corr`` (normalised units)."""
        k = np.fft.fftfreq(self.size, d=self.pix).astype(_F)
        k2 = k[:, None] ** 2 + k[None, :] ** 2
        spec = np.exp(-0.5 * k2 * (2 * np.pi * corr) ** 2)
        w = self.rng.standard_normal((self.size, self.size)).astype(_F)
        f = np.fft.ifft2(np.fft.fft2(w) * spec).real
        return (f / (f.std() + 1e-12)).astype(_F)

    def polynomial(self, cx, cy, scale, amplitude) -> np.ndarray:
        """A random quadratic in the shape's local coordinates, of size about ``amplitude``."""
        u, v = (self.x - cx) / scale, (self.y - cy) / scale
        c = self.rng.normal(0, amplitude / 2, 5)
        return c[0] * u + c[1] * v + c[2] * u * u + c[3] * u * v + c[4] * v * v

    def paint(self, coverage: np.ndarray, value) -> None:
        """Replace the image by ``value`` where the shape covers it (value may be an image)."""
        self.img += coverage * (value - self.img)

    def line(self, points: np.ndarray, width: float) -> np.ndarray:
        """Gaussian-profile line of ``width`` along the polyline through ``points`` (S+1, 2).

        Only the pixels within five widths of the curve's bounding box are computed: beyond
        that the profile is below 4e-6, and the distance search is the generator's hot spot.
        """
        out = np.zeros_like(self.img)
        reach = 5 * width
        lo = np.floor((points.min(axis=0) - reach + 1) / self.pix).astype(int).clip(0, self.size)
        hi = np.ceil((points.max(axis=0) + reach + 1) / self.pix).astype(int).clip(0, self.size)
        rows, cols = slice(lo[1], hi[1]), slice(lo[0], hi[0])
        x, y = self.x[rows, cols, None], self.y[rows, cols, None]
        p0, seg = points[:-1], points[1:] - points[:-1]
        seg_len2 = (seg**2).sum(axis=1) + 1e-12
        px, py = x - p0[:, 0], y - p0[:, 1]
        t = np.clip((px * seg[:, 0] + py * seg[:, 1]) / seg_len2, 0.0, 1.0)
        d2 = ((px - t * seg[:, 0]) ** 2 + (py - t * seg[:, 1]) ** 2).min(axis=-1)
        out[rows, cols] = np.exp(-0.5 * d2 / width**2)
        return out


def _point_inside(rng, cx, cy, a, b, theta, fill=0.75) -> tuple[float, float]:
    """A random point inside the ellipse (cx, cy, a, b, theta), shrunk by ``fill``."""
    r, phi = fill * np.sqrt(rng.uniform()), rng.uniform(0, 2 * np.pi)
    u, v = r * a * np.cos(phi), r * b * np.sin(phi)
    return cx + u * np.cos(theta) - v * np.sin(theta), cy + u * np.sin(theta) + v * np.cos(theta)


def _draw(c: _Canvas) -> np.ndarray:
    rng = c.rng
    # Body outline: a rotated superellipse (round head, boxy torso), with a slowly varying base.
    bx, by = rng.uniform(-0.05, 0.05, 2)
    ba, bb = rng.uniform(0.62, 0.92), rng.uniform(0.5, 0.9)
    bt, bp = rng.uniform(0, np.pi), rng.uniform(2.0, 3.2)
    body = c.soft(c.superellipse_sd(bx, by, ba, bb, bt, bp))
    base = rng.uniform(0.15, 0.45)
    interior = base + c.polynomial(bx, by, 1.0, 0.08) + 0.015 * c.smooth_field(0.12)
    c.paint(body, interior)

    # A rim: bright like a skull (CT) or a fat layer / dark like a coil-shaded edge (MRI).
    if rng.uniform() < 0.7:
        t = rng.uniform(0.025, 0.08)
        rim_value = rng.uniform(0.7, 1.0) if rng.uniform() < 0.6 else rng.uniform(0.03, 0.12)
        c.paint(body, rim_value + c.polynomial(bx, by, 1.0, 0.05))
        c.paint(c.soft(c.superellipse_sd(bx, by, ba - t, bb - t, bt, bp)), interior)
        ba, bb = ba - t, bb - t

    # Organs: ellipses with smooth inner variation, some with a nested structure.
    for _ in range(rng.integers(3, 9)):
        ox, oy = _point_inside(rng, bx, by, ba, bb, bt, 0.65)
        oa, ob = rng.uniform(0.07, 0.36), rng.uniform(0.06, 0.32)
        ot = rng.uniform(0, np.pi)
        value = rng.uniform(0.05, 0.95) + c.polynomial(ox, oy, max(oa, ob), 0.1)
        if rng.uniform() < 0.4:
            value = value + rng.uniform(0.01, 0.04) * c.smooth_field(rng.uniform(0.02, 0.06))
        cover = c.soft(c.superellipse_sd(ox, oy, oa, ob, ot))
        c.paint(cover * rng.uniform(0.85, 1.0), value)
        if rng.uniform() < 0.3:
            f = rng.uniform(0.3, 0.6)
            c.paint(c.soft(c.superellipse_sd(ox, oy, oa * f, ob * f, ot + rng.normal(0, 0.3))),
                    rng.uniform(0.05, 0.95))

    # Convex polygons (bone cross-sections, implants, sharp-cornered structures).
    for _ in range(rng.integers(0, 4)):
        px, py = _point_inside(rng, bx, by, ba, bb, bt, 0.7)
        value = rng.uniform(0.1, 1.0) + c.polynomial(px, py, 0.2, 0.05)
        c.paint(c.soft(c.polygon_sd(px, py, rng.uniform(0.04, 0.2), rng.integers(3, 8))), value)

    # Thin vessels: quadratic Bezier curves one to three pixels wide, bright or dark.
    s = np.linspace(0, 1, 13)[:, None]
    for _ in range(rng.integers(1, 7)):
        p0 = np.array(_point_inside(rng, bx, by, ba, bb, bt, 0.85))
        p2 = np.array(_point_inside(rng, bx, by, ba, bb, bt, 0.85))
        p1 = 0.5 * (p0 + p2) + rng.normal(0, 0.25, 2)
        pts = (1 - s) ** 2 * p0 + 2 * s * (1 - s) * p1 + s**2 * p2
        width = rng.uniform(0.45, 0.9) * c.pix
        profile = c.line(pts.astype(_F), width)
        value = rng.uniform(0.75, 1.0) if rng.uniform() < 0.7 else rng.uniform(0.0, 0.1)
        c.paint(profile * rng.uniform(0.6, 1.0), value)

    # Small lesions: dots of one to three pixels radius.
    for _ in range(rng.integers(3, 16)):
        dx, dy = _point_inside(rng, bx, by, ba, bb, bt, 0.85)
        r = rng.uniform(0.7, 3.0) * c.pix
        dot = c.soft(c.superellipse_sd(dx, dy, r, r * rng.uniform(0.7, 1.0), rng.uniform(0, np.pi)))
        c.paint(dot, rng.uniform(0.0, 1.0))

    # Mild fine texture everywhere inside the body (tissue microstructure, not noise level).
    c.img += body * rng.uniform(0.005, 0.02) * c.smooth_field(rng.uniform(0.5, 1.5) * c.pix)
    return np.clip(c.img * body, 0.0, 1.0).astype(_F)


def _check(size: int, seed: int) -> None:
    if int(size) != size or size < 8:
        raise InputError(f"Phantom size must be an integer of at least 8 pixels (got {size}).")
    if int(seed) != seed or seed < 0:
        raise InputError(f"Phantom seed must be a non-negative integer (got {seed}).")


def phantom(size: int, seed: int) -> np.ndarray:
    """One ``(size, size)`` float32 phantom in [0, 1], a pure function of ``(size, seed)``."""
    _check(size, seed)
    return _draw(_Canvas(int(size), np.random.default_rng(int(seed))))


def phantom_batch(n: int, size: int, first_seed: int) -> np.ndarray:
    """``(n, 1, size, size)`` phantoms of seeds ``first_seed .. first_seed + n - 1``."""
    if int(n) != n or n < 1:
        raise InputError(f"Number of phantoms must be a positive integer (got {n}).")
    _check(size, first_seed)
    out = np.empty((int(n), 1, int(size), int(size)), _F)
    for i in range(int(n)):
        out[i, 0] = phantom(size, first_seed + i)
    return out
