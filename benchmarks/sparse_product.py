"""The CT projector's sparse products on a GPU, every fixed-order path against cuSPARSE:
padded rows (ELL), ``segment_reduce`` row-wise, ``embedding_bag`` (sum with per-entry weights,
one bag per row), the Triton row kernel (operators/_csr_triton.py), and ``torch`` CSR @ dense
(cuSPARSE, not bitwise repeatable beyond one right-hand side).

    python benchmarks/sparse_product.py --out $OUT/sparse_product.json

For each geometry (128^2 with 30 views, 256^2 with 60 views) and each number of right-hand sides
k (K posterior samples x channels), both products ``P X`` and ``P^T Y``: median milliseconds
(CUDA events, after warm-up), whether ten repeats are bitwise identical, the error against a
float64 reference, and the memory floor (each non-zero's value and column read once, plus X and
the output) over the measured copy bandwidth.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from diffrecon.operators import ParallelBeamCT, sparse_view_angles  # noqa: E402
from diffrecon.operators import _csr_triton  # noqa: E402
from diffrecon.operators.matrix import _bag_product, _ell_product, _rowwise_product, ell_from_csr  # noqa: E402
from diffrecon.runtime import device_name  # noqa: E402


def median_ms(fn, repeats: int = 20) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return sorted(times)[len(times) // 2]


def copy_bandwidth() -> float:
    """Bytes per second of a large device-to-device copy (read plus write)."""
    a = torch.empty(1 << 28, device="cuda")  # 1 GiB
    b = torch.empty_like(a)
    ms = median_ms(lambda: b.copy_(a), 10)
    return 2 * a.numel() * 4 / (ms / 1e3)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.environ.get("OUT", "."), "sparse_product.json"))
    args = ap.parse_args()
    dev = torch.device("cuda")
    bandwidth = copy_bandwidth()
    rows = []
    for size, views in ((128, 30), (256, 60)):
        op = ParallelBeamCT((1, size, size), sparse_view_angles(views)).to(dev)
        for name, M in zip(("P", "P^T"), op._matrices()):
            ell = ell_from_csr(M)
            nnz = M.values().numel()
            M64 = M.cpu().to(torch.float64)
            for k in (1, 3, 8, 24, 64):
                X = torch.randn(M.shape[1], k, device=dev, generator=torch.Generator(dev).manual_seed(k))
                ref = M64 @ X.cpu().double()
                floor_ms = (nnz * 8 + (M.shape[1] + M.shape[0]) * k * 4) / bandwidth * 1e3
                paths = {"ell": lambda: _ell_product(ell, X), "segment_reduce": lambda: _rowwise_product(M, X),
                         "embedding_bag": lambda: _bag_product(M, X), "cusparse": lambda: M @ X}
                if _csr_triton.AVAILABLE:
                    paths["triton"] = lambda: _csr_triton.csr_product(M, X)
                row = {"size": size, "views": views, "matrix": name, "k": k, "nnz": nnz,
                       "ell_fill": ell[0].numel() / nnz, "floor_ms": floor_ms}
                for path, fn in paths.items():
                    outs = [fn() for _ in range(10)]
                    row[path + "_bitwise_repeatable"] = all(torch.equal(outs[0], o) for o in outs[1:])
                    row[path + "_rel_error"] = float((outs[0].cpu().double() - ref).norm() / ref.norm())
                    row[path + "_ms"] = median_ms(fn)
                rows.append(row)
                print(f"{size}^2 {views:>2} views {name:>3} k={k:>2}: floor {floor_ms:.3f} ms; " + ", ".join(
                    f"{path} {row[path + '_ms']:.3f}{'' if row[path + '_bitwise_repeatable'] else ' (varies)'}"
                    f"{'' if row[path + '_rel_error'] < 1e-5 else ' (err %.1e)' % row[path + '_rel_error']}"
                    for path in paths), flush=True)
    report = {"device": device_name(dev), "torch": torch.__version__, "copy_bandwidth_bytes_per_s": bandwidth,
              "rows": rows}
    Path(args.out).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
