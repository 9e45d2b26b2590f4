"""The comparison window, offscreen: a real two-solver queue (exact Gaussian prior), a cancelled
run, the grid, the sortable table, the cost-quality plot, exports and reopening."""
import os

os.environ["QT_QPA_PLATFORM"] = "offscreen"

import math  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

pytest.importorskip("PySide6")
from PySide6 import QtCore  # noqa: E402

from diffrecon.compare import CompareSpec, pareto_front, read_comparison  # noqa: E402
from diffrecon.demo import make_demo  # noqa: E402
from diffrecon.engine import RunConfig  # noqa: E402
from diffrecon.gui.compare_window import CompareWindow  # noqa: E402

BASE = RunConfig(prior="gaussian", device="cpu", preview_interval=10.0)


@pytest.fixture(scope="module")
def inpaint():
    return make_demo("inpaint", size=32)


def test_solvers_the_forward_model_cannot_serve_are_greyed_with_the_reason(qtbot):
    w = CompareWindow(make_demo("ct", size=16), BASE)
    qtbot.addWidget(w)
    rows = {w.setup.solvers.item(r).data(QtCore.Qt.ItemDataRole.UserRole): r for r in range(w.setup.solvers.count())}
    assert not w.setup.is_enabled(rows["ddrm"]) and "SVD" in w.setup.solvers.item(rows["ddrm"]).toolTip()
    assert w.setup.is_enabled(rows["dps"])
    w.setup.set_spec(CompareSpec(("ddrm", "dps")))
    assert w.setup.checked() == ["dps"]


def test_two_solver_queue_with_one_cancelled_run_fills_grid_table_and_plot(qtbot, inpaint, tmp_path):
    w = CompareWindow(inpaint, BASE)
    qtbot.addWidget(w)
    assert w.start(CompareSpec(("dps", "diffpir"), steps=(3,), seeds=(0, 1), samples=2))
    w.cancel_run(1)  # dps, seed 1: still waiting, so it is skipped
    assert w.wait_until_done(60_000)
    c = w.comparison
    assert c.status == ["done", "cancelled", "done", "done"], w.last_error

    # grid: one column per finished run, rows mean/std/error with one shared colour bar per row
    assert w.grid.columns == [0, 2, 3]
    assert set(w.grid.bars) == {"mean", "std", "error"}
    truth = inpaint.ground_truth[0]
    assert w.grid.levels("mean") == pytest.approx((float(truth.min()), float(truth.max())))
    assert w.grid.levels("std")[0] == 0.0
    assert all(w.grid.images[("mean", i)].image.shape == (32, 32) for i in (0, 2, 3))

    # table: a row per run; numbers equal each Result's metrics; sorting by PSNR orders them
    assert w.table.rowCount() == 4
    col = w.table.keys.index("psnr")
    w.table.sortItems(col, QtCore.Qt.SortOrder.DescendingOrder)
    psnrs = [v for v in w.table.column_values("psnr") if not math.isnan(v)]
    assert psnrs == sorted((c.results[i].metrics["psnr"] for i in (0, 2, 3)), reverse=True)

    # plot: a point per finished run at (NFE, PSNR) and the Pareto frontier of those points
    assert w.plot.cost_axis() == "Network evaluations"
    assert w.plot.points == [(c.results[i].metrics["equivalent_nfe"], c.results[i].metrics["psnr"]) for i in (0, 2, 3)]
    assert [p[0] for p in w.plot.points] == [c.results[i].metrics["nfe"] for i in (0, 2, 3)]  # full-size calls only
    assert w.plot.front_indices == pareto_front(w.plot.points)
    assert len(w.plot.scatter.data) == 3
    # the cost axis toggles to the runs' wall seconds, and back
    w.plot.cost_buttons["Seconds"].click()
    assert w.plot.cost_axis() == "Seconds" and not w.plot.cost_buttons["Network evaluations"].isChecked()
    assert w.plot.points == [(c.results[i].metrics["seconds"], c.results[i].metrics["psnr"]) for i in (0, 2, 3)]
    assert w.plot.front_indices == pareto_front(w.plot.points)
    assert w.plot.plot.getAxis("bottom").labelText == "Seconds"
    w.plot.cost_buttons["Network evaluations"].click()
    assert w.plot.plot.getAxis("bottom").labelText.startswith("Network evaluations")

    # exports, then the saved comparison opens again in a new window
    for kind in ("png", "csv", "h5"):
        assert w.save(kind, tmp_path / f"c.{kind}"), w.last_error
    assert read_comparison(tmp_path / "c.h5").status == c.status
    w2 = CompareWindow(inpaint, BASE)
    qtbot.addWidget(w2)
    assert w2.open_comparison(tmp_path / "c.h5")
    assert w2.table.rowCount() == 4 and w2.grid.columns == [0, 2, 3]
    np.testing.assert_array_equal(w2.comparison.results[2].mean, c.results[2].mean.astype(np.float32))


def test_cancelling_the_running_run_keeps_the_rest_of_the_queue(qtbot, inpaint):
    w = CompareWindow(inpaint, BASE)
    qtbot.addWidget(w)
    assert w.start(CompareSpec(("diffpir", "dps"), steps=(4,), samples=2))
    # cancel from the worker thread the moment run 0 starts: the engine sees it at its first step
    w.worker.run_started.connect(lambda i: w.worker.cancel_run(i) if i == 0 else None,
                                 QtCore.Qt.ConnectionType.DirectConnection)
    assert w.wait_until_done(60_000)
    assert w.comparison.status == ["cancelled", "done"], w.last_error
    assert w.grid.columns == [1] and w.table.rowCount() == 2


def test_empty_selection_is_refused_with_a_sentence(qtbot, inpaint):
    w = CompareWindow(inpaint, BASE)
    qtbot.addWidget(w)
    assert not w.start(CompareSpec((), steps=(3,)))
    assert "at least one solver" in w.last_error and w.worker is None
