"""Super-resolution: ``y`` is the ``f x f`` block average of ``x`` (average pooling), ``f`` in {2, 4}.

``A A^T = I / f^2``, so every inverse has a closed form. The SVD follows Kawar et al. (DDRM,
NeurIPS 2022, Appendix "super resolution"): per block an orthonormal basis whose first vector is
constant (``1/f`` per pixel), with singular value ``1/f``; the other ``f^2 - 1`` vectors (rows of
a normalised Sylvester-Hadamard matrix) span the null space.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.linalg import hadamard

from ..errors import InputError
from .base import LinearOperator, OperatorSpec, per_sample

Tensor = torch.Tensor


class SuperResolution(LinearOperator):
    """``y = avgpool_f(x)``, meas ``(C, H/f, W/f)``."""

    kind = "sr"
    title = "Super-resolution (block average)"
    has_svd = True
    exact_pinv = True

    def __init__(self, image_shape, factor: int = 4, noise_sigma: float = 0.0):
        super().__init__(image_shape, noise_sigma)
        c, h, w = self.image_shape
        f = int(factor)
        if f not in (2, 4):
            raise InputError(f"Super-resolution factor is {factor}; valid factors are 2 and 4.")
        if h % f or w % f:
            raise InputError(f"Super-resolution factor {f} must divide the image size {h}x{w}.")
        self.factor = f
        basis = hadamard(f * f).astype(np.float32) / f  # rows orthonormal, row 0 constant
        self.register_buffer("_basis", torch.from_numpy(basis), persistent=False)
        self.register_buffer("_s", torch.full((c * (h // f) * (w // f),), 1.0 / f), persistent=False)

    @property
    def meas_shape(self):
        c, h, w = self.image_shape
        return (c, h // self.factor, w // self.factor)

    def A(self, x: Tensor) -> Tensor:
        return F.avg_pool2d(x, self.factor)

    def _replicate(self, y: Tensor) -> Tensor:
        f = self.factor
        return y.repeat_interleave(f, dim=-2).repeat_interleave(f, dim=-1)

    def A_adjoint(self, y: Tensor) -> Tensor:
        return self._replicate(y) / self.factor**2

    def A_pinv(self, y: Tensor, iters: int = 0) -> Tensor:
        return self._replicate(y)

    def solve_regularized(self, y: Tensor, z: Tensor, gamma, iters: int = 0) -> Tensor:
        """``A^T A = P / f^2`` with ``P`` the projection onto block-constant images, so
        ``x = P b / (1/f^2 + gamma) + (I - P) b / gamma`` with ``b = A^T y + gamma z``."""
        g = per_sample(gamma, z, z.dtype)
        b = self.A_adjoint(y) + g * z
        pb = self._replicate(F.avg_pool2d(b, self.factor))
        return pb / (1.0 / self.factor**2 + g) + (b - pb) / g

    # ----------------------------------------------------------------- SVD
    def _blocks(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        f = self.factor
        return x.reshape(b, c, h // f, f, w // f, f).permute(0, 1, 2, 4, 3, 5).reshape(b, c, h // f, w // f, f * f)

    def singulars(self) -> Tensor:
        return self._s

    def V_adjoint(self, x: Tensor) -> Tensor:
        coeff = self._blocks(x) @ self._basis.T  # (B, C, h, w, f^2), coefficient 0 is the mean part
        return coeff.movedim(-1, 1).reshape(x.shape[0], -1)

    def V(self, coeff: Tensor) -> Tensor:
        b = coeff.shape[0]
        c, h, w = self.image_shape
        f = self.factor
        blocks = coeff.reshape(b, f * f, c, h // f, w // f).movedim(1, -1) @ self._basis
        return blocks.reshape(b, c, h // f, w // f, f, f).permute(0, 1, 2, 4, 3, 5).reshape(b, c, h, w)

    def U_adjoint(self, y: Tensor) -> Tensor:
        return y.reshape(y.shape[0], -1)

    def U(self, coeff: Tensor) -> Tensor:
        return coeff.reshape(coeff.shape[0], *self.meas_shape)

    def to_spec(self) -> OperatorSpec:
        return OperatorSpec(self.kind, self.image_shape, params={"factor": self.factor},
                            noise_sigma=self.noise_sigma)

    @classmethod
    def from_spec(cls, spec: OperatorSpec) -> "SuperResolution":
        return cls(spec.image_shape, int(spec.params["factor"]), spec.noise_sigma)
