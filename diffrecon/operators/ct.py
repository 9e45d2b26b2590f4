"""2-D parallel-beam CT: the Radon transform sampled at given angles, with an exact adjoint.

Geometry (that of scikit-image's ``radon``): the rotation axis is pixel ``(H // 2, W // 2)``; at
angle ``theta`` the ray of signed detector coordinate ``t`` (in pixels, detector ``d`` at
``t = d - n_det // 2``) is the line ``{(col', row') = t (cos theta, -sin theta) + s (sin theta,
cos theta)}``, relative to the axis, with rows counted downwards. ``y[theta, d]`` is the integral
of the image along that ray times ``pixel_size``, so attenuation in 1/cm with ``pixel_size`` in cm
gives a dimensionless sinogram.

Line integrals use Joseph's method (P. M. Joseph, "An improved algorithm for reprojecting rays
through pixel images", IEEE TMI 1(3), 1982): step one pixel along the axis the ray is closer to,
interpolate linearly along the other, weight by the step length ``1/max(|cos|, |sin|)``. The
weights form a sparse system matrix built once; ``A`` and ``A^T`` are both stored as CSR, so both
products are deterministic on a GPU (row-wise reductions in a fixed order, no atomics; see
operators/matrix.py) and the adjoint is exact.

``fbp`` is filtered back-projection (Kak & Slaney, "Principles of Computerized Tomographic
Imaging", 1988, Ch. 3, Eq. 61 for the band-limited ramp of the discrete filter).
"""
from __future__ import annotations

import functools
import math
from typing import Sequence

import numpy as np
import scipy.sparse as sp
import torch

from ..errors import InputError
from ..limits import check_bytes
from .base import LinearOperator, OperatorSpec
from .matrix import csr_from_parts, csr_matmul

Tensor = torch.Tensor

FILTERS = ("ramp", "shepp-logan", "hann")


def default_detectors(h: int, w: int) -> int:
    """``ceil(sqrt(2) max(h, w))`` made odd: every ray through the image hits a detector."""
    n = int(math.ceil(math.sqrt(2.0) * max(h, w)))
    return n + 1 - n % 2


def check_ct_bytes(n_angles: int, n_detectors: int, h: int, w: int, setting: str = "") -> None:
    """Refuse a CT geometry whose system matrices exceed the operator budget, before building it.

    Joseph's matrix has ~2 entries per pixel and view (28 bytes each while built and stored, both
    orientations); building it needs per view ~10 float64 temporaries of n_detectors x max(h, w).
    """
    check_bytes(56 * n_angles * h * w + 80 * n_detectors * max(h, w) + 16 * n_angles * n_detectors,
                f"{setting}A CT forward model with {n_angles} angles and n_detectors={n_detectors} on a {h}x{w} image",
                "operator")


def sparse_view_angles(n_views: int) -> np.ndarray:
    """``n_views`` angles (degrees) spread uniformly over [0, 180)."""
    if n_views < 1:
        raise InputError(f"Number of CT views is {n_views}; it must be at least 1.")
    return np.arange(n_views) * (180.0 / n_views)


def limited_angle_angles(range_deg: float, n_views: int) -> np.ndarray:
    """``n_views`` angles (degrees) spread uniformly over [0, range_deg)."""
    if not 0 < range_deg <= 180 or n_views < 1:
        raise InputError(f"Limited-angle range {range_deg} must lie in (0, 180] with at least one view.")
    return np.arange(n_views) * (float(range_deg) / n_views)


