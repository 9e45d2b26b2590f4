"""Pieces of the volume benchmark (benchmarks/volume_zcoupling.py) that need no reconstruction:
the coronal cut and its figure. (Its CPU peak-memory probe is not tested here: the kernel's
resident-set counters it reads lag by tens of MiB, which made a 64 MiB check fail in one process
and pass in another.)"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "volume_zcoupling.py"
_spec = importlib.util.spec_from_file_location("volume_zcoupling", _PATH)
bench = importlib.util.module_from_spec(_spec)
sys.modules["volume_zcoupling"] = bench
_spec.loader.exec_module(bench)


def test_coronal_cut_is_the_middle_row_over_z():
    z, h, w = 5, 8, 6
    vol = np.arange(z * h * w, dtype=np.float32).reshape(z, 1, h, w)  # value = (z * h + y) * w + x
    cut = bench.coronal_cut(vol)
    assert cut.shape == (z, w)
    np.testing.assert_array_equal(cut, vol[:, 0, h // 2, :])
    np.testing.assert_array_equal(bench.coronal_cut(vol[:, 0]), cut)


def test_coronal_figure_writes_a_png(tmp_path):
    rng = np.random.default_rng(0)
    truth = rng.random((6, 1, 16, 16)).astype(np.float32)
    runs = [({"lam_z": lam, "psnr": 20.0 + lam, "z_spacing": 2.0},
             SimpleNamespace(mean=truth + 0.1, std=np.full_like(truth, 0.01), units="1/cm")) for lam in (0.0, 0.25)]
    out = tmp_path / "cut.png"
    bench.coronal_figure(out, truth, runs[0], runs[1], "test volume")
    image = __import__("matplotlib.image", fromlist=["imread"]).imread(out)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 300
    assert not list(tmp_path.glob("*.tmp*"))
