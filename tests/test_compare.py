"""Comparing solvers: equal budgets, the queue and its cancels, the table, the Pareto front, the files."""
from __future__ import annotations

import argparse
import csv
import math

import numpy as np
import pytest

from diffrecon import compare
from diffrecon.cli.compare import add_compare_parser
from diffrecon.compare import (CompareSpec, ComparisonFinished, QueueControl, RunEnded, RunEvent, RunSpec,
                               equal_budget, metrics_rows, pareto_front, read_comparison, run_comparison,
                               step_costs, write_comparison, write_figure, write_table)
from diffrecon.demo import make_demo
from diffrecon.engine import Planned, Progress, RunConfig
from diffrecon.errors import InputError

BASE = RunConfig(prior="gaussian", device="cpu", preview_interval=10.0)


@pytest.fixture(scope="module")
def inpaint():
    return make_demo("inpaint", size=32)


@pytest.fixture(scope="module")
def two_solver(inpaint):
    runs = CompareSpec(("dps", "diffpir"), steps=(3,), seeds=(0,), samples=2).runs()
    events = list(run_comparison(inpaint, runs, BASE))
    assert isinstance(events[-1], ComparisonFinished)
    return events[-1].comparison


def _finished(events):
    return events[-1].comparison


def test_equal_nfe_budget_spends_the_budget_within_one_step():
    solvers = ["dps", "ddnm", "diffpir", "tv"]
    steps = equal_budget(solvers, budget_nfe=100, samples=3)
    costs = step_costs(solvers, unit="nfe", samples=3)
    assert steps["dps"] == 33  # floor(100 / (1 evaluation x 3 samples))
    for name in solvers:
        assert steps[name] * costs[name] <= 100 < (steps[name] + 1) * costs[name]


def test_equal_seconds_budget_divides_by_the_planned_time_per_step(monkeypatch, inpaint):
    per_step = {"dps": 0.02, "diffpir": 0.005}

    def fake_plan(measurement, config, denoiser=None):
        return Planned("cpu", [config.samples], config.steps, config.steps, None, True, (1.0, 0.0),
                       predicted_seconds=per_step[config.solver] * config.steps)

    monkeypatch.setattr(compare, "plan", fake_plan)
    steps = equal_budget(["dps", "diffpir"], budget_seconds=1.0, samples=2, measurement=inpaint, base_config=BASE)
    assert steps == {"dps": 50, "diffpir": 200}


def test_equal_budget_refuses_both_or_neither_budget():
    with pytest.raises(InputError, match="exactly one budget"):
        equal_budget(["dps"], budget_nfe=10, budget_seconds=1.0)
    with pytest.raises(InputError, match="exactly one budget"):
        equal_budget(["dps"])
    with pytest.raises(InputError, match="positive"):
        equal_budget(["dps"], budget_nfe=-5)


def test_pareto_front_keeps_exactly_the_undominated_points_sorted_by_cost():
    points = [(10, 20), (20, 25), (15, 19), (30, 25), (5, math.nan), (40, 30), (20, 25)]
    # (15, 19) is beaten by (10, 20); (30, 25) by (20, 25); the duplicate (20, 25) beats neither copy
    assert pareto_front(points) == [0, 1, 6, 5]
    assert pareto_front([]) == []


def test_spec_runs_are_solvers_times_steps_times_seeds_with_budget_override():
    spec = CompareSpec(("dps", "ddnm"), steps=(10, 20), seeds=(0, 1), samples=3, params={"dps": {"zeta": 0.5}})
    runs = spec.runs()
    assert len(runs) == 8
    assert runs[0] == RunSpec("dps", 10, 3, 0, {"zeta": 0.5})
    assert [r.steps for r in spec.runs({"dps": 7, "ddnm": 9})] == [7, 7, 9, 9]
    with pytest.raises(InputError, match="valid solvers"):
        CompareSpec(("nope",)).runs()


def test_table_rows_equal_each_results_metrics(two_solver):
    assert two_solver.status == ["done", "done"]
    rows = metrics_rows(two_solver)
    for row, result in zip(rows, two_solver.results):
        for key in compare.METRIC_KEYS:
            assert row[key] == pytest.approx(result.metrics[key], nan_ok=True)
    assert [r["nfe"] for r in rows] == [6.0, 6.0]  # 3 steps x 2 samples, one evaluation each
    assert rows[0]["grad_evals"] == 6.0 and rows[1]["grad_evals"] == 0.0  # only DPS backpropagates


