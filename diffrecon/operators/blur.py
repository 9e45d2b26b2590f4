"""Deblurring: circular (periodic) convolution with a known kernel, computed by FFT.

``A x = k (*) x`` with periodic boundaries, so ``A`` is diagonalised by the 2-D DFT:
``F(A x) = K . F(x)`` with ``K = F(k)`` the kernel's (unnormalised) spectrum, and the adjoint
multiplies by ``conj(K)``. Real images are not periodic, so expect wrap-around at the borders.

SVD with real bases (Kawar et al., DDRM, NeurIPS 2022, Sec. 4 and Appendix; here exact rather than
separable): ``V`` is the real orthonormal Fourier basis -- for each frequency that is its own
conjugate one cosine, for every other conjugate pair ``(w, -w)`` the pair
``sqrt(2) Re``/``sqrt(2) Im`` of the unitary DFT coefficient -- with singular values ``|K(w)|``
(repeated for the pair), and ``U`` is ``V`` rotated by the phase of ``K`` at each frequency.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import InputError
from ..limits import check_bytes
from ..linalg import pinv_kept
from .base import LinearOperator, OperatorSpec, per_sample

Tensor = torch.Tensor


def gaussian_kernel(size: int, std: float) -> np.ndarray:
    """Isotropic Gaussian ``(size, size)`` kernel, normalised to sum 1."""
    if not (size >= 1 and 0 < std < math.inf):
        raise InputError(f"Gaussian kernel size {size} and std {std} must be positive (std a finite width).")
    check_bytes(16 * size * size, f"A Gaussian kernel of size {size}", "operator")
    t = np.arange(size) - (size - 1) / 2.0
    g = np.exp(-0.5 * (t / std) ** 2)
    k = np.outer(g, g)
    return (k / k.sum()).astype(np.float32)


def motion_kernel(size: int, angle_deg: float, length: float) -> np.ndarray:
    """Linear motion blur: a line segment of ``length`` pixels at ``angle_deg`` (counter-clockwise
    from the +x axis), rasterised by supersampling into a ``(size, size)`` kernel of sum 1."""
    if size < 1 or length <= 0:
        raise InputError(f"Motion kernel size {size} and length {length} must be positive.")
    c = (size - 1) / 2.0
    t = np.linspace(-length / 2.0, length / 2.0, max(2, int(math.ceil(length * 16))))
    a = math.radians(angle_deg)
    col = np.clip(np.rint(c + t * math.cos(a)).astype(int), 0, size - 1)
    row = np.clip(np.rint(c - t * math.sin(a)).astype(int), 0, size - 1)
    k = np.zeros((size, size), dtype=np.float64)
    np.add.at(k, (row, col), 1.0)
    return (k / k.sum()).astype(np.float32)


def _real_fourier_layout(h: int, w: int):
    """Indices (into a flattened ``(h, w)`` spectrum) of the representative of every conjugate
    class, which of those are self-conjugate, and the mirror positions ``-w`` of the others."""
    k = np.arange(h)[:, None]
    l = np.arange(w)[None, :]
    lin = (k * w + l).ravel()
    mirror = (((-k) % h) * w + (-l) % w).ravel()
    rep = lin[lin <= mirror]
    self_conj = mirror[rep] == rep
    pairs = rep[~self_conj]
    return rep, self_conj, pairs, mirror[pairs]


class Blur(LinearOperator):
    """Circular convolution ``y = k (*) x`` (periodic boundaries, via FFT), same kernel per channel.

    ``kernel`` is a 2-D array no larger than the image; it is normalised to sum 1 and centred at
    ``(kh // 2, kw // 2)``.
    """

    kind = "blur"
    title = "Deblurring (circular convolution)"
    has_svd = True
    exact_pinv = True

    def __init__(self, image_shape, kernel, noise_sigma: float = 0.0):
        super().__init__(image_shape, noise_sigma)
        c, h, w = self.image_shape
        if np.iscomplexobj(kernel):
            raise InputError("Blur kernel is complex; a blur kernel must be real.")
        k = np.asarray(kernel, dtype=np.float64)
        if k.ndim != 2 or k.shape[0] > h or k.shape[1] > w or abs(k.sum()) < 1e-12:
            raise InputError(
                f"Blur kernel must be a 2-D array no larger than the {h}x{w} image with a non-zero sum "
                f"(got shape {k.shape})."
            )
        k = k / k.sum()
        pad = np.zeros((h, w))
        pad[: k.shape[0], : k.shape[1]] = k
        pad = np.roll(pad, (-(k.shape[0] // 2), -(k.shape[1] // 2)), axis=(0, 1))
        spec = np.fft.fft2(pad)
        self.register_buffer("kernel", torch.from_numpy(k.astype(np.float32)))
        self.register_buffer("_K", torch.from_numpy(spec.astype(np.complex64)), persistent=False)
        self.register_buffer("_Kr", torch.from_numpy(np.fft.rfft2(pad).astype(np.complex64)), persistent=False)
        self._build_svd(spec, c, h, w)

    def _build_svd(self, spec: np.ndarray, c: int, h: int, w: int) -> None:
        rep, self_conj, pairs, mirrors = _real_fourier_layout(h, w)
        mag = np.abs(spec).ravel()
        phase = np.where(mag > 1e-12 * mag.max(), spec.ravel() / np.maximum(mag, 1e-300), 1.0)
        # A real kernel has a real spectrum where w = -w; keep U exactly real there.
        phase[rep[self_conj]] = np.sign(phase[rep[self_conj]].real) + (phase[rep[self_conj]].real == 0)
        hw = h * w
        offs = (np.arange(c) * hw)[:, None]
        re_idx = (offs + rep[None]).ravel()  # natural order: all Re parts, then all Im parts
        im_idx = (offs + pairs[None]).ravel()
        re_scale = np.tile(np.where(self_conj, 1.0, math.sqrt(2.0)), c)
        s_nat = np.concatenate([np.tile(mag[rep], c), np.tile(mag[pairs], c)])
        order = np.argsort(-s_nat, kind="stable")
        to_t = lambda a, dt=torch.int64: torch.from_numpy(np.ascontiguousarray(a)).to(dt)  # noqa: E731
        self.register_buffer("_re_idx", to_t(re_idx), persistent=False)
        self.register_buffer("_im_idx", to_t(im_idx), persistent=False)
        self.register_buffer("_mirror_src", to_t((offs + pairs[None]).ravel()), persistent=False)
        self.register_buffer("_mirror_dst", to_t((offs + mirrors[None]).ravel()), persistent=False)
        self.register_buffer("_re_scale", to_t(re_scale, torch.float32), persistent=False)
        self.register_buffer("_order", to_t(order), persistent=False)
        self.register_buffer("_inv_order", to_t(np.argsort(order)), persistent=False)
        self.register_buffer("_s", to_t(s_nat[order], torch.float32), persistent=False)
        self.register_buffer("_phase", to_t(phase.reshape(h, w), torch.complex64), persistent=False)

    @property
    def meas_shape(self):
        return self.image_shape

    def _filter(self, x: Tensor, spectrum: Tensor) -> Tensor:
        h, w = self.image_shape[1:]
        return torch.fft.irfft2(torch.fft.rfft2(x) * spectrum, s=(h, w))

    def A(self, x: Tensor) -> Tensor:
        return self._filter(x, self._Kr)

    def A_adjoint(self, y: Tensor) -> Tensor:
        return self._filter(y, self._Kr.conj())

    def A_pinv(self, y: Tensor, iters: int = 0) -> Tensor:
        mag2 = self._Kr.abs().square()
        inv = torch.where(pinv_kept(self._Kr), self._Kr.conj() / mag2.clamp_min(1e-30), torch.zeros_like(self._Kr))
        return self._filter(y, inv)

    def solve_regularized(self, y: Tensor, z: Tensor, gamma, iters: int = 0) -> Tensor:
        """``(K^H K + gamma)^-1 (K^H y + gamma z)`` in Fourier, per sample."""
        h, w = self.image_shape[1:]
        g = per_sample(gamma, z, torch.float32)
        num = self._Kr.conj() * torch.fft.rfft2(y) + g * torch.fft.rfft2(z)
        return torch.fft.irfft2(num / (self._Kr.abs().square() + g), s=(h, w))

    # ----------------------------------------------------------------- SVD
    def singulars(self) -> Tensor:
        return self._s

    def _coefficients(self, x: Tensor, rotate: bool) -> Tensor:
        X = torch.fft.fft2(x, norm="ortho")
        if rotate:
            X = X * self._phase.conj()
        flat = X.reshape(x.shape[0], -1)
        nat = torch.cat([flat.real[:, self._re_idx] * self._re_scale,
                         flat.imag[:, self._im_idx] * math.sqrt(2.0)], dim=1)
        return nat[:, self._order]

    def _image(self, coeff: Tensor, rotate: bool) -> Tensor:
        b = coeff.shape[0]
        nat = coeff[:, self._inv_order]
        n_re = self._re_idx.numel()
        re = torch.zeros(b, int(np.prod(self.image_shape)), dtype=coeff.dtype, device=coeff.device)
        im = torch.zeros_like(re)
        re[:, self._re_idx] = nat[:, :n_re] / self._re_scale
        im[:, self._im_idx] = nat[:, n_re:] / math.sqrt(2.0)
        re[:, self._mirror_dst] = re[:, self._mirror_src]
        im[:, self._mirror_dst] = -im[:, self._mirror_src]
        X = torch.complex(re, im).reshape(b, *self.image_shape)
        if rotate:
            X = X * self._phase
        return torch.fft.ifft2(X, norm="ortho").real

    def V_adjoint(self, x: Tensor) -> Tensor:
        return self._coefficients(x, rotate=False)

    def V(self, c: Tensor) -> Tensor:
        return self._image(c, rotate=False)

    def U_adjoint(self, y: Tensor) -> Tensor:
        return self._coefficients(y, rotate=True)

    def U(self, c: Tensor) -> Tensor:
        return self._image(c, rotate=True)

    def to_spec(self) -> OperatorSpec:
        return OperatorSpec(self.kind, self.image_shape, arrays={"kernel": self.kernel.cpu().numpy()},
                            noise_sigma=self.noise_sigma)

    @classmethod
    def from_spec(cls, spec: OperatorSpec) -> "Blur":
        return cls(spec.image_shape, spec.arrays["kernel"], spec.noise_sigma)
