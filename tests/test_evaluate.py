"""The evaluation protocol of the bundled prior (benchmarks/evaluate_prior.py), end to end on
16 x 16 phantoms with the Gaussian prior on the CPU, and its pieces on cases with known answers."""
from __future__ import annotations

import importlib.util
import json
import math
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from diffrecon.demo import make_demo
from diffrecon.errors import InputError
from diffrecon.phantoms import TEST_SEEDS
from diffrecon.priors import load_prior

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "evaluate_prior.py"
_spec = importlib.util.spec_from_file_location("evaluate_prior", _PATH)
ev = importlib.util.module_from_spec(_spec)
sys.modules["evaluate_prior"] = ev
_spec.loader.exec_module(ev)

TASKS = ["inpaint", "mri_x4"]  # mri has no SVD, so ddrm is skipped there
METHODS = ["dps", "ddrm", "ddnm", "direct", "cg", "tv"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("evaluate")
    argv = ["--prior", "gaussian", "--size", "16", "--n-test", "2", "--n-val", "1", "--steps", "3",
            "--samples", "3", "--baseline-iters", "15", "--device", "cpu", "--grid-samples", "3",
            "--tasks", *TASKS, "--solvers", *METHODS, "--out", str(out)]
    assert ev.main(argv) == 0
    return out, json.loads((out / "evaluate.json").read_text())


def _args(**kw):
    base = dict(steps=3, samples=2, seed=0, prior="gaussian", device="cpu", precision="fp32", baseline_iters=15)
    return types.SimpleNamespace(**{**base, **kw})


class _Bar:
    total = 0

    def update(self, n):
        pass

    def refresh(self):
        pass

    def set_postfix_str(self, s):
        pass


# ------------------------------------------------------------------------------- pipeline
def test_pipeline_writes_json_md_and_png_with_device_and_settings(run):
    out, report = run
    import matplotlib.pyplot as plt

    assert report["status"] == "complete"
    assert report["settings"]["device_name"] == "cpu"
    assert report["settings"]["steps"] == 3 and report["settings"]["n_test"] == 2
    assert report["settings"]["prior_card"]["name"] == "gaussian"
    png = plt.imread(out / "samples_grid.png")
    assert png.shape[:2] == (2 * 20, 3 * 20)  # two rows of three 16 px tiles with 2 px borders
    assert (out / "evaluate.md").read_text().count("\n| ") >= len(report["results"])


def test_one_row_per_task_and_method_in_json_and_table_and_ddrm_skipped_without_svd(run):
    out, report = run
    pairs = [(r["task"], r["method"]) for r in report["results"]]
    expected = [(t, m) for t in TASKS for m in ("direct", "cg", "tv", "dps", "ddrm", "ddnm")
                if not (t == "mri_x4" and m == "ddrm")]
    assert pairs == expected
    assert any("mri_x4/ddrm" in s for s in report["skipped"])
    table = [ln for ln in (out / "evaluate.md").read_text().splitlines()
             if ln.startswith("| ") and ln.count("|") == 10 and not ln.startswith("| Task")]
    assert [tuple(c.strip() for c in ln.split("|")[1:3]) for ln in table] == expected
    for r in report["results"]:
        assert r["n_test"] == 2 and len(r["per_phantom"]) == 2
        assert math.isclose(r["psnr_mean"], np.mean([p["psnr"] for p in r["per_phantom"]]), rel_tol=1e-9)
        if r["kind"] == "diffusion":
            assert 0.0 <= r["coverage90_mean"] <= 1.0 and -1.0 <= r["std_error_corr_mean"] <= 1.0
        else:
            assert r["coverage90_mean"] is None  # one deterministic sample: no spread to calibrate


def test_chosen_value_is_the_grid_value_with_best_validation_psnr(run):
    _, report = run
    tuned = [r for r in report["results"] if r["param"]]
    assert tuned
    for r in tuned:
        scores = [g["val_psnr"] for g in r["grid"]]
        assert len(scores) == len(ev.GRIDS[r["method"]][1])
        assert r["value"] == r["grid"][int(np.argmax(scores))]["value"]


def test_summary_in_json_matches_rows(run):
    _, report = run
    for task, s in report["summary"].items():
        rows = [r for r in report["results"] if r["task"] == task]
        d = max((r for r in rows if r["kind"] == "diffusion"), key=lambda r: r["psnr_mean"])
        b = max((r for r in rows if r["kind"] == "baseline"), key=lambda r: r["psnr_mean"])
        assert (s["best_diffusion"], s["best_baseline"]) == (d["method"], b["method"])
        assert math.isclose(s["margin_db"], d["psnr_mean"] - b["psnr_mean"], abs_tol=1e-12)
        assert s["beats_best_baseline"] == (d["psnr_mean"] > b["psnr_mean"])


# --------------------------------------------------------------------------------- pieces
def test_tune_picks_the_maximum_and_a_diverged_value_never_wins():
    best, tried, cut = ev.tune([1.0, 2.0, 3.0, 4.0], lambda v: -(v - 3.0) ** 2, lambda: True)
    assert best == 3.0 and [v for v, _ in tried] == [1.0, 2.0, 3.0, 4.0] and not cut
    best, _, _ = ev.tune([1.0, 2.0], lambda v: float("nan") if v == 2.0 else -5.0, lambda: True)
    assert best == 1.0


def test_tuning_on_real_runs_prefers_small_tikhonov_weight_over_a_huge_one(monkeypatch):
    # lam = 1e8 (relative to sigma^2) shrinks the CG solution towards zero; a moderate weight must win.
    monkeypatch.setitem(ev.GRIDS, "cg", ("lam", (1e8, 50.0), "none"))
    val = [ev.simulate("deblur", 16, 1_000_000, 1_000_000)]
    test = [ev.simulate("deblur", 16, TEST_SEEDS[0], 0)]
    row = ev.evaluate_pair("deblur", "cg", val, test, _args(), None, ev.Budget(None), [], _Bar(), 1.0)
    scores = {g["value"]: g["val_psnr"] for g in row["grid"]}
    assert scores[50.0] > scores[1e8] + 3.0
    assert row["value"] == 50.0 and row["n_test"] == 1


def test_time_budget_cuts_the_grid_but_still_runs_the_test_set():
    val = [ev.simulate("deblur", 16, 1_000_000, 1_000_000)]
    test = [ev.simulate("deblur", 16, TEST_SEEDS[i], i) for i in range(2)]
    budget = ev.Budget(1e-6)  # already spent: no grid value fits
    row = ev.evaluate_pair("deblur", "cg", val, test, _args(), None, budget, [("cg", 2)], _Bar(), 1.0)
    assert row["grid"] == [] and row["tuning_cut_by_budget"]
    assert row["value"] == ev.GRIDS["cg"][1][0]  # the paper default / first grid value
    assert row["n_test"] == 2 and budget.exhausted()


def test_beats_best_baseline_column_and_margin():
    def row(task, method, kind, psnr):
        return {"task": task, "method": method, "kind": kind, "psnr_mean": psnr}

    rows = [row("a", "tv", "baseline", 28.0), row("a", "cg", "baseline", 27.0), row("a", "dps", "diffusion", 26.0),
            row("a", "ddnm", "diffusion", 30.5), row("b", "tv", "baseline", 27.0), row("b", "dps", "diffusion", 25.0),
            row("c", "cg", "baseline", 20.0), row("c", "dps", "diffusion", None)]
    s = ev.summarize(rows)
    assert s["a"] == {"best_diffusion": "ddnm", "best_diffusion_psnr": 30.5, "best_baseline": "tv",
                      "best_baseline_psnr": 28.0, "beats_best_baseline": True, "margin_db": 2.5}
    assert s["b"]["beats_best_baseline"] is False and s["b"]["margin_db"] == -2.0
    assert s["c"]["beats_best_baseline"] is None and s["c"]["best_diffusion"] is None
    full = [{**r, "param": None, "value": None, "tuning_cut_by_budget": False, "seconds_per_recon": 1.0,
             **{f"{k}_{p}": None for k in ("ssim", "std_error_corr", "coverage90") for p in ("mean", "std")},
             "psnr_std": 0.0} for r in rows]
    md = ev.markdown({"settings": {"prior": "p", "size": 16, "steps": 3, "samples": 2, "n_test": 2, "n_val": 1,
                                   "device_name": "cpu"}, "status": "complete", "results": full, "summary": s})
    assert "| a | ddnm | 30.50 | tv | 28.00 | yes | +2.50 |" in md
    assert "| b | dps | 25.00 | tv | 27.00 | no | -2.00 |" in md
    assert "| a | dps | - | 26.00 ± 0.00 | - | - | - | -2.00 | 1.00 |" in md


def test_test_measurements_are_the_demo_measurements_and_validation_phantoms_differ():
    ours = ev.simulate("inpaint", 16, TEST_SEEDS[1], 1)
    theirs = make_demo("inpaint", 16, 1)
    np.testing.assert_array_equal(ours.y, theirs.y)
    assert ours.noise_sigma == theirs.noise_sigma
    val, test = ev.measurements("ct", 16, 1, 1)
    assert np.abs(val[0].ground_truth - test[0].ground_truth).max() > 0.1
    np.testing.assert_allclose(test[0].y, make_demo("ct", 16, 0).y, rtol=1e-6, atol=1e-6)


def test_prior_samples_are_reproducible_spread_and_in_range():
    import torch

    den = load_prior("gaussian", (1, 16, 16))
    a = ev.prior_samples(den, 4, 10, 7, torch.device("cpu"), False)
    b = ev.prior_samples(den, 4, 10, 7, torch.device("cpu"), False)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (4, 1, 16, 16) and a.min() >= 0.0 and a.max() <= 1.0
    assert np.abs(a[0] - a[1]).mean() > 0.02  # distinct samples, not one image four times


def test_unknown_task_is_refused_with_one_sentence_naming_the_setting():
    with pytest.raises(InputError, match="--tasks 'xray'"):
        ev.parse_args(["--tasks", "xray", "--out", "x"])


def test_runs_of_separate_tasks_merge_into_one_report_in_task_order(tmp_path, run):
    _, whole = run
    parts = []
    for task in reversed(TASKS):  # finished in the other order, as parallel runs may
        out = tmp_path / task
        argv = ["--prior", "gaussian", "--size", "16", "--n-test", "2", "--n-val", "1", "--steps", "3",
                "--samples", "3", "--baseline-iters", "15", "--device", "cpu", "--grid-samples",
                "3" if task == TASKS[0] else "0", "--tasks", task, "--solvers", *METHODS, "--out", str(out)]
        assert ev.main(argv) == 0
        parts.append(out)
    assert not (tmp_path / TASKS[1] / "samples_grid.png").exists()
    merged_dir = tmp_path / "merged"
    assert ev.main(["--merge", *map(str, parts), "--out", str(merged_dir)]) == 0
    merged = json.loads((merged_dir / "evaluate.json").read_text())
    order = [t for t in ev.TASKS if t in TASKS]  # the protocol's task order
    assert merged["status"] == "complete" and merged["settings"]["tasks"] == order
    expected = sorted(whole["results"], key=lambda r: order.index(r["task"]))
    assert [(r["task"], r["method"]) for r in merged["results"]] == [(r["task"], r["method"]) for r in expected]
    # the same seeds and settings: the same numbers as the run over both tasks
    assert [r["psnr_mean"] for r in merged["results"]] == pytest.approx([r["psnr_mean"] for r in expected])
    assert merged["summary"].keys() == whole["summary"].keys()
    assert (merged_dir / "samples_grid.png").is_file() and (merged_dir / "evaluate.md").is_file()


def test_merge_refuses_a_folder_without_a_report(tmp_path, capsys):
    assert ev.main(["--merge", str(tmp_path), "--out", str(tmp_path / "m")]) == 2
    assert "evaluate.json cannot be read as an evaluation report" in capsys.readouterr().err


def test_a_rerun_of_one_pair_replaces_its_row_in_place_and_a_missing_pair_is_named(tmp_path, run):
    out, whole = run
    argv = ["--prior", "gaussian", "--size", "16", "--n-test", "2", "--n-val", "1", "--steps", "3",
            "--samples", "3", "--baseline-iters", "15", "--device", "cpu", "--grid-samples", "0",
            "--tasks", "inpaint", "--solvers", "ddnm", "--seed", "5", "--out", str(tmp_path / "rerun")]
    assert ev.main(argv) == 0
    rerun = json.loads((tmp_path / "rerun" / "evaluate.json").read_text())["results"][0]
    assert ev.main(["--merge", str(out), str(tmp_path / "rerun"), "--out", str(tmp_path / "merged")]) == 0
    merged = json.loads((tmp_path / "merged" / "evaluate.json").read_text())
    pairs = [(r["task"], r["method"]) for r in merged["results"]]
    order = [t for t in ev.TASKS if t in TASKS]
    expected = sorted(whole["results"], key=lambda r: order.index(r["task"]))
    assert pairs == [(r["task"], r["method"]) for r in expected]  # the same rows in the same order
    row = merged["results"][pairs.index(("inpaint", "ddnm"))]
    assert row["per_phantom"] == rerun["per_phantom"] != next(
        r["per_phantom"] for r in whole["results"] if (r["task"], r["method"]) == ("inpaint", "ddnm"))
    assert merged["status"] == "complete"
    # a report that lacks a pair its settings name says which
    partial = json.loads((out / "evaluate.json").read_text())
    partial["results"] = [r for r in partial["results"] if (r["task"], r["method"]) != ("mri_x4", "tv")]
    (tmp_path / "partial").mkdir()
    (tmp_path / "partial" / "evaluate.json").write_text(json.dumps(partial))
    assert ev.main(["--merge", str(tmp_path / "partial"), "--out", str(tmp_path / "m2")]) == 0
    assert json.loads((tmp_path / "m2" / "evaluate.json").read_text())["status"] == "missing mri_x4/tv"
