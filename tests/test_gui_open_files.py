"""The window opens every format the session reads, offscreen: fastMRI, Data Exchange and NXtomo
files (with the importers' default choices named in the status bar and the log) and images, each
shown with its direct reconstruction and ready to run; the demo at start, a result file with the
settings that made it, and recent files by absolute path."""
import os

os.environ["QT_QPA_PLATFORM"] = "offscreen"

import numpy as np  # noqa: E402
import pytest  # noqa: E402

pytest.importorskip("PySide6")
from PySide6 import QtCore  # noqa: E402

from gui_windows import FAST, _run, make_window, window  # noqa: E402,F401,F811 - fixtures
from test_importers import write_dxchange, write_fastmri, write_nxtomo  # noqa: E402
from diffrecon.demo import make_demo  # noqa: E402
from diffrecon.engine import RunConfig  # noqa: E402
from diffrecon.gui.main_window import MainWindow  # noqa: E402
from diffrecon.io import write_measurement  # noqa: E402


@pytest.fixture
def bare_window(qtbot, tmp_path):
    settings = QtCore.QSettings(str(tmp_path / "settings.ini"), QtCore.QSettings.Format.IniFormat)
    settings.setValue("import/use_defaults", True)  # the default choices, without the import dialog
    w = MainWindow(settings=settings, plan_fn=lambda m, c, stop=None: None)
    qtbot.addWidget(w)
    w.plan_panel.auto = False
    return w


@pytest.mark.parametrize("fmt, writer, kind, choice", [
    ("fastmri", write_fastmri, "mri", "slice 1"),
    ("dxchange", write_dxchange, "ct", "detector row 1"),
    ("nxtomo", write_nxtomo, "ct", "detector row 1"),
])
def test_window_opens_an_import_format_and_names_the_default_choices(bare_window, qtbot, tmp_path, fmt, writer,
                                                                     kind, choice):
    window = bare_window
    path = tmp_path / f"{fmt}.h5"
    writer(path)
    assert window.open_file(path), window.last_error
    m = window.measurement
    assert m.operator.kind == kind and window.windowTitle().endswith(path.name)
    assert choice in window.message_label.text() and "default" in window.message_label.text()
    assert choice in window.log_view.toPlainText()
    direct = window.view.panels["direct"].data
    assert direct is not None and direct.shape == tuple(m.image_shape[1:]) and np.isfinite(direct).all()
    assert window.run_button.isEnabled() and window.recent_files()[0] == str(path.resolve())
    window.tree.wait()
    qtbot.waitUntil(lambda: window.tree.topLevelItemCount() == 1
                    and window.tree.topLevelItem(0).childCount() >= 1, timeout=5000)


def test_window_refuses_an_hdf5_file_of_no_known_layout_in_one_sentence(bare_window, tmp_path):
    window = bare_window
    import h5py

    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["something"] = np.zeros(3)
    assert not window.open_file(tmp_path / "other.h5")
    assert "other.h5 is neither a diffrecon measurement or result nor" in window.last_error
    assert window.measurement is None and not window.run_button.isEnabled()


def test_window_opens_with_the_demo_measurement_and_its_direct_reconstruction(window):
    m = window.measurement
    direct = window.view.panels["direct"].data
    assert window.view.panels["measurement"].data is not None
    assert np.isfinite(window.view.panels["measurement"].data).all()
    assert direct is not None and direct.shape == tuple(m.image_shape[1:])
    assert window.run_button.isEnabled() and not window.stop_button.isEnabled()
    assert float(window.forward.noise.text()) == pytest.approx(m.noise_sigma, rel=1e-5)


def test_opening_a_result_file_restores_its_settings_and_images(qtbot, window, tmp_path):
    r = _run(qtbot, window, RunConfig(prior="gaussian", steps=4, samples=2, seed=7, device="cpu", solver="dps"))
    window.export(tmp_path / "result.h5", "result")
    window.solver.set_config(FAST)
    assert window.open_file(tmp_path / "result.h5")
    assert window.solver.steps.value() == 4 and window.solver.seed.value() == 7
    np.testing.assert_allclose(window.view.panels["mean"].data, r.mean[0], rtol=1e-6)
    window.tree.wait()
    qtbot.waitUntil(lambda: window.tree.topLevelItemCount() == 1
                    and window.tree.topLevelItem(0).childCount() > 1, timeout=5000)
    names = [window.tree.topLevelItem(0).child(i).text(0) for i in range(window.tree.topLevelItem(0).childCount())]
    assert "posterior" in names
    assert window.recent_files()[0] == str(tmp_path / "result.h5")


def test_recent_files_are_stored_with_absolute_paths(make_window, tmp_path, monkeypatch):
    w = make_window()
    write_measurement(tmp_path / "m.h5", make_demo("denoise", size=16))
    monkeypatch.chdir(tmp_path)
    assert w.open_file("m.h5")
    assert w.recent_files()[0] == str(tmp_path.resolve() / "m.h5") and os.path.isabs(w.recent_files()[0])



def test_panels_follow_the_session_the_window_holds_no_measurement_of_its_own(make_window):
    from diffrecon.measurement import Result

    w = make_window()
    m = make_demo("inpaint", size=16)
    w.session.set_measurement(m)
    assert w.measurement is m and w.forward.kind.text() == "inpaint"
    np.testing.assert_allclose(w.view.panels["direct"].data, w.session.direct_reconstruction()[0], rtol=1e-6)
    assert w.metrics.rowCount() == 0 and not w.export_action.isEnabled()
    mean = np.asarray(m.ground_truth, np.float32)
    w.session.set_result(Result(mean=mean, std=np.full_like(mean, 0.1), samples=None, n_samples=2,
                                metrics={"psnr": 31.5}, provenance={"samples": 2}, units=m.units, measurement=m))
    np.testing.assert_allclose(w.view.panels["mean"].data, mean[0])
    assert w.export_action.isEnabled() and "31.5" in w.metrics.item(0, 1).text()
    w.session.set_measurement(make_demo("denoise", size=16))
    assert w.result is None and w.view.panels["mean"].data is None and w.metrics.rowCount() == 0
