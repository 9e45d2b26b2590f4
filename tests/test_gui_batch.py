"""The window's batch queue (File ▸ Batch…), offscreen: rows follow the queue, pause waits for the
file in progress, cancel stops the rest, a bad input fails alone, closing the window cancels."""
import os

os.environ["QT_QPA_PLATFORM"] = "offscreen"

import csv  # noqa: E402

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

pytest.importorskip("PySide6")
from PySide6 import QtCore  # noqa: E402

from diffrecon.demo import make_demo  # noqa: E402
from diffrecon.engine import RunConfig  # noqa: E402
from diffrecon.gui.main_window import MainWindow  # noqa: E402
from diffrecon.io import read_result, write_measurement  # noqa: E402

CONFIG = RunConfig(solver="diffpir", steps=3, samples=2, seed=3, prior="gaussian", device="cpu")
N_FILES = 3


@pytest.fixture
def inputs(tmp_path):
    folder = tmp_path / "study"
    folder.mkdir()
    for i in range(N_FILES):
        write_measurement(folder / f"m{i}.h5", make_demo("denoise", size=16, seed=i))
    return folder


@pytest.fixture
def dock(qtbot, tmp_path):
    settings = QtCore.QSettings(str(tmp_path / "settings.ini"), QtCore.QSettings.Format.IniFormat)
    window = MainWindow(settings=settings)
    qtbot.addWidget(window)
    window.solver.set_config(CONFIG)
    window.batch_action.trigger()  # File ▸ Batch…
    d = window.batch_dock
    d.set_output(tmp_path / "out")
    yield d
    if d.is_running():
        d.cancel()
        d.job.wait(20000)


def _states(d):
    return [d.table.item(r, 1).text() for r in range(d.table.rowCount())]


def _wait_ended(qtbot, d, timeout=120000):
    qtbot.waitUntil(lambda: d.summary is not None, timeout=timeout)
    d.job.wait(5000)


