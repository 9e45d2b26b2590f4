"""An explicit matrix as forward model: ``y = M vec(x)``, dense (real or complex) or sparse CSR.

Also the home of the sparse CSR product used by the CT projector: ``A`` and ``A^T`` are both
stored row-compressed, so each product is a row-wise reduction in a fixed order (bitwise
reproducible on a GPU, unlike cuSPARSE's SpMM or atomic scatters) and the gradient of ``A`` is
the stored ``A^T`` exactly. On GPUs, fixed-order paths only, fastest first: the Triton row
kernel of ``_csr_triton`` (real float32 matrices, where Triton is installed); ``embedding_bag``
(one weighted bag sum per row) for other real matrices; for complex ones a padded-rows (ELL) copy
built once per device when the rows have similar lengths (one gather and one reduction per chunk
of rows), otherwise gather + ``segment_reduce``, whose thread per output entry scales badly with
many right-hand sides (K posterior samples x channels). Measured on an H200
(``benchmarks/sparse_product.py``): 0.30, 0.41, 7.9 and 26.2 ms for CT's 256^2 x 60-view
projector at 24 right-hand sides, each bitwise repeatable.

SVD (dense, ``min(m, n) <= 4096``): computed once on first use, in float64. For a complex matrix
acting on real images the real-linear map is ``x -> [Re M; Im M] x``, whose SVD gives real
orthonormal bases in the sense of the real inner product ``Re <u, v>`` (see operators/base.py).
"""
from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp
import torch

from ..errors import InputError
from ..limits import check_bytes
from . import _csr_triton
from .base import LinearOperator, OperatorSpec

Tensor = torch.Tensor

SVD_LIMIT = 4096

# torch marks CSR as beta; the products used here (CSR @ dense) are long stable.
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
# The CSR parts are built here from checked arrays (scipy, or validated file contents), so newer
# torch's note that invariant checks are off by default says nothing to a user.
warnings.filterwarnings("ignore", message="Sparse invariant checks are implicitly disabled")


def csr_from_parts(crow: Tensor, col: Tensor, values: Tensor, shape: tuple[int, int]) -> Tensor:
    return torch.sparse_csr_tensor(crow, col, values, size=shape, check_invariants=False)


