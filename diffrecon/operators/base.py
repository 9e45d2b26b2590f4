"""The operator interface: a linear forward model ``y = A x + noise``.

Conventions every operator follows (the adjointness test in the suite checks them):

* Images are ``(B, C, H, W)`` tensors, real float32 unless ``image_complex`` is set.
  Measurements are ``(B, *meas_shape)``, float32 or complex64 (``is_complex``).
* Inner products are real: ``<u, v> = Re sum conj(u) v``. A real image with a complex
  measurement therefore has ``A_adjoint(y) = Re(A^H y)``, the true adjoint of the real-linear map.
* ``noise_sigma`` is the standard deviation of the white Gaussian noise on each real degree of
  freedom of ``y`` (real and imaginary parts each, for complex data); only measured entries carry
  noise (``measured`` mask), so ``E||A x - y||^2 = noise_sigma^2 * measurement_dof``.
* SVD (where ``has_svd``): a real orthonormal basis of the image space and of the range,
  ``A x = U(s * V_adjoint(x)[:, :r])`` with ``s = singulars()`` of length ``r``;
  ``V_adjoint`` returns ``(B, n)`` coefficients, ``n = prod(image_shape)``, the first ``r`` paired
  with ``s``; ``U_adjoint`` returns ``(B, r)``.
* Parameters that are arrays (masks, kernels, angles, matrices) are buffers, so ``.to(device)``
  moves them; ``to_spec``/``from_spec`` round-trip an operator through a measurement file.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from ..linalg import batch_dot, batch_norm, batch_view, conjugate_gradient, pinv_kept, power_iteration

Tensor = torch.Tensor


@dataclass
class OperatorSpec:
    """What a file stores about an operator: its kind, scalar parameters and array parameters."""

    kind: str
    image_shape: tuple[int, int, int]
    params: dict[str, Any] = field(default_factory=dict)  # JSON-able scalars, lists, strings
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    noise_sigma: float = 0.0


class LinearOperator(nn.Module):
    """Base class of all forward models. Subclasses implement ``A`` and ``A_adjoint``."""

    kind: ClassVar[str] = ""
    title: ClassVar[str] = ""
    has_svd: ClassVar[bool] = False
    #: True when A_pinv is a closed form rather than conjugate gradients.
    exact_pinv: ClassVar[bool] = False
    is_complex: ClassVar[bool] = False
    image_complex: bool = False

    def __init__(self, image_shape: tuple[int, int, int], noise_sigma: float = 0.0):
        super().__init__()
        self.image_shape = tuple(int(s) for s in image_shape)
        self.noise_sigma = float(noise_sigma)
        self._norm: float | None = None

    # ----------------------------------------------------------------- the map and its adjoint
    def A(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def A_adjoint(self, y: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        return self.A(x)

    def A_normal(self, x: Tensor) -> Tensor:
        return self.A_adjoint(self.A(x))

    # ----------------------------------------------------------------- shapes and bookkeeping
    @property
    def meas_shape(self) -> tuple[int, ...]:
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        for t in self.buffers():
            return t.device
        return torch.device("cpu")

    @property
    def image_dtype(self) -> torch.dtype:
        return torch.complex64 if self.image_complex else torch.float32

    @property
    def meas_dtype(self) -> torch.dtype:
        return torch.complex64 if self.is_complex else torch.float32

    def measured(self) -> Tensor | None:
        """Boolean mask (meas_shape) of entries that are actually measured; None if all are."""
        return None

    @property
    def measurement_dof(self) -> int:
        """Real degrees of freedom of y that carry data (and noise)."""
        m = self.measured()
        count = int(np.prod(self.meas_shape)) if m is None else int(m.sum())
        return count * (2 if self.is_complex else 1)

    def zeros_image(self, batch: int = 1) -> Tensor:
        return torch.zeros(batch, *self.image_shape, dtype=self.image_dtype, device=self.device)

    def noise_like(self, y: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """White noise of std ``noise_sigma`` on the measured entries of ``y``."""
        if self.is_complex:
            n = torch.complex(
                torch.randn(y.shape, generator=generator, device=y.device),
                torch.randn(y.shape, generator=generator, device=y.device),
            )
        else:
            n = torch.randn(y.shape, generator=generator, device=y.device, dtype=y.dtype)
        m = self.measured()
        if m is not None:  # the mask lives on the operator's device, the noise on y's
            n = n * m.to(device=n.device, dtype=n.real.dtype)
        return self.noise_sigma * n

    def simulate(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """A noisy measurement of ``x``: ``A x + noise``."""
        y = self.A(x)
        return y + self.noise_like(y, generator) if self.noise_sigma > 0 else y

    # ----------------------------------------------------------------- inverses
    def A_pinv(self, y: Tensor, iters: int = 100) -> Tensor:
        """Minimum-norm least-squares solution; closed form via the SVD, else CG."""
        if self.has_svd:
            s = self.singulars()
            coeff = self.U_adjoint(y)
            inv = torch.where(pinv_kept(s), 1.0 / s.clamp_min(1e-30), torch.zeros_like(s))
            full = torch.zeros(y.shape[0], int(np.prod(self.image_shape)), dtype=coeff.dtype,
                               device=coeff.device)
            full[:, : s.numel()] = coeff * inv
            return self.V(full)
        return conjugate_gradient(self.A_normal, self.A_adjoint(y), iters=iters)

    def solve_regularized(self, y: Tensor, z: Tensor, gamma: Tensor | float, iters: int = 30) -> Tensor:
        """``argmin_x ||A x - y||^2 + gamma ||x - z||^2`` per sample (``gamma`` scalar or ``(B,)``).

        The data step of half-quadratic splitting (DiffPIR) and of ADMM. Closed form through
        the SVD where there is one, conjugate gradients otherwise.
        """
        gamma_t = per_sample(gamma, z).reshape(-1)
        if gamma_t.numel() == 1:
            gamma_t = gamma_t.expand(z.shape[0])
        if self.has_svd:
            s = self.singulars()
            r = s.numel()
            vz = self.V_adjoint(z)
            g = gamma_t.reshape(-1, 1)
            out = vz.clone()
            out[:, :r] = (s * self.U_adjoint(y) + g * vz[:, :r]) / (s * s + g)
            return self.V(out)
        g = batch_view(gamma_t, z)
        return conjugate_gradient(
            lambda v: self.A_normal(v) + g * v, self.A_adjoint(y) + g * z, x0=z, iters=iters
        )

    def direct(self, y: Tensor) -> Tensor:
        """The operator's own direct reconstruction (FBP for CT, zero-filled for MRI, ...).

        Here: the pseudo-inverse for noise-free data; for noisy data the Wiener estimate under a
        white signal, ``argmin ||A x - y||^2 + gamma ||x||^2`` with ``gamma = sigma^2 ||A||^2 /
        rms(y)^2`` (noise over signal power), so small singular values (blur, RF) do not
        amplify the noise without bound as an exact pseudo-inverse does.
        """
        if self.noise_sigma <= 0:
            return self.A_pinv(y)
        power = batch_dot(y, y) / self.measurement_dof  # per real degree of freedom, as sigma^2
        gamma = self.noise_sigma**2 * self.norm() ** 2 / power.clamp_min(1e-30)
        return self.solve_regularized(y, torch.zeros(y.shape[0], *self.image_shape, dtype=self.image_dtype,
                                                     device=y.device), gamma)

    def norm(self) -> float:
        """Operator norm ||A||_2, estimated once by power iteration and cached."""
        if self._norm is None:
            if self.has_svd:
                self._norm = float(self.singulars().abs().max())
            else:
                g = torch.Generator(device=self.device).manual_seed(0)
                x0 = torch.randn(1, *self.image_shape, generator=g, device=self.device)
                if self.image_complex:
                    x0 = x0.to(torch.complex64)
                self._norm = power_iteration(self.A_normal, x0, iters=60) ** 0.5
        return self._norm

    # ----------------------------------------------------------------- SVD (optional)
    def singulars(self) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} has no SVD")

    def V(self, c: Tensor) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} has no SVD")

    def V_adjoint(self, x: Tensor) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} has no SVD")

    def U(self, c: Tensor) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} has no SVD")

    def U_adjoint(self, y: Tensor) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} has no SVD")

    # ----------------------------------------------------------------- files
    def to_spec(self) -> OperatorSpec:
        raise NotImplementedError

    @classmethod
    def from_spec(cls, spec: OperatorSpec) -> "LinearOperator":
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"image_shape={self.image_shape}, meas_shape={self.meas_shape}, noise_sigma={self.noise_sigma:g}"


def per_sample(gamma, z: Tensor, dtype=torch.float32) -> Tensor:
    """``gamma`` (a number or one value per sample) as a tensor on ``z``'s device, shaped
    ``(B, 1, 1, 1)`` (a number: a 0-d tensor). A number is filled on the device: a copy from
    the host would wait for the GPU on every solver step."""
    if isinstance(gamma, (int, float)):
        return torch.full((), float(gamma), dtype=dtype, device=z.device)
    g = torch.as_tensor(gamma, dtype=dtype, device=z.device)
    return g.reshape(-1, 1, 1, 1) if g.ndim else g


def measured_residual(op: LinearOperator, x: Tensor, y: Tensor) -> Tensor:
    """``y - A x`` restricted to the entries that were measured (the rest carry no data)."""
    r = y - op.A(x)
    m = op.measured()
    return r if m is None else r * m.to(r.real.dtype)


def residual_norm(op: LinearOperator, x: Tensor, y: Tensor) -> Tensor:
    """``||A x - y||`` per sample, over measured entries only."""
    return batch_norm(measured_residual(op, x, y))