def test_a_batch_runs_every_file_with_the_window_settings_and_writes_the_summary(qtbot, dock, inputs):
    assert dock.add_folder(inputs) and _states(dock) == ["queued"] * N_FILES
    assert dock.start() and dock.queue.config == dock.main_window.solver.config()
    _wait_ended(qtbot, dock)
    assert _states(dock) == ["done"] * N_FILES
    assert [dock.table.cellWidget(r, 2).value() for r in range(N_FILES)] == [100] * N_FILES
    out = dock.out_dir
    for i in range(N_FILES):
        result = read_result(out / f"m{i}.result.h5")
        assert result.complete and result.provenance["steps"] == CONFIG.steps
        psnr = float(dock.table.item(i, 4).text().split()[0])
        assert psnr == pytest.approx(result.metrics["psnr"], abs=0.01)
        assert float(dock.table.item(i, 5).text()) == pytest.approx(result.metrics["residual_ratio"], abs=1e-3)
    with open(out / "batch_summary.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["status"] for r in rows] == ["done"] * N_FILES
    assert dock.header.text().startswith(f"<b>{N_FILES}/{N_FILES} ended</b> · 0 failed")
    assert dock.summary_button.isEnabled() and not dock.pause_button.isEnabled()

    assert dock.open_row(1)  # a done row opens its result in the window
    assert dock.main_window.result is not None and np.array_equal(dock.main_window.result.mean,
                                                                   read_result(out / "m1.result.h5").mean)

    assert dock.start()  # again: every result is finished, so each is skipped
    _wait_ended(qtbot, dock)
    assert _states(dock) == ["skipped"] * N_FILES


def test_pause_waits_for_the_file_in_progress_and_resume_goes_on(qtbot, dock, inputs):
    dock.main_window.solver.set_config(RunConfig(solver="diffpir", steps=400, samples=2, prior="gaussian", device="cpu"))
    dock.add_folder(inputs)
    assert not dock.pause_button.isEnabled()
    dock.start()
    qtbot.waitUntil(lambda: _states(dock)[0] == "running", timeout=60000)
    dock.pause_button.click()  # "Pause after this file", while the first file runs
    assert dock.pause_button.text() == "Resume"
    qtbot.waitUntil(lambda: _states(dock)[0] == "done", timeout=60000)
    qtbot.wait(500)  # paused: no further file starts
    assert _states(dock) == ["done"] + ["queued"] * (N_FILES - 1)
    assert sorted(p.name for p in dock.out_dir.glob("*.result.h5")) == ["m0.result.h5"]
    assert "1/3 ended" in dock.header.text() and "paused" in dock.header.text()
    dock.pause_button.click()  # Resume
    assert dock.pause_button.text() == "Pause after this file"
    _wait_ended(qtbot, dock)
    assert _states(dock) == ["done"] * N_FILES


def test_cancel_stops_the_running_file_and_the_rest(qtbot, dock, inputs):
    dock.main_window.solver.set_config(RunConfig(solver="diffpir", steps=400, samples=2, prior="gaussian", device="cpu"))
    dock.add_folder(inputs)
    dock.start()
    qtbot.waitUntil(lambda: _states(dock)[0] == "running" and dock.table.cellWidget(0, 2).value() > 0,
                    timeout=60000)
    dock.cancel_button.click()
    _wait_ended(qtbot, dock, 30000)
    assert _states(dock) == ["cancelled"] * N_FILES
    assert not list(dock.out_dir.glob("*.result.h5"))
    with open(dock.out_dir / "batch_summary.csv", newline="") as fh:
        assert [r["status"] for r in csv.DictReader(fh)] == ["cancelled"] * N_FILES
    assert "cancelled" in dock.header.text() and dock.start_button.isEnabled()


def test_a_bad_input_fails_with_its_error_as_tooltip_and_the_others_finish(qtbot, dock, inputs):
    bad = inputs / "m1.h5"
    bad.unlink()
    with h5py.File(bad, "w") as fh:
        fh["something"] = np.zeros(3)
    dock.add_files(sorted(inputs.glob("*.h5")))
    dock.start()
    _wait_ended(qtbot, dock)
    assert _states(dock) == ["done", "failed", "done"]
    tip = dock.table.item(1, 1).toolTip()
    assert str(bad) in tip and "not a diffrecon file" in tip
    assert "1 failed" in dock.header.text() and not dock.open_row(1) and dock.table.cellWidget(1, 2).value() == 0
    assert sorted(p.name for p in dock.out_dir.glob("*.result.h5")) == ["m0.result.h5", "m2.result.h5"]


def test_closing_the_window_cancels_a_running_batch(qtbot, dock, inputs):
    window = dock.main_window
    window.solver.set_config(RunConfig(solver="diffpir", steps=400, samples=2, prior="gaussian", device="cpu"))
    dock.add_folder(inputs)
    dock.start()
    qtbot.waitUntil(lambda: dock.table.cellWidget(0, 2).value() > 0, timeout=60000)
    window.close()
    assert dock.job.wait(20000) and dock.queue.state == "cancelled"
    assert not list(dock.out_dir.glob("*.result.h5"))


def test_files_added_while_the_batch_runs_join_it(qtbot, dock, inputs):
    files = sorted(inputs.glob("*.h5"))
    dock.main_window.solver.set_config(RunConfig(solver="diffpir", steps=400, samples=2, prior="gaussian", device="cpu"))
    dock.add_files(files[:2])
    dock.start()
    qtbot.waitUntil(lambda: _states(dock)[0] == "running", timeout=60000)
    assert dock.add_files(files[2:])
    _wait_ended(qtbot, dock)
    assert [dock.table.item(r, 0).text() for r in range(dock.table.rowCount())] == ["m0", "m1", "m2"]
    assert _states(dock) == ["done"] * N_FILES and len(dock.summary.records) == N_FILES
    assert sorted(p.name for p in dock.out_dir.glob("*.result.h5")) == [f"m{i}.result.h5" for i in range(N_FILES)]
