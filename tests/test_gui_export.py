"""Export from the window, offscreen: TIFF, PNG and HDF5 that read back, the file name and map the
save dialog's filter and suffix choose, and export failures of any kind shown in the window."""
import os

os.environ["QT_QPA_PLATFORM"] = "offscreen"

import re  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

pytest.importorskip("PySide6")

from gui_windows import _run, make_window, window  # noqa: E402,F401,F811 - fixtures
from diffrecon.errors import InputError  # noqa: E402
from diffrecon.gui.export import resolve_target  # noqa: E402

STD_PNG = "Posterior std, PNG with colour bar (*.png)"


def test_export_writes_tiff_png_and_hdf5_that_read_back(qtbot, window, tmp_path):
    import tifffile
    from matplotlib.image import imread

    from diffrecon.io import read_result

    r = _run(qtbot, window)
    assert window.export(tmp_path / "mean.tif", "mean")
    assert window.export(tmp_path / "samples.tif", "samples")
    assert window.export(tmp_path / "std.png", "std")
    assert window.export(tmp_path / "result.h5", "result")
    mean = tifffile.imread(tmp_path / "mean.tif")
    assert mean.dtype == np.float32
    np.testing.assert_array_equal(mean.reshape(r.mean.shape), r.mean.astype(np.float32))
    assert tifffile.imread(tmp_path / "samples.tif").size == r.samples.size
    png = imread(tmp_path / "std.png")
    assert png.ndim == 3 and png.shape[0] > 100
    back = read_result(tmp_path / "result.h5")
    np.testing.assert_allclose(back.mean, r.mean, rtol=1e-6)
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]  # no temporary files left
    assert not window.export(tmp_path / "mean.jpg", "mean") and ".tif" in window.message_label.text()


def test_export_name_without_suffix_gets_the_filters_and_a_mismatch_keeps_the_chosen_map(tmp_path):
    assert resolve_target(tmp_path / "out", STD_PNG) == (tmp_path / "out.png", "std")
    assert resolve_target(tmp_path / "out.v2", STD_PNG) == (tmp_path / "out.v2.png", "std")
    assert resolve_target(tmp_path / "out.tif", STD_PNG) == (tmp_path / "out.tif", "std")  # std, as TIFF
    with pytest.raises(InputError, match="out.h5 has the suffix .h5, but the chosen export is the std map as PNG"):
        resolve_target(tmp_path / "out.h5", STD_PNG)
    with pytest.raises(InputError, match="whole result"):
        resolve_target(tmp_path / "out.png", "HDF5 result (*.h5)")


def test_export_failures_of_any_kind_are_shown_in_the_window(make_window, qtbot, tmp_path, monkeypatch):
    w = make_window()
    w.start_run()
    assert w.wait_for_run(60000) and w.result is not None
    assert not w.export(tmp_path / "missing" / "m.tif", "mean")
    assert "m.tif" in w.message_label.text() and w.message_label.styleSheet()

    def broken(*a, **k):
        raise ValueError("tifffile cannot write this")

    monkeypatch.setattr("diffrecon.session.model.export_map", broken)
    assert not w.export(tmp_path / "e.tif", "error")
    assert "tifffile cannot write this" in w.message_label.text()
    # the run's end is in the log: time, batches, warnings
    log = w.log_view.toPlainText()
    assert re.search(r"Run finished: 2 of 2 samples in [\d.]+ s, batches \[2\], NFE 20, \d+ warnings?\.", log)

