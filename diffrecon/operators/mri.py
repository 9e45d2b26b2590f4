"""Cartesian MRI: ``y_c = M F (S_c x)`` for coils ``c`` (SENSE; Pruessmann et al., MRM 42, 1999).

``F`` is the unitary, centred 2-D DFT: ``F x = fftshift(fft2(ifftshift(x), norm="ortho"))``, so
the image centre is pixel ``(H // 2, W // 2)`` and k-space DC sits at index ``(H // 2, W // 2)``
(the fastMRI convention). ``M`` is a bool mask of sampled k-space points, ``S_c`` the coil
sensitivities (single coil: ``S = 1``). Measurements are ``(coils, H, W)`` complex64 with zeros
where not sampled. A real image (``image_complex=False``) has ``A^H y = Re(sum_c conj(S_c)
F^H M y_c)``, the adjoint of the real-linear map.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from ..errors import InputError
from .base import LinearOperator, OperatorSpec, per_sample

Tensor = torch.Tensor


def fft2c(x: Tensor) -> Tensor:
    """Unitary centred 2-D DFT over the last two axes."""
    return torch.fft.fftshift(torch.fft.fft2(torch.fft.ifftshift(x, dim=(-2, -1)), norm="ortho"), dim=(-2, -1))


def ifft2c(k: Tensor) -> Tensor:
    """Inverse of :func:`fft2c`."""
    return torch.fft.fftshift(torch.fft.ifft2(torch.fft.ifftshift(k, dim=(-2, -1)), norm="ortho"), dim=(-2, -1))


def cartesian_mask(shape: Sequence[int], acceleration: float, center_fraction: float | None = None,
                   kind: str = "random", seed: int = 0) -> np.ndarray:
    """``(H, W)`` bool mask of whole phase-encoding columns, as in fastMRI (Zbontar et al., 2018).

    A fully sampled centre of ``round(W * center_fraction)`` columns (default ``0.32 /
    acceleration``: 0.08 for x4, 0.04 for x8) plus, to reach ``round(W / acceleration)`` columns
    in total, columns drawn at random ("random") or equally spaced with a random offset
    ("equispaced") among the others.
    """
    h, w = int(shape[-2]), int(shape[-1])
    if acceleration < 1:
        raise InputError(f"MRI acceleration is {acceleration}; it must be at least 1.")
    if kind not in ("random", "equispaced"):
        raise InputError(f"MRI mask kind is {kind!r}; valid kinds are random and equispaced.")
    cf = 0.32 / acceleration if center_fraction is None else float(center_fraction)
    if not 0 < cf <= 1:
        raise InputError(f"MRI center_fraction is {cf}; it must lie in (0, 1].")
    n_total = max(1, int(round(w / acceleration)))
    n_low = min(n_total, max(1, int(round(w * cf))))
    cols = np.zeros(w, dtype=bool)
    start = (w - n_low + 1) // 2
    cols[start : start + n_low] = True
    others = np.flatnonzero(~cols)
    n_more = n_total - n_low
    rng = np.random.default_rng(seed)
    if n_more > 0:
        if kind == "random":
            cols[rng.choice(others, n_more, replace=False)] = True
        else:
            spacing = others.size / n_more
            picks = np.floor(rng.uniform(0, spacing) + np.arange(n_more) * spacing).astype(int)
            cols[others[np.clip(picks, 0, others.size - 1)]] = True
    return np.broadcast_to(cols[None, :], (h, w)).copy()


def birdcage_maps(shape: Sequence[int], n_coils: int, radius: float = 1.5) -> np.ndarray:
    """Synthetic ``(n_coils, H, W)`` complex64 sensitivities of a birdcage coil.

    Coil ``c`` sits at angle ``2 pi c / n`` on a circle of ``radius`` (in units of the half image
    width) and has the Biot-Savart-like profile ``exp(i phi) / r``; maps are normalised so that
    ``sum_c |S_c|^2 = 1`` at every pixel.
    """
    h, w = int(shape[-2]), int(shape[-1])
    if n_coils < 1:
        raise InputError(f"Number of coils is {n_coils}; it must be at least 1.")
    yy, xx = np.mgrid[:h, :w].astype(np.float64)
    xn, yn = (xx - w / 2) / (w / 2), (yy - h / 2) / (h / 2)
    maps = np.empty((n_coils, h, w), dtype=np.complex128)
    for c in range(n_coils):
        a = 2 * math.pi * c / n_coils
        dx, dy = xn - radius * math.cos(a), yn - radius * math.sin(a)
        maps[c] = np.exp(1j * (np.arctan2(dx, -dy) - a)) / np.hypot(dx, dy)
    maps /= np.sqrt((np.abs(maps) ** 2).sum(axis=0, keepdims=True))
    return maps.astype(np.complex64)


class MRI(LinearOperator):
    """Cartesian (multi-coil) MRI. ``mask`` bool ``(H, W)``; ``coil_maps`` complex ``(coils, H, W)``
    or None; image ``(1, H, W)``, real or (``image_complex``) complex; meas ``(coils, H, W)``."""

    kind = "mri"
    title = "MRI (Cartesian k-space)"
    is_complex = True

    def __init__(self, image_shape, mask, coil_maps=None, noise_sigma: float = 0.0, image_complex: bool = False):
        super().__init__(image_shape, noise_sigma)
        c, h, w = self.image_shape
        if c != 1:
            raise InputError(f"An MRI image has one channel (got image_shape {self.image_shape}).")
        m = torch.as_tensor(np.asarray(mask)).to(torch.bool)
        if m.shape != (h, w):
            raise InputError(f"MRI mask has shape {tuple(m.shape)}; it must be ({h}, {w}).")
        self.image_complex = bool(image_complex)
        self.single_coil = coil_maps is None
        S = torch.ones(1, h, w, dtype=torch.complex64) if coil_maps is None else \
            torch.as_tensor(np.asarray(coil_maps)).to(torch.complex64)
        if S.ndim != 3 or S.shape[1:] != (h, w) or S.shape[0] < 1:
            raise InputError(f"MRI coil_maps have shape {tuple(S.shape)}; they must be (coils, {h}, {w}) with at "
                             "least one coil.")
        self.register_buffer("mask", m)
        self.register_buffer("coil_maps", S.contiguous())
        self.register_buffer("_weight", m.to(torch.float32), persistent=False)
        self.register_buffer("_sos", S.abs().square().sum(0).clamp_min(1e-12), persistent=False)
        self.exact_pinv = self.single_coil and self.image_complex

    @property
    def meas_shape(self):
        return tuple(self.coil_maps.shape)

    def measured(self) -> Tensor:
        return self.mask.expand(self.meas_shape)

    def A(self, x: Tensor) -> Tensor:
        return fft2c(self.coil_maps * x.to(torch.complex64)) * self._weight

    def _combine(self, y: Tensor) -> Tensor:
        x = (self.coil_maps.conj() * ifft2c(y * self._weight)).sum(dim=1, keepdim=True)
        return x if self.image_complex else x.real

    def A_adjoint(self, y: Tensor) -> Tensor:
        return self._combine(y)

    def direct(self, y: Tensor) -> Tensor:
        """Zero-filled reconstruction, coil-combined with ``conj(S)`` and divided by ``sum |S|^2``."""
        return self._combine(y) / self._sos

    def A_pinv(self, y: Tensor, iters: int = 100) -> Tensor:
        if self.exact_pinv:
            return ifft2c(y * self._weight)
        return super().A_pinv(y, iters)

    def solve_regularized(self, y: Tensor, z: Tensor, gamma, iters: int = 30) -> Tensor:
        if not self.exact_pinv:
            return super().solve_regularized(y, z, gamma, iters)
        g = per_sample(gamma, z, torch.float32)
        return ifft2c((self._weight * y + g * fft2c(z)) / (self._weight + g))

    def to_spec(self) -> OperatorSpec:
        arrays = {"mask": self.mask.cpu().numpy()}
        if not self.single_coil:
            arrays["coil_maps"] = self.coil_maps.cpu().numpy()
        return OperatorSpec(self.kind, self.image_shape, params={"image_complex": self.image_complex},
                            arrays=arrays, noise_sigma=self.noise_sigma)

    @classmethod
    def from_spec(cls, spec: OperatorSpec) -> "MRI":
        if "mask" not in spec.arrays:
            raise InputError("An MRI forward model needs the array 'mask' (sampled k-space points).")
        return cls(spec.image_shape, spec.arrays["mask"], spec.arrays.get("coil_maps"), spec.noise_sigma,
                   bool(spec.params.get("image_complex", False)))