def csr_transpose_parts(csr: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(crow, col, values)`` of the conjugate transpose ``csr^H`` in CSR form (via scipy, on the
    host, once at construction; torch's CSC conversion of complex values varies between versions)."""
    crow, col, val = (t.detach().cpu().numpy() for t in (csr.crow_indices(), csr.col_indices(), csr.values()))
    m, n = csr.shape
    ht = sp.csr_matrix((val, col, crow), shape=(m, n)).conj().T.tocsr()
    ht.sort_indices()
    idx = csr.crow_indices().dtype
    return (torch.from_numpy(ht.indptr).to(idx), torch.from_numpy(ht.indices).to(idx),
            torch.from_numpy(np.ascontiguousarray(ht.data)))


#: Bound on the temporary (non-zeros x columns) products of the row-wise GPU path.
_CHUNK_ELEMENTS = 1 << 25


def _rowwise_product(M: Tensor, X: Tensor) -> Tensor:
    """``M @ X`` as gather, multiply and an in-order sum per row (``segment_reduce`` runs one
    thread per output entry), so the result is bitwise reproducible; cuSPARSE's SpMM is not."""
    crow, col, val = M.crow_indices().long(), M.col_indices(), M.values()  # index_select takes int32
    k = X.shape[1]
    step = max(1, _CHUNK_ELEMENTS // max(val.numel(), 1))
    out = []
    for j in range(0, k, step):  # a few column chunks at most, never per pixel
        prod = val[:, None] * torch.index_select(X[:, j : j + step], 0, col)
        if prod.is_complex():
            out.append(torch.view_as_complex(
                torch.segment_reduce(torch.view_as_real(prod), "sum", offsets=crow, axis=0).contiguous()))
        else:
            out.append(torch.segment_reduce(prod, "sum", offsets=crow, axis=0))
    return torch.cat(out, dim=1) if len(out) > 1 else out[0]


#: Padded rows are used only while padding at most doubles the stored entries.
_ELL_MAX_FILL = 2.0

Ell = tuple[Tensor, Tensor]  # (column indices, values), both (rows, longest row); padding has value 0


def ell_from_csr(M: Tensor) -> Ell | None:
    """The padded-rows form of CSR ``M`` on its device, or None when one long row would make the
    padding more than ``_ELL_MAX_FILL`` times the non-zeros (a general sparse matrix): then the
    row-wise path stays. Built once per matrix and device (one host read of the longest row)."""
    crow, col, val = M.crow_indices().long(), M.col_indices(), M.values()
    m, nnz = crow.numel() - 1, val.numel()
    lengths = crow[1:] - crow[:-1]
    longest = int(lengths.max()) if m and nnz else 0
    if longest == 0 or m * longest > _ELL_MAX_FILL * nnz + m:
        return None
    row = torch.repeat_interleave(torch.arange(m, device=crow.device), lengths, output_size=nnz)
    slot = torch.arange(nnz, device=crow.device) - crow[:-1][row]
    ell_col = torch.zeros(m, longest, dtype=col.dtype, device=col.device)
    ell_val = torch.zeros(m, longest, dtype=val.dtype, device=val.device)
    ell_col[row, slot] = col  # padding points at column 0 with value 0
    ell_val[row, slot] = val
    return ell_col, ell_val


def _ell_product(ell: Ell, X: Tensor) -> Tensor:
    """``M @ X`` from padded rows: gather the rows of ``X`` each row of ``M`` touches, weight, and
    sum along the row. Every operation runs in a fixed order (no atomics), so GPU results are
    bitwise reproducible; the chunks bound the gathered temporary."""
    col, val = ell
    m, longest = col.shape
    k = X.shape[1]
    X = X.contiguous()  # gathered rows of X are then k contiguous numbers
    rows = max(1, _CHUNK_ELEMENTS // max(longest * k, 1))
    out = []
    for r in range(0, m, rows):  # a few row chunks: (rows, longest, k) elements at most 2**25
        gathered = torch.index_select(X, 0, col[r : r + rows].reshape(-1)).view(-1, longest, k)
        out.append((gathered * val[r : r + rows, :, None]).sum(dim=1))
    return torch.cat(out) if len(out) > 1 else out[0]


def _bag_product(M: Tensor, X: Tensor) -> Tensor:
    """``M @ X`` for real ``M`` as one weighted bag sum per row (``embedding_bag``): each row's
    non-zeros are accumulated in order by one group of threads, without atomics."""
    return torch.nn.functional.embedding_bag(M.col_indices(), X.contiguous(), offsets=M.crow_indices(),
                                             mode="sum", per_sample_weights=M.values(), include_last_offset=True)


def _product(M: Tensor, X: Tensor, ell: Ell | None) -> Tensor:
    # The CPU kernel reduces each row in order already; on GPUs use a reproducible path.
    if X.device.type == "cpu":
        return M @ X
    if _csr_triton.supports(M, X):
        return _csr_triton.csr_product(M, X)
    if not M.is_complex():
        return _bag_product(M, X)
    return _ell_product(ell, X) if ell is not None else _rowwise_product(M, X)


class _CSRProduct(torch.autograd.Function):
    """``M @ X`` for CSR ``M``; the backward uses the separately stored CSR of ``M^H``."""

    @staticmethod
    def forward(ctx, X, M, MH, ell_M, ell_MH):  # noqa: D401
        ctx.MH, ctx.ell_MH = MH, ell_MH
        return _product(M, X, ell_M)

    @staticmethod
    def backward(ctx, grad):
        return _product(ctx.MH, grad, ctx.ell_MH), None, None, None, None


def csr_matmul(M: Tensor, MH: Tensor, X: Tensor, ell: tuple[Ell | None, Ell | None] = (None, None)) -> Tensor:
    """``M @ X`` with ``X`` dense ``(n, k)``; differentiable in ``X`` through ``MH``. ``ell``: the
    padded-rows forms of ``M`` and ``MH`` (:class:`EllCache`), used on GPUs where given."""
    if X.dtype != M.dtype:  # real images into a complex matrix, or half precision from autocast
        X = X.to(M.dtype)
    return _CSRProduct.apply(X, M, MH, *ell)


class EllCache:
    """Padded-rows copies of an operator's CSR matrices, one per matrix, rebuilt when the matrix's
    buffer moves to another device or dtype (the key holds the buffer's address, so a stale copy
    is never used). Only GPU products of complex matrices use them; nothing else builds one."""

    def __init__(self):
        self._entries: dict[str, tuple[tuple, Ell | None]] = {}

    def get(self, name: str, M: Tensor) -> Ell | None:
        if M.device.type == "cpu" or not M.is_complex():
            return None  # torch's CPU kernel, the Triton kernel or embedding_bag read the CSR form
        values = M.values()
        key = (values.device, values.dtype, values.data_ptr(), values.numel())
        entry = self._entries.get(name)
        if entry is None or entry[0] != key:
            entry = (key, ell_from_csr(M))
            self._entries[name] = entry
        return entry[1]


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
            self.register_buffer("_tval", tval, persistent=False)  # already conjugated
        else:
            self.register_buffer("matrix", M.to(dtype).contiguous())
        self._ell_cache = EllCache()  # padded rows of complex matrices, per GPU
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

    def _ell_pair(self, M: Tensor, MH: Tensor) -> tuple[Ell | None, Ell | None]:
        return self._ell_cache.get("M", M), self._ell_cache.get("MH", MH)

    def A(self, x: Tensor) -> Tensor:
        b = x.shape[0]
        flat = x.reshape(b, -1)
        if self.sparse:
            M, MH = self._csr()
            y = csr_matmul(M, MH, flat.T, self._ell_pair(M, MH)).T
        else:
            y = flat.to(self.matrix.dtype) @ self.matrix.T
        return y.reshape(b, *self._meas_shape)

    def A_adjoint(self, y: Tensor) -> Tensor:
        b = y.shape[0]
        flat = y.reshape(b, -1)
        if self.sparse:
            M, MH = self._csr()
            x = csr_matmul(MH, M, flat.T, self._ell_pair(M, MH)[::-1]).T
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
                check_bytes(16 * (max(m, 0) + 1), f"A sparse forward matrix of shape {m}x{n} (its row index and "
                            "measurement)", "operator")
                matrix = torch.sparse_csr_tensor(
                    torch.as_tensor(spec.arrays["indptr"]).long(), torch.as_tensor(spec.arrays["indices"]).long(),
                    torch.as_tensor(spec.arrays["data"]), size=(m, n), check_invariants=True)
            except InputError:
                raise
            except (KeyError, ValueError, RuntimeError, TypeError, OverflowError):
                raise InputError("A sparse forward matrix needs arrays data, indices, indptr and a "
                                 "params shape [m, n] describing a valid CSR matrix.") from None
            return cls(spec.image_shape, matrix, spec.noise_sigma)
        if "matrix" not in spec.arrays:
            raise InputError("A matrix forward model needs the array 'matrix' (or CSR arrays data, indices, indptr).")
        return cls(spec.image_shape, spec.arrays["matrix"], spec.noise_sigma)
