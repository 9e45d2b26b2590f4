"""A fixed-order CSR x dense product for CUDA GPUs, written in Triton (real float32).

One program per row of ``M`` (and per block of right-hand sides): it walks the row's non-zeros in
blocks, in order, gathering the matching rows of ``X`` and reducing each block with one fixed
tree, so a result never changes between runs (cuSPARSE's SpMM does for more than one right-hand
side) while reading each non-zero once (the padded-rows path in matrix.py materialises the gathered
rows). Triton ships with PyTorch's CUDA builds on Linux; without it, or for complex matrices, the
caller uses the pure PyTorch paths. Triton is imported on first use, not with the package.
"""
from __future__ import annotations

import functools
import importlib.util

import torch

Tensor = torch.Tensor

AVAILABLE = importlib.util.find_spec("triton") is not None


@functools.cache
def _kernel():  # pragma: no cover - compiled and run on CUDA GPUs (and Triton's interpreter)
    import triton
    import triton.language as tl

    @triton.jit
    def csr_rows(crow_ptr, col_ptr, val_ptr, x_ptr, out_ptr, k, BLOCK_NNZ: tl.constexpr, BLOCK_K: tl.constexpr):
        row = tl.program_id(0)
        ks = tl.program_id(1) * BLOCK_K + tl.arange(0, BLOCK_K)
        k_ok = ks < k
        start = tl.load(crow_ptr + row).to(tl.int64)
        end = tl.load(crow_ptr + row + 1).to(tl.int64)
        acc = tl.zeros([BLOCK_K], dtype=tl.float32)
        for j in range(start, end, BLOCK_NNZ):
            nz = j + tl.arange(0, BLOCK_NNZ)
            nz_ok = nz < end
            col = tl.load(col_ptr + nz, mask=nz_ok, other=0).to(tl.int64)
            val = tl.load(val_ptr + nz, mask=nz_ok, other=0.0)
            x = tl.load(x_ptr + col[:, None] * k + ks[None, :], mask=nz_ok[:, None] & k_ok[None, :], other=0.0)
            acc += tl.sum(val[:, None] * x, axis=0)
        tl.store(out_ptr + row.to(tl.int64) * k + ks, acc, mask=k_ok)

    return csr_rows


def supports(M: Tensor, X: Tensor) -> bool:
    """Whether :func:`csr_product` serves ``M @ X``: Triton present, CUDA, real float32."""
    return AVAILABLE and X.is_cuda and M.dtype == torch.float32 and X.dtype == torch.float32


def csr_product(M: Tensor, X: Tensor, block_nnz: int = 64) -> Tensor:
    """``M @ X`` for a CSR ``M`` ``(m, n)`` and dense ``X`` ``(n, k)`` on a CUDA device."""
    crow, col, val = M.crow_indices(), M.col_indices(), M.values()
    X = X.contiguous()
    m, k = M.shape[0], X.shape[1]
    out = torch.empty(m, k, device=X.device, dtype=X.dtype)
    if m == 0 or k == 0:
        return out
    block_k = min(64, max(8, 1 << (k - 1).bit_length()))
    grid = (m, -(-k // block_k))
    _kernel()[grid](crow, col, val, X, out, k, BLOCK_NNZ=block_nnz, BLOCK_K=block_k)
    return out
