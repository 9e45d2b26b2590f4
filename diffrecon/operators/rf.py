"""RF imaging: linear inverse scattering under the first Born approximation.

A 2-D scalar (TM) field, antennas on a circle of radius ``radius_m`` around the image centre,
every transmitter/receiver pair measured at every frequency (multi-static, multi-frequency). With
the background Green's function ``G(r, r') = (i/4) H0^(1)(k |r - r'|)`` and the scatterer's
contrast ``chi(r) = eps_r(r) - 1`` (the image, real), the first Born approximation of the
scattered field is (Chew, "Waves and Fields in Inhomogeneous Media", 1995, Ch. 8; Devaney,
"Mathematical Foundations of Imaging, Tomography and Wavefield Inversion", 2012, Eq. 6.14)

    y[f, tx, rx] = k^2 dA sum_p G(r_rx, r_p) G(r_p, r_tx) chi_p,     k = 2 pi f / c,

with ``dA`` the pixel area, pixels at their centres, and an incident field ``G(r, r_tx)``
(unit line source). The matrix is rebuilt from the physical parameters when a file is loaded.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from scipy.special import hankel1

from ..errors import InputError
from ..limits import check_bytes
from .base import OperatorSpec
from .matrix import MatrixOperator

Tensor = torch.Tensor


def antenna_positions(n_antennas: int, radius_m: float) -> np.ndarray:
    """``(n, 2)`` positions (x, y) in metres, equally spaced on the circle, first on +x."""
    a = 2 * math.pi * np.arange(n_antennas) / n_antennas
    return radius_m * np.stack([np.cos(a), np.sin(a)], axis=1)


def pixel_positions(h: int, w: int, pixel_size_m: float) -> np.ndarray:
    """``(h * w, 2)`` pixel centres (x right, y up), raster order, centred on the image centre."""
    yy, xx = np.mgrid[:h, :w].astype(np.float64)
    x = (xx - (w - 1) / 2) * pixel_size_m
    y = ((h - 1) / 2 - yy) * pixel_size_m
    return np.stack([x.ravel(), y.ravel()], axis=1)


def born_matrix(h: int, w: int, frequencies_hz: Sequence[float], n_antennas: int, radius_m: float,
                pixel_size_m: float, wave_speed: float) -> np.ndarray:
    """The ``(n_freq * n_ant * n_ant, h * w)`` complex Born matrix (rows ordered f, tx, rx)."""
    ant = antenna_positions(n_antennas, radius_m)
    pix = pixel_positions(h, w, pixel_size_m)
    dist = np.linalg.norm(ant[:, None, :] - pix[None, :, :], axis=-1)  # (n_ant, n_pix)
    rows = []
    for f in frequencies_hz:
        k = 2 * math.pi * float(f) / wave_speed
        G = 0.25j * hankel1(0, k * dist)  # G(r_ant, r_p), symmetric in its arguments
        rows.append(k**2 * pixel_size_m**2 * G[None, :, :] * G[:, None, :])  # [tx, rx, p]
    return np.concatenate(rows, axis=0).reshape(-1, h * w).astype(np.complex64)


class RFBorn(MatrixOperator):
    """Multi-static, multi-frequency Born scattering operator; image = contrast ``chi`` ``(1, H, W)``,
    meas ``(n_freq, n_antennas, n_antennas)`` complex (transmitter, then receiver)."""

    kind = "rf"
    title = "RF inverse scattering (Born)"

    def __init__(self, image_shape, frequencies_hz: Sequence[float], n_antennas: int, radius_m: float,
                 pixel_size_m: float, noise_sigma: float = 0.0, wave_speed: float = 299792458.0):
        c, h, w = (int(s) for s in image_shape)
        freqs = [float(f) for f in np.atleast_1d(np.asarray(frequencies_hz, dtype=np.float64))]
        if c != 1:
            raise InputError(f"An RF contrast image has one channel (got image_shape {tuple(image_shape)}).")
        if not freqs or min(freqs) <= 0 or n_antennas < 1 or pixel_size_m <= 0 or wave_speed <= 0:
            raise InputError("RF frequencies_hz, n_antennas, pixel_size_m and wave_speed must all be positive.")
        if not all(math.isfinite(v) for v in (*freqs, radius_m, pixel_size_m, wave_speed)):
            raise InputError("RF frequencies_hz, radius_m, pixel_size_m and wave_speed must be finite numbers.")
        # The Born matrix (complex64) and, per frequency, complex128 Green's functions and products.
        check_bytes(40 * len(freqs) * int(n_antennas) ** 2 * h * w,
                    f"An RF forward model with {len(freqs)} frequencies_hz and n_antennas={int(n_antennas)} on a "
                    f"{h}x{w} image", "operator")
        half_diag = 0.5 * math.hypot(h, w) * pixel_size_m
        if radius_m <= half_diag:
            raise InputError(f"RF antenna radius_m is {radius_m}; it must exceed the image's half diagonal "
                             f"{half_diag:.4g} m so that antennas lie outside the image.")
        matrix = born_matrix(h, w, freqs, int(n_antennas), float(radius_m), float(pixel_size_m), float(wave_speed))
        super().__init__((c, h, w), torch.from_numpy(matrix), noise_sigma)
        self.frequencies_hz = freqs
        self.n_antennas = int(n_antennas)
        self.radius_m = float(radius_m)
        self.pixel_size_m = float(pixel_size_m)
        self.wave_speed = float(wave_speed)
        self._meas_shape = (len(freqs), self.n_antennas, self.n_antennas)

    def to_spec(self) -> OperatorSpec:
        return OperatorSpec(self.kind, self.image_shape, noise_sigma=self.noise_sigma, params={
            "frequencies_hz": list(self.frequencies_hz), "n_antennas": self.n_antennas,
            "radius_m": self.radius_m, "pixel_size_m": self.pixel_size_m, "wave_speed": self.wave_speed})

    @classmethod
    def from_spec(cls, spec: OperatorSpec) -> "RFBorn":
        p = spec.params
        try:
            return cls(spec.image_shape, p["frequencies_hz"], int(p["n_antennas"]), float(p["radius_m"]),
                       float(p["pixel_size_m"]), spec.noise_sigma, float(p.get("wave_speed", 299792458.0)))
        except KeyError as missing:
            raise InputError(f"An RF forward model needs the parameter {missing.args[0]!r}.") from None
