"""Inpainting: a pixel mask, ``y = m * x + noise`` with ``m`` in {0, 1}.

``A`` is a diagonal 0/1 matrix, so ``A^T A = A`` is a projection and every inverse has a closed
form. The SVD is a permutation (Kawar et al., DDRM, NeurIPS 2022, Appendix "inpainting"):
measured pixels first with singular value 1, missing pixels after them.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..errors import InputError
from .base import LinearOperator, OperatorSpec, per_sample

Tensor = torch.Tensor


def _hw(image_shape: Sequence[int]) -> tuple[int, int]:
    return int(image_shape[-2]), int(image_shape[-1])


def random_mask(image_shape: Sequence[int], fraction_missing: float, seed: int = 0) -> np.ndarray:
    """``(H, W)`` bool mask with exactly ``round(fraction_missing * H * W)`` pixels missing."""
    if not 0.0 <= fraction_missing < 1.0:
        raise InputError(f"fraction_missing is {fraction_missing}; it must lie in [0, 1).")
    h, w = _hw(image_shape)
    n_missing = int(round(fraction_missing * h * w))
    rng = np.random.default_rng(seed)
    mask = np.ones(h * w, dtype=bool)
    mask[rng.permutation(h * w)[:n_missing]] = False
    return mask.reshape(h, w)


def box_mask(image_shape: Sequence[int], boxes: Sequence[tuple[int, int, int, int]]) -> np.ndarray:
    """``(H, W)`` bool mask, False inside each ``(top, left, height, width)`` box."""
    h, w = _hw(image_shape)
    mask = np.ones((h, w), dtype=bool)
    for box in boxes:
        top, left, bh, bw = (int(v) for v in box)
        if bh <= 0 or bw <= 0 or top < 0 or left < 0 or top + bh > h or left + bw > w:
            raise InputError(
                f"Inpainting box {tuple(box)} (top, left, height, width) must lie inside the {h}x{w} image."
            )
        mask[top : top + bh, left : left + bw] = False
    return mask


class Inpaint(LinearOperator):
    """``y = mask * x``. ``mask`` bool ``(H, W)`` or ``(C, H, W)``, True where measured.

    ``y`` has the image's shape, with zeros at missing pixels.
    """

    kind = "inpaint"
    title = "Inpainting (pixel mask)"
    has_svd = True
    exact_pinv = True

    def __init__(self, image_shape, mask, noise_sigma: float = 0.0):
        super().__init__(image_shape, noise_sigma)
        c, h, w = self.image_shape
        m = torch.as_tensor(np.asarray(mask)).to(torch.bool)
        if m.shape not in ((h, w), (c, h, w)):
            raise InputError(
                f"Inpainting mask has shape {tuple(m.shape)}; valid shapes are ({h}, {w}) or ({c}, {h}, {w})."
            )
        m = m.expand(c, h, w).contiguous()
        self.register_buffer("mask", m)
        self.register_buffer("_weight", m.to(torch.float32), persistent=False)
        flat = m.reshape(-1)
        # A stable sort of "not measured" puts the measured pixels first, in raster order.
        perm = torch.argsort((~flat).to(torch.int8), stable=True)
        self.register_buffer("_perm", perm, persistent=False)
        self.register_buffer("_inv_perm", torch.argsort(perm), persistent=False)
        self.register_buffer("_ones", torch.ones(int(flat.sum())), persistent=False)

    @property
    def meas_shape(self):
        return self.image_shape

    def measured(self) -> Tensor:
        return self.mask

    def A(self, x: Tensor) -> Tensor:
        return x * self._weight

    def A_adjoint(self, y: Tensor) -> Tensor:
        return y * self._weight

    def A_pinv(self, y: Tensor, iters: int = 0) -> Tensor:
        return y * self._weight

    def solve_regularized(self, y: Tensor, z: Tensor, gamma, iters: int = 0) -> Tensor:
        g = per_sample(gamma, z, z.dtype)
        # With gamma = 0 a missing pixel is unconstrained; keep z there rather than divide by 0.
        return (self._weight * y + g * z) / (self._weight + g).clamp_min(1e-12) + (self._weight + g == 0) * z

    # SVD: V permutes pixels (measured first), U picks the measured entries of y.
    def singulars(self) -> Tensor:
        return self._ones

    def V_adjoint(self, x: Tensor) -> Tensor:
        return x.reshape(x.shape[0], -1)[:, self._perm]

    def V(self, c: Tensor) -> Tensor:
        return c[:, self._inv_perm].reshape(c.shape[0], *self.image_shape)

    def U_adjoint(self, y: Tensor) -> Tensor:
        return y.reshape(y.shape[0], -1)[:, self._perm[: self._ones.numel()]]

    def U(self, c: Tensor) -> Tensor:
        r = self._ones.numel()
        full = torch.cat([c, c.new_zeros(c.shape[0], self._perm.numel() - r)], dim=1)
        return self.V(full)

    def to_spec(self) -> OperatorSpec:
        return OperatorSpec(self.kind, self.image_shape, arrays={"mask": self.mask.cpu().numpy()},
                            noise_sigma=self.noise_sigma)

    @classmethod
    def from_spec(cls, spec: OperatorSpec) -> "Inpaint":
        return cls(spec.image_shape, spec.arrays["mask"], spec.noise_sigma)