def joseph_matrix(h: int, w: int, angles_deg: np.ndarray, n_det: int) -> sp.csr_matrix:
    """The ``(n_angles * n_det, h * w)`` Joseph projection matrix in pixel units."""
    ci, cj = h // 2, w // 2
    t = (np.arange(n_det) - n_det // 2).astype(np.float64)[:, None]
    ray = np.broadcast_to(np.arange(n_det)[:, None], (n_det, max(h, w)))
    blocks = []  # one CSR block per view keeps the temporary memory to one view's worth
    for theta in np.deg2rad(np.asarray(angles_deg, dtype=np.float64)):
        c, s = math.cos(theta), math.sin(theta)
        rows_first = abs(c) >= abs(s)
        if rows_first:  # step over rows, interpolate along columns
            step, n_step, n_interp, weight = np.arange(h) - ci, h, w, 1.0 / abs(c)
            pos = cj + (t + step[None, :] * s) / c
        else:  # step over columns, interpolate along rows
            step, n_step, n_interp, weight = np.arange(w) - cj, w, h, 1.0 / abs(s)
            pos = ci + (step[None, :] * c - t) / s
        fixed = np.broadcast_to(np.arange(n_step)[None, :], pos.shape)
        lo = np.floor(pos)
        frac = pos - lo
        lo = lo.astype(np.int64)
        rows, cols, vals = [], [], []
        for idx, wt in ((lo, 1.0 - frac), (lo + 1, frac)):
            ok = (idx >= 0) & (idx < n_interp) & (wt > 0)
            rows.append(ray[:, :n_step][ok])
            cols.append(fixed[ok] * w + idx[ok] if rows_first else idx[ok] * w + fixed[ok])
            vals.append((wt[ok] * weight).astype(np.float32))
        blocks.append(sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                                    shape=(n_det, h * w)))
    return sp.vstack(blocks, format="csr")


@functools.lru_cache(maxsize=4)
def _system_matrices(h: int, w: int, angles_deg: tuple[float, ...], n_det: int):
    """CSR arrays (crow, col, val) of P and P^T, built once per geometry: building takes
    seconds at 256x256, and every run of the engine constructs its operator anew."""
    P = joseph_matrix(h, w, np.asarray(angles_deg), n_det)
    out = []
    for M in (P, P.T.tocsr()):
        M.sort_indices()
        out.append((torch.from_numpy(M.indptr.astype(np.int32)), torch.from_numpy(M.indices.astype(np.int32)),
                    torch.from_numpy(M.data.astype(np.float32))))
    return tuple(out)


def _filter_response(name: str, size: int) -> np.ndarray:
    """Frequency response (length ``size``, FFT order) of the discrete ramp and its apodisations."""
    n = np.fft.fftfreq(size) * size  # signed integer lags
    h = np.zeros(size)
    h[0] = 0.25
    odd = (np.abs(n) % 2) == 1
    h[odd] = -1.0 / (math.pi * n[odd]) ** 2
    resp = np.real(np.fft.fft(h))
    freq = np.fft.fftfreq(size)
    if name == "shepp-logan":
        resp = resp * np.sinc(freq)  # sin(pi f)/(pi f)
    elif name == "hann":
        resp = resp * 0.5 * (1.0 + np.cos(2 * math.pi * freq))
    return resp


