"""Pieces of the volume benchmark (benchmarks/volume_zcoupling.py) that need no reconstruction:
the peak-memory probe and the coronal-cut figure."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "volume_zcoupling.py"
_spec = importlib.util.spec_from_file_location("volume_zcoupling", _PATH)
bench = importlib.util.module_from_spec(_spec)
sys.modules["volume_zcoupling"] = bench
_spec.loader.exec_module(bench)


_PROBE = """
import importlib.util, sys
import numpy as np
spec = importlib.util.spec_from_file_location("volume_zcoupling", sys.argv[1])
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)
early = np.ones(48 * 2**20 // 8)  # a peak before the probe must not count
del early
with bench.PeakMemory("cpu") as idle:
    pass
with bench.PeakMemory("cpu") as busy:
    block = np.ones(64 * 2**20 // 8)  # 64 MiB, touched
    block += 1
    del block
print(idle.method)
print(idle.peak_mib(), busy.peak_mib())
"""


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="Linux peak-RSS reset only")
def test_cpu_peak_memory_sees_an_allocation_and_not_an_earlier_one():
    """In a fresh process, as the benchmark measures each run (in the test process, memory that
    earlier tests' garbage or threads free during the probe hides the block)."""
    import subprocess

    out = subprocess.run([sys.executable, "-c", _PROBE, str(_PATH)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    method, numbers = out.stdout.strip().splitlines()[-2:]
    idle, busy = (float(v) for v in numbers.split())
    assert "VmHWM" in method
    assert idle < 16
    assert 60 <= busy <= 96


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