def test_csv_table_reads_back_the_same_numbers(two_solver, tmp_path):
    path = write_table(tmp_path / "t.csv", two_solver)
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["solver"] for r in rows] == ["dps", "diffpir"]
    for row, result in zip(rows, two_solver.results):
        assert float(row["psnr"]) == pytest.approx(result.metrics["psnr"], rel=1e-12)
        assert float(row["seconds"]) == pytest.approx(result.metrics["seconds"], rel=1e-12)


def test_hdf5_comparison_reads_back_equal(two_solver, tmp_path):
    path = write_comparison(tmp_path / "c.h5", two_solver)
    back = read_comparison(path)
    assert back.runs == two_solver.runs and back.status == two_solver.status
    for a, b in zip(back.results, two_solver.results):
        np.testing.assert_array_equal(a.mean, b.mean.astype(np.float32))
        np.testing.assert_array_equal(a.std, b.std.astype(np.float32))
        assert a.metrics == pytest.approx(b.metrics)
        assert a.provenance["solver"] == b.provenance["solver"]
    np.testing.assert_array_equal(back.measurement.ground_truth, two_solver.measurement.ground_truth)


def test_figure_has_one_column_per_run_and_three_rows(two_solver, tmp_path):
    from matplotlib.image import imread

    one = imread(write_figure(tmp_path / "one.png", _only(two_solver, 0)))
    two = imread(write_figure(tmp_path / "two.png", two_solver))
    assert two.shape[0] == one.shape[0] and two.shape[1] > one.shape[1] + 150  # a wider figure per column
    _, rows = compare.grid_rows(two_solver)
    assert list(rows) == ["mean", "std", "error"] and len(rows["mean"]) == 2


def _only(comparison, index):
    c = compare.Comparison.empty(comparison.measurement, [comparison.runs[index]])
    c.results[0], c.status[0] = comparison.results[index], "done"
    return c


def test_cancelled_run_is_skipped_and_the_queue_goes_on(inpaint):
    runs = [RunSpec("dps", 3, 1), RunSpec("diffpir", 3, 1)]
    control = QueueControl(len(runs))
    control.cancel(0)
    c = _finished(list(run_comparison(inpaint, runs, BASE, control=control)))
    assert c.status == ["cancelled", "done"] and c.results[0] is None and c.results[1].n_samples == 1


def test_cancel_while_running_stops_that_run_only(inpaint):
    runs = [RunSpec("diffpir", 6, 2), RunSpec("dps", 2, 1)]
    control = QueueControl(len(runs))
    events = []
    for ev in run_comparison(inpaint, runs, BASE, control=control):
        events.append(ev)
        if isinstance(ev, RunEvent) and ev.index == 0 and isinstance(ev.event, Progress):
            control.cancel(0)
    c = _finished(events)
    assert c.status[0] in ("cancelled", "stopped") and c.status[1] == "done"
    ended = [e for e in events if isinstance(e, RunEnded)]
    assert [e.index for e in ended] == [0, 1]


def test_impossible_run_is_marked_failed_with_the_reason():
    ct = make_demo("ct", size=16)
    c = _finished(list(run_comparison(ct, [RunSpec("ddrm", 2, 1), RunSpec("diffpir", 2, 1)], BASE)))
    assert c.status == ["failed", "done"] and "SVD" in c.messages[0]


def test_read_comparison_refuses_a_result_file(two_solver, tmp_path):
    from diffrecon.io import write_result

    write_result(tmp_path / "r.h5", two_solver.results[0])
    with pytest.raises(InputError, match="comparison"):
        read_comparison(tmp_path / "r.h5")


def test_cli_compare_writes_the_three_files_with_equal_nfe(inpaint, tmp_path):
    from diffrecon.io import write_measurement

    write_measurement(tmp_path / "m.h5", inpaint)
    parser = argparse.ArgumentParser()
    add_compare_parser(parser.add_subparsers())
    args = parser.parse_args(["compare", str(tmp_path / "m.h5"), "--solvers", "dps,diffpir", "--budget-nfe", "4",
                              "--samples", "2", "--prior", "gaussian", "--device", "cpu",
                              "--out", str(tmp_path / "c.h5"), "--figure", str(tmp_path / "c.png"),
                              "--table", str(tmp_path / "c.csv")])
    assert args.func(args) == 0
    back = read_comparison(tmp_path / "c.h5")
    assert [r.steps for r in back.runs] == [2, 2]
    assert [r.metrics["nfe"] for r in back.results] == [4.0, 4.0]
    assert (tmp_path / "c.png").stat().st_size > 1000 and (tmp_path / "c.csv").read_text().count("\n") == 3