class ParallelBeamCT(LinearOperator):
    """Parallel-beam projections at ``angles_deg``; meas ``(C, n_angles, n_det)``, each channel
    projected independently. ``n_detectors`` defaults to ``ceil(sqrt(2) N)`` made odd, one pixel
    apart."""

    kind = "ct"
    title = "Parallel-beam CT"

    def __init__(self, image_shape, angles_deg: Sequence[float], n_detectors: int | None = None,
                 noise_sigma: float = 0.0, pixel_size: float = 1.0):
        super().__init__(image_shape, noise_sigma)
        c, h, w = self.image_shape
        if np.iscomplexobj(angles_deg):
            raise InputError("CT angles_deg are complex numbers; projection angles must be real degrees.")
        angles = np.asarray(angles_deg, dtype=np.float64).reshape(-1)
        if angles.size < 1 or not np.all(np.isfinite(angles)):
            raise InputError("CT angles_deg must be a non-empty list of finite angles in degrees.")
        if n_detectors is None:
            n_detectors = default_detectors(h, w)
        if not _whole_positive(n_detectors) or not (pixel_size > 0 and math.isfinite(pixel_size)):
            raise InputError(f"CT n_detectors ({n_detectors}) and pixel_size ({pixel_size}) must be positive "
                             "(n_detectors a whole number, pixel_size finite).")
        check_ct_bytes(angles.size, int(n_detectors), h, w)
        self.n_det = int(n_detectors)
        self.pixel_size = float(pixel_size)
        self._angles = angles  # float64 for the file; the buffer is for devices and display
        self.register_buffer("angles_deg", torch.from_numpy(angles.astype(np.float32)))
        for prefix, (crow, col, val) in zip(("_P", "_PT"), _system_matrices(h, w, tuple(angles.tolist()), self.n_det)):
            self.register_buffer(prefix + "_crow", crow.clone(), persistent=False)
            self.register_buffer(prefix + "_col", col.clone(), persistent=False)
            self.register_buffer(prefix + "_val", val * self.pixel_size, persistent=False)
        # Angular weight of each view in the back-projection integral over [0, pi).
        srt = np.sort(np.mod(angles, 180.0))
        gaps = np.diff(srt)
        dtheta = math.pi / angles.size if gaps.size == 0 else min(math.pi / angles.size,
                                                                    math.radians(float(np.median(gaps))))
        self._dtheta = dtheta
        self._pad = max(64, 1 << int(math.ceil(math.log2(2 * self.n_det))))
        for name in FILTERS:
            resp = _filter_response(name, self._pad)[: self._pad // 2 + 1]
            self.register_buffer("_filter_" + name.replace("-", "_"), torch.from_numpy(resp.astype(np.float32)),
                                 persistent=False)

    @property
    def meas_shape(self):
        return (self.image_shape[0], int(self.angles_deg.numel()), self.n_det)

    def memory_bytes(self) -> int:
        """Bytes held by the two sparse system matrices."""
        return sum(t.numel() * t.element_size() for n, t in self.named_buffers() if n.startswith(("_P_", "_PT_")))

    def _matrices(self) -> tuple[Tensor, Tensor]:
        m, n = int(np.prod(self.meas_shape[1:])), self.image_shape[1] * self.image_shape[2]
        P = csr_from_parts(self._P_crow, self._P_col, self._P_val, (m, n))
        PT = csr_from_parts(self._PT_crow, self._PT_col, self._PT_val, (n, m))
        return P, PT

    def A(self, x: Tensor) -> Tensor:
        b, c = x.shape[:2]
        P, PT = self._matrices()
        y = csr_matmul(P, PT, x.reshape(b * c, -1).T)
        return y.T.reshape(b, *self.meas_shape)

    def A_adjoint(self, y: Tensor) -> Tensor:
        b, c = y.shape[:2]
        P, PT = self._matrices()
        x = csr_matmul(PT, P, y.reshape(b * c, -1).T)
        return x.T.reshape(b, *self.image_shape)

    def fbp(self, y: Tensor, filter: str = "ramp") -> Tensor:
        """Filtered back-projection of a sinogram ``(B, C, n_angles, n_det)``; returns the image in
        the sinogram's units divided by ``pixel_size`` (1/cm for a dimensionless sinogram and cm)."""
        if filter not in FILTERS:
            raise InputError(f"FBP filter is {filter!r}; valid filters are {', '.join(FILTERS)}.")
        resp = getattr(self, "_filter_" + filter.replace("-", "_"))
        spec = torch.fft.rfft(y, n=self._pad, dim=-1) * resp
        q = torch.fft.irfft(spec, n=self._pad, dim=-1)[..., : self.n_det]
        return self.A_adjoint(q) * (self._dtheta / self.pixel_size**2)

    def direct(self, y: Tensor) -> Tensor:
        return self.fbp(y)

    def to_spec(self) -> OperatorSpec:
        return OperatorSpec(
            self.kind, self.image_shape, noise_sigma=self.noise_sigma,
            params={"n_detectors": self.n_det, "pixel_size": self.pixel_size},
            arrays={"angles_deg": self._angles.copy()},
        )

    @classmethod
    def from_spec(cls, spec: OperatorSpec) -> "ParallelBeamCT":
        if "angles_deg" not in spec.arrays:
            raise InputError("A CT forward model needs the array 'angles_deg' (projection angles in degrees).")
        return cls(spec.image_shape, spec.arrays["angles_deg"], spec.params.get("n_detectors"),
                   spec.noise_sigma, float(spec.params.get("pixel_size", 1.0)))


def _whole_positive(value) -> bool:
    """True for a whole number >= 1 (an int, or a float such as 363.0 read from JSON)."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) \
        and math.isfinite(value) and value >= 1 and value == int(value)
