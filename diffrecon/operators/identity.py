"""Denoising: the identity forward model, ``y = x + noise``."""
from __future__ import annotations

import numpy as np
import torch

from .base import LinearOperator, OperatorSpec

Tensor = torch.Tensor


class Denoise(LinearOperator):
    """``A = I``. Parameters: ``image_shape``, ``noise_sigma``."""

    kind = "denoise"
    title = "Denoising (identity)"
    has_svd = True
    exact_pinv = True

    def __init__(self, image_shape, noise_sigma: float = 0.0):
        super().__init__(image_shape, noise_sigma)
        self.register_buffer("_ones", torch.ones(int(np.prod(self.image_shape))), persistent=False)

    @property
    def meas_shape(self):
        return self.image_shape

    def A(self, x: Tensor) -> Tensor:
        return x

    def A_adjoint(self, y: Tensor) -> Tensor:
        return y

    def singulars(self) -> Tensor:
        return self._ones

    def V(self, c: Tensor) -> Tensor:
        return c.reshape(c.shape[0], *self.image_shape)

    def V_adjoint(self, x: Tensor) -> Tensor:
        return x.reshape(x.shape[0], -1)

    U, U_adjoint = V, V_adjoint

    def to_spec(self) -> OperatorSpec:
        return OperatorSpec(self.kind, self.image_shape, noise_sigma=self.noise_sigma)

    @classmethod
    def from_spec(cls, spec: OperatorSpec) -> "Denoise":
        return cls(spec.image_shape, spec.noise_sigma)
