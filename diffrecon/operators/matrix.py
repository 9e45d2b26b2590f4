"""An explicit matrix as forward model: ``y = M vec(x)``, dense (real or complex) or sparse CSR.

Also the home of the sparse CSR product used by the CT projector: ``A`` and ``A^T`` are both
stored row-compressed, so each product is a deterministic row-wise reduction (no atomic adds on a
GPU) and the gradient of ``A`` is the stored ``A^T`` exactly.

SVD (dense, ``min(m, n) <= 4096``): computed once on first use, in float64. For a complex matrix
acting on real images the real-linear map is ``x -> [Re M; Im M] x``, whose SVD gives real
orthonormal bases in the sense of the real inner product ``Re <u, v>`` (see operators/base.py).
"""
from __future__ import annotations

import warnings

import numpy as np
import torch

from ..errors import InputError
from .base import LinearOperator, OperatorSpec

Tensor = torch.Tensor

SVD_LIMIT = 4096

# torch marks CSR as beta; the products used here (CSR @ dense) are long stable.
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")


def csr_from_parts(crow: Tensor, col: Tensor, values: Tensor, shape: tuple[int, int]) -> Tensor:
    return torch.sparse_csr_tensor(crow, col, values, size=shape, check_invariants=False)


def csr_transpose_parts(csr: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(crow, col, values)`` of ``csr^T`` in CSR form (the CSC form of ``csr``)."""
    csc = csr.to_sparse_csc()
    return csc.ccol_indices(), csc.row_indices(), csc.values()


class _CSRProduct(torch.autograd.Function):
    """``M @ X`` for CSR ``M``; the backward uses the separately stored CSR of ``M^H``."""

    @staticmethod
    def forward(ctx, X, M, MH):  # noqa: D401
        ctx.MH = MH
        return M @ X

    @staticmethod
    def backward(ctx, grad):
        return ctx.MH @ grad, None, None


def csr_matmul(M: Tensor, MH: Tensor, X: Tensor) -> Tensor:
    """``M @ X`` with ``X`` dense ``(n, k)``; differentiable in ``X`` through ``MH``."""
    if M.is_complex() and not X.is_complex():
        X = X.to(M.dtype)
    return _CSRProduct.apply(X, M, MH)


class MatrixOperator(LinearOperator):
    """``y = M vec(x)`` with ``M`` of shape ``(m, n)``, ``n = prod(image_shape)``; meas ``(m,)``."""

    kind = "matrix"
    title = "Explicit matrix"
    exact_pinv = False

    def __init__(self, image_shape, matrix, noise_sigma: float = 0.0):
        super().__init__(image_shape, noise_sigma)
        n = int(np.prod(self.image_shape))
        if isinstance(matrix, Tensor) and matrix.layout == torch.sparse_csr:
            M = matrix
            self.sparse = True
        else:
            M = torch.as_tensor(np.asarray(matrix) if not isinstance(matrix, Tensor) else matrix)
            self.sparse = False
        if M.ndim != 2 or M.shape[1] != n:
            raise InputError(
                f"Forward matrix has shape {tuple(M.shape)}; it needs {n} columns (the image's "
                f"{'x'.join(map(str, self.image_shape))} pixels)."
            )
        self.is_complex = bool(M.is_complex())
        dtype = torch.complex64 if self.is_complex else torch.float32
        self._m = int(M.shape[0])
        self._meas_shape: tuple[int, ...] = (self._m,)
        if self.sparse:
            M = M.to(dtype)
            crow, col, val = M.crow_indices(), M.col_indices(), M.values()
            tcrow, tcol, tval = csr_transpose_parts(M)
            self.register_buffer("_crow", crow.clone())
            self.register_buffer("_col", col.clone())
            self.register_buffer("_val", val.clone())
            self.register_buffer("_tcrow", tcrow.clone(), persistent=False)
            self.register_buffer("_tcol", tcol.clone(), persistent=False)
            self.register_buffer("_tval", tval.conj().resolve_conj().clone(), persistent=False)
        else:
            self.register_buffer("matrix", M.to(dtype).contiguous())
        self.has_svd = (not self.sparse) and min(self._m, n) <= SVD_LIMIT
        self.exact_pinv = self.has_svd  # the base class then inverts through the SVD
        self._svd_ready = False

    # ----------------------------------------------------------------- the map
    @property
    def meas_shape(self):
        return self._meas_shape

    def _csr(self) -> tuple[Tensor, Tensor]:
        n = int(np.prod(self.image_shape))
        M = csr_from_parts(self._crow, self._col, self._val, (self._m, n))
        MH = csr_from_parts(self._tcrow, self._tcol, self._tval, (n, self._m))
        return M, MH

    def A(self, x: Tensor) -> Tensor:
        b = x.shape[0]
        flat = x.reshape(b, -1)
        if self.sparse:
            M, MH = self._csr()
            y = csr_matmul(M, MH, flat.T).T
        else:
            y = flat.to(self.matrix.dtype) @ self.matrix.T
        return y.reshape(b, *self._meas_shape)

    def A_adjoint(self, y: Tensor) -> Tensor:
        b = y.shape[0]
        flat = y.reshape(b, -1)
        if self.sparse:
            M, MH = self._csr()
            x = csr_matmul(MH, M, flat.T).T
        else:
            x = flat @ self.matrix.conj()
        if x.is_complex() and not self.image_complex:
            x = x.real
        return x.reshape(b, *self.image_shape)

    # ----------------------------------------------------------------- SVD (lazy)
    def _ensure_svd(self) -> None:
        if self._svd_ready:
            return
        if not self.has_svd:
            raise NotImplementedError(f"{type(self).__name__} has no SVD (sparse or too large)")
        M = self.matrix.to(torch.complex128 if self.is_complex else torch.float64)
        real = torch.cat([M.real, M.imag], dim=0) if self.is_complex else M
        U, s, Vh = torch.linalg.svd(real, full_matrices=True)
        r = s.numel()
        self.register_buffer("_U", U[:, :r].float().contiguous(), persistent=False)
        self.register_buffer("_s", s.float(), persistent=False)
        self.register_buffer("_Vh", Vh.float().contiguous(), persistent=False)
        self._svd_ready = True

    def singulars(self) -> Tensor:
        self._ensure_svd()
        return self._s

    def V_adjoint(self, x: Tensor) -> Tensor:
        self._ensure_svd()
        return x.reshape(x.shape[0], -1) @ self._Vh.T

    def V(self, c: Tensor) -> Tensor:
        self._ensure_svd()
        return (c @ self._Vh).reshape(c.shape[0], *self.image_shape)

    def U_adjoint(self, y: Tensor) -> Tensor:
        self._ensure_svd()
        flat = y.reshape(y.shape[0], -1)
        if self.is_complex:
            flat = torch.cat([flat.real, flat.imag], dim=1)
        return flat @ self._U

    def U(self, c: Tensor) -> Tensor:
        self._ensure_svd()
        flat = c @ self._U.T
        if self.is_complex:
            flat = torch.complex(flat[:, : self._m], flat[:, self._m:])
        return flat.reshape(c.shape[0], *self._meas_shape)

    # ----------------------------------------------------------------- files
    def to_spec(self) -> OperatorSpec:
        spec = OperatorSpec(self.kind, self.image_shape, noise_sigma=self.noise_sigma)
        if self.sparse:
            spec.arrays = {"data": self._val.cpu().numpy(), "indices": self._col.cpu().numpy(),
                           "indptr": self._crow.cpu().numpy()}
            spec.params = {"shape": [self._m, int(np.prod(self.image_shape))], "format": "csr"}
        else:
            spec.arrays = {"matrix": self.matrix.cpu().numpy()}
        return spec

    @classmethod
    def from_spec(cls, spec: OperatorSpec) -> "MatrixOperator":
        if spec.params.get("format") == "csr":
            try:
                m, n = (int(v) for v in spec.params["shape"])
                matrix = torch.sparse_csr_tensor(
                    torch.as_tensor(spec.arrays["indptr"]).long(), torch.as_tensor(spec.arrays["indices"]).long(),
                    torch.as_tensor(spec.arrays["data"]), size=(m, n), check_invariants=True)
            except (KeyError, ValueError, RuntimeError):
                raise InputError("A sparse forward matrix needs arrays data, indices, indptr and a "
                                 "params shape [m, n] describing a valid CSR matrix.") from None
            return cls(spec.image_shape, matrix, spec.noise_sigma)
        if "matrix" not in spec.arrays:
            raise InputError("A matrix forward model needs the array 'matrix' (or CSR arrays data, indices, indptr).")
        return cls(spec.image_shape, spec.arrays["matrix"], spec.noise_sigma)
