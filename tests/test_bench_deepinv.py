"""Pieces of the side-by-side benchmark (benchmarks/bench_deepinv.py) that need neither deepinv
nor a GPU: joining agreement reports run over split phantom ranges."""
from __future__ import annotations

import importlib.util
import json
import statistics
import sys
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_deepinv.py"
_spec = importlib.util.spec_from_file_location("bench_deepinv", _PATH)
bench = importlib.util.module_from_spec(_spec)
sys.modules["bench_deepinv"] = bench
_spec.loader.exec_module(bench)


def _report(path: Path, phantoms: range, diffs: list[float], device="GPU X", seconds=10.0) -> Path:
    rows = [{"prior": "default", "phantom": 1_000_000_000 + p, "task": "ct", "solver": "dps",
             "deepinv_variant": "dps_step_aligned", "psnr_ours": 20.0 + d, "psnr_deepinv": 20.0,
             "difference_db": d} for p, d in zip(phantoms, diffs)]
    rows.append({"prior": "default", "phantom": 1_000_000_000 + phantoms[0], "task": "ct", "solver": "diffpir",
                 "deepinv_variant": "diffpir", "error": "RuntimeError: out of memory"})
    path.write_text(json.dumps({"device": device, "settings": {"phantoms": len(phantoms), "phantom_start": phantoms[0]},
                                "section_seconds": {"agreement": seconds}, "total_seconds": seconds + 5,
                                "agreement": {"rows": rows, "summary": []}}))
    return path


def test_merged_agreement_reports_pool_rows_and_recompute_mean_and_standard_error(tmp_path):
    a = _report(tmp_path / "a.json", range(0, 3), [0.5, -1.0, 2.0], seconds=30.0)
    b = _report(tmp_path / "b.json", range(3, 5), [0.1, 0.4], seconds=20.0)
    assert bench.main(["--merge-agreement", str(a), str(b), "--out", str(tmp_path / "m.json")]) == 0
    merged = json.loads((tmp_path / "m.json").read_text())
    assert len(merged["agreement"]["rows"]) == 7  # 5 differences and 2 failed runs, all kept
    assert merged["settings"]["phantoms"] == 5 and "phantom_start" not in merged["settings"]
    assert merged["section_seconds"]["agreement"] == 50.0 and merged["total_seconds"] == 35.0
    (summary,) = merged["agreement"]["summary"]
    diffs = [0.5, -1.0, 2.0, 0.1, 0.4]
    assert summary["phantoms"] == 5
    assert summary["mean_difference_db"] == pytest.approx(0.4)
    assert summary["standard_error_db"] == pytest.approx(statistics.stdev(diffs) / 5 ** 0.5)
    assert summary["within_0.3dB"] is False


def test_merging_refuses_repeated_phantoms_and_reports_of_different_devices(tmp_path):
    a = _report(tmp_path / "a.json", range(0, 3), [0.1, 0.2, 0.3])
    b = _report(tmp_path / "b.json", range(2, 4), [0.1, 0.2])
    with pytest.raises(SystemExit, match="repeats"):
        bench.main(["--merge-agreement", str(a), str(b), "--out", str(tmp_path / "m.json")])
    c = _report(tmp_path / "c.json", range(5, 7), [0.1, 0.2], device="GPU Y")
    with pytest.raises(SystemExit, match="different devices"):
        bench.main(["--merge-agreement", str(a), str(c), "--out", str(tmp_path / "m.json")])
    assert not (tmp_path / "m.json").exists()
