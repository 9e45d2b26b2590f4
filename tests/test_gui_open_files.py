"""The window opens every format the session reads, offscreen: fastMRI, Data Exchange and NXtomo
files (with the importers' default choices named in the status bar and the log) and images, each
shown with its direct reconstruction and ready to run."""
import os

os.environ["QT_QPA_PLATFORM"] = "offscreen"

import numpy as np  # noqa: E402
import pytest  # noqa: E402

pytest.importorskip("PySide6")
from PySide6 import QtCore  # noqa: E402

from test_importers import write_dxchange, write_fastmri, write_nxtomo  # noqa: E402
from diffrecon.gui.main_window import MainWindow  # noqa: E402


@pytest.fixture
def window(qtbot, tmp_path):
    settings = QtCore.QSettings(str(tmp_path / "settings.ini"), QtCore.QSettings.Format.IniFormat)
    w = MainWindow(settings=settings, plan_fn=lambda m, c, stop=None: None)
    qtbot.addWidget(w)
    w.plan_panel.auto = False
    return w


@pytest.mark.parametrize("fmt, writer, kind, choice", [
    ("fastmri", write_fastmri, "mri", "slice 1"),
    ("dxchange", write_dxchange, "ct", "detector row 1"),
    ("nxtomo", write_nxtomo, "ct", "detector row 1"),
])
def test_window_opens_an_import_format_and_names_the_default_choices(window, qtbot, tmp_path, fmt, writer, kind,
                                                                     choice):
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


def test_window_refuses_an_hdf5_file_of_no_known_layout_in_one_sentence(window, tmp_path):
    import h5py

    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["something"] = np.zeros(3)
    assert not window.open_file(tmp_path / "other.h5")
    assert "other.h5 is neither a diffrecon measurement or result nor" in window.last_error
    assert window.measurement is None and not window.run_button.isEnabled()
