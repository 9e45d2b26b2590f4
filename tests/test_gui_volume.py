"""The volume window, offscreen: a volume result's orthogonal slices, slice sliders, the linked
cursor (sliders, clicks) and the profiles show the volume's own values; a tiny volume
reconstructed from the window equals reconstruct_volume's; Stop; export; File ▸ Open of a
volume result from the main window."""
import os

os.environ["QT_QPA_PLATFORM"] = "offscreen"

import numpy as np  # noqa: E402
import pytest  # noqa: E402

pytest.importorskip("PySide6")
from PySide6 import QtCore  # noqa: E402

from diffrecon.engine import RunConfig  # noqa: E402
from diffrecon.gui.volume_job import VolumeSlices  # noqa: E402
from diffrecon.gui.volume_view import orthogonal_slice, profile_along  # noqa: E402
from diffrecon.gui.volume_window import VolumeWindow  # noqa: E402
from diffrecon.volume import VolumeFinished, VolumeResult, reconstruct_volume, volume_demo  # noqa: E402
from diffrecon.volume.file import read_volume, with_geometry, write_volume  # noqa: E402

CONFIG = RunConfig(solver="diffpir", prior="gaussian", steps=4, samples=2, seed=5, device="cpu", prior_fit=False)


def _volume():
    rng = np.random.default_rng(3)
    mean = rng.normal(0.3, 0.1, (4, 1, 6, 5)).astype(np.float32)  # Z, C, H, W all different
    std = rng.uniform(0.01, 0.05, (4, 1, 6, 5)).astype(np.float32)
    r = VolumeResult(mean, std, 2, {"psnr": 20.0}, None, {}, "1/cm")
    return with_geometry(r, z_spacing=2.0, pixel_size=0.5, pixel_unit="mm")


@pytest.fixture
def vw(qtbot):
    w = VolumeWindow(CONFIG)
    qtbot.addWidget(w)
    w.resize(1200, 900)
    w.show()
    qtbot.waitExposed(w)
    yield w
    if w.is_running():
        w.stop_run()
        w.job.wait(20000)


def _shown(w, q, view):
    return w.view.panels[q, view].data


def test_slices_sliders_and_cursor_show_the_volume(vw, tmp_path):
    r = _volume()
    write_volume(tmp_path / "v.h5", r)
    assert vw.open_file(tmp_path / "v.h5"), vw.last_error
    m, s = r.mean[:, 0], r.std[:, 0]
    assert vw.view.cursor == (2, 3, 2)  # the middle voxel
    vw.view.set_cursor((1, 4, 3))
    assert np.array_equal(_shown(vw, "mean", "axial"), m[1])
    assert np.array_equal(_shown(vw, "mean", "coronal"), m[:, 4, :])
    assert np.array_equal(_shown(vw, "mean", "sagittal"), m[:, :, 3])
    assert np.array_equal(_shown(vw, "std", "sagittal"), s[:, :, 3])
    vw.view.sliders["coronal"].setValue(0)  # the coronal slider moves y
    assert vw.view.cursor == (1, 0, 3)
    assert np.array_equal(_shown(vw, "std", "coronal"), s[:, 0, :])
    assert vw.view.panels["mean", "axial"].cross() == (0, 3)  # the axial crosshair followed: row y, column x
    assert vw.view.panels["mean", "sagittal"].cross() == (1, 0)  # row z, column y
    vw.view.sliders["axial"].setValue(3)
    assert np.array_equal(_shown(vw, "mean", "axial"), m[3])
    assert vw.view.slider_labels["axial"].text() == "3 of 0–3 (6 mm)"  # z = 3 slices of 2 mm
    # profiles through the cursor (3, 0, 3), in the length unit
    for axis, spacing in (("z", 2.0), ("y", 0.5), ("x", 0.5)):
        vw.view.set_profile_axis(axis)
        t, values = vw.view.mean_curve.getData()
        expected = profile_along(r.mean, "zyx".index(axis), (3, 0, 3))
        assert np.array_equal(values, expected) and np.allclose(t, np.arange(len(expected)) * spacing)
        _t, upper = vw.view.band_hi.getData()
        assert np.allclose(upper, expected + profile_along(r.std, "zyx".index(axis), (3, 0, 3)))
    assert vw.view.profile_data()["mean"][2] == m[3, 0, 2]


def test_a_click_in_a_view_moves_the_cursor_in_all_views(vw, qtbot):
    r = _volume()
    vw.set_result(r)
    qtbot.wait(50)
    panel = vw.view.panels["mean", "coronal"]  # rows z (stretched 4x: 2 mm slices, 0.5 mm pixels), columns x
    assert panel.aspect == pytest.approx(4.0)
    corner, far = (panel.plot.vb.mapViewToScene(QtCore.QPointF(v, v)) for v in (0.0, 1.0))
    assert (far.y() - corner.y()) / (far.x() - corner.x()) == pytest.approx(4.0, rel=1e-3)  # a row is 4 columns tall
    scene = panel.plot.vb.mapViewToScene(QtCore.QPointF(1.5, 2.5))  # z 2, x 1
    pos = panel.graphics.mapFromScene(scene)
    qtbot.mouseClick(panel.graphics.viewport(), QtCore.Qt.MouseButton.LeftButton, pos=pos)
    z, y, x = vw.view.cursor
    assert (z, x) == (2, 1) and y == 3  # y kept: the coronal view cuts at y
    assert np.array_equal(_shown(vw, "mean", "axial"), r.mean[2, 0])
    assert np.array_equal(_shown(vw, "mean", "sagittal"), r.mean[:, 0, :, 1])


def test_show_toggle_and_orthogonal_slice():
    vol = np.arange(2 * 1 * 3 * 4, dtype=np.float32).reshape(2, 1, 3, 4)
    assert orthogonal_slice(vol, "axial", 1).tolist() == vol[1, 0].tolist()
    assert orthogonal_slice(vol, "coronal", 2).shape == (2, 4)
    assert orthogonal_slice(vol, "sagittal", 3).tolist() == [[3, 7, 11], [15, 19, 23]]


def test_mean_or_std_alone(vw):
    vw.set_result(_volume())
    vw.view.set_shown("std")
    assert not vw.view.panels["mean", "axial"].isVisible() and vw.view.panels["std", "axial"].isVisible()
    vw.view.set_shown("mean and std")
    assert vw.view.panels["mean", "sagittal"].isVisible()


@pytest.fixture(scope="module")
def slices():
    return volume_demo(4, 16, options={"n_views": 6})


def test_reconstruct_from_the_window_equals_reconstruct_volume_and_exports(vw, qtbot, slices, tmp_path):
    tifffile = pytest.importorskip("tifffile")
    vw.set_volume_slices(VolumeSlices(slices, z_spacing=1.5))
    assert vw.view.mean_title == "direct" and vw.view.volumes["std"] is None
    assert not vw.export_action.isEnabled() and vw.reconstruct_action.isEnabled()
    vw.lam_z_box.setValue(0.5)
    with qtbot.waitSignal(vw.run_finished, timeout=120000) as finished:
        assert vw.start_run()
        assert vw.stop_action.isEnabled()
    got = finished.args[0]
    events = list(reconstruct_volume(slices, vw.run_config(), lam_z=0.5))
    assert isinstance(events[-1], VolumeFinished)
    want = events[-1].result
    assert got.mean.shape == (4, 1, 16, 16) and got.n_samples == 2 and got.complete
    assert np.allclose(got.mean, want.mean, atol=1e-6) and np.allclose(got.std, want.std, atol=1e-6)
    assert np.array_equal(vw.view.volumes["mean"], got.mean)
    assert vw.export_action.isEnabled() and not vw.stop_action.isEnabled()
    assert vw.view.truth is not None and np.array_equal(vw.view.truth[:, 0], np.stack(
        [m.ground_truth[0] for m in slices]))
    # export: TIFF, HDF5 and the result file that reopens
    assert vw.export(tmp_path / "v.tif")
    assert vw.progress_bar.maximum() == 4 and vw.progress_bar.value() == 4  # its 4 slices, written off the GUI thread
    assert vw.export(tmp_path / "v.h5", result_file=True)
    with tifffile.TiffFile(tmp_path / "v.tif") as t:
        data, meta = t.series[0].asarray(), t.imagej_metadata
    assert np.array_equal(data[:, 0], got.mean[:, 0]) and meta["spacing"] == pytest.approx(1.5)
    assert meta["unit"] == slices[0].pixel_unit or slices[0].pixel_unit == "px"
    back = read_volume(tmp_path / "v.h5")
    assert np.array_equal(back.mean, got.mean) and back.provenance["z_spacing"] == 1.5
    assert not vw.export(tmp_path / "v.png") and ".tif" in vw.last_error


def test_stop_ends_the_run_and_keeps_the_window_usable(vw, qtbot, slices):
    vw.set_volume_slices(VolumeSlices(slices))
    vw.set_config(RunConfig(**{**CONFIG.__dict__, "steps": 400, "samples": 1}))
    with qtbot.waitSignal(vw.run_finished, timeout=120000) as finished:
        assert vw.start_run()
        qtbot.waitUntil(lambda: vw.progress_bar.value() > 0, timeout=60000)
        vw.stop_run()
    assert finished.args[0] is None  # the only sample was in progress: nothing to show
    assert vw.reconstruct_action.isEnabled() and vw.view.volumes["std"] is None
    assert "stopped before any sample" in vw.log_view.toPlainText()


def test_main_window_opens_a_volume_result_in_a_volume_window(qtbot, tmp_path):
    from diffrecon.gui.main_window import MainWindow

    settings = QtCore.QSettings(str(tmp_path / "settings.ini"), QtCore.QSettings.Format.IniFormat)
    main = MainWindow(settings=settings, plan_fn=lambda m, c, stop=None: None)
    qtbot.addWidget(main)
    r = _volume()
    write_volume(tmp_path / "v.h5", r)
    assert main.open_file(tmp_path / "v.h5")
    window = main.volume_windows[-1]
    assert np.array_equal(window.view.volumes["mean"], r.mean) and window.result.units == "1/cm"
    assert main.session.measurement is None  # the 2-D session is left alone
    assert main.recent_files()[0].endswith("v.h5")
    window.close()


def test_file_menu_opens_the_volume_demo_ready_to_reconstruct(qtbot, tmp_path):
    from diffrecon.gui.main_window import MainWindow
    from diffrecon.gui.volume_job import direct_volume

    settings = QtCore.QSettings(str(tmp_path / "settings.ini"), QtCore.QSettings.Format.IniFormat)
    main = MainWindow(settings=settings, plan_fn=lambda m, c, stop=None: None)
    qtbot.addWidget(main)
    main.volume_demo_action.trigger()
    window = main.volume_windows[-1]
    slices = window.volume.slices
    assert len(slices) == 16 and slices[0].image_shape[-2:] == (64, 64) and slices[0].operator.kind == "ct"
    assert window.volume.z_spacing == pytest.approx(2 * slices[0].pixel_size)
    assert np.allclose(window.view.volumes["mean"], direct_volume(slices))
    assert window.reconstruct_action.isEnabled() and not window.export_action.isEnabled()
    window.close()


@pytest.fixture
def volume_measurement_file(tmp_path, slices):
    """The phantom slices in a volume measurement file, 3 pixels apart."""
    from diffrecon.volume import write_volume_measurement

    return write_volume_measurement(tmp_path / "stack.h5", slices, z_spacing=3.0)


def _main_window(qtbot, tmp_path):
    from diffrecon.gui.main_window import MainWindow

    settings = QtCore.QSettings(str(tmp_path / "settings.ini"), QtCore.QSettings.Format.IniFormat)
    main = MainWindow(settings=settings, plan_fn=lambda m, c, stop=None: None)
    qtbot.addWidget(main)
    main.solver.set_config(CONFIG)
    return main


def test_a_volume_measurement_opens_reconstructs_and_exports_from_the_window(qtbot, tmp_path, slices,
                                                                               volume_measurement_file):
    tifffile = pytest.importorskip("tifffile")
    main = _main_window(qtbot, tmp_path)
    assert main.open_file(volume_measurement_file), main.last_error
    window = main.volume_windows[-1]
    assert len(window.volume.slices) == 4
    assert all(np.array_equal(a.y, b.y) for a, b in zip(window.volume.slices, slices))
    assert window.view.spacing == pytest.approx((3.0 * slices[0].pixel_size, 0.1, 0.1))  # file: pixels; window: unit
    assert window.lam_z_box.value() == pytest.approx(1 / 9, abs=1e-3)  # 1 / (distance in pixels)^2, 3 decimals
    assert window.run_config().prior == "gaussian" and window.run_config().steps == 4  # the main window's settings
    with qtbot.waitSignal(window.run_finished, timeout=120000) as finished:
        assert window.start_run()
    result = finished.args[0]
    assert result.provenance["z_spacing"] == pytest.approx(0.3) and result.provenance["pixel_unit"] == slices[0].pixel_unit
    assert window.export(tmp_path / "out.tif")
    with tifffile.TiffFile(tmp_path / "out.tif") as t:
        assert t.imagej_metadata["spacing"] == pytest.approx(0.3)
        assert np.array_equal(t.series[0].asarray()[:, 1], result.std[:, 0])
    window.close()


def test_closing_the_main_window_stops_a_volume_run(qtbot, tmp_path, volume_measurement_file):
    main = _main_window(qtbot, tmp_path)
    main.solver.set_config(RunConfig(**{**CONFIG.__dict__, "steps": 400, "samples": 1}))
    assert main.open_file(volume_measurement_file)
    window = main.volume_windows[-1]
    assert window.start_run()
    qtbot.waitUntil(lambda: window.progress_bar.value() > 0, timeout=60000)
    main.close()  # waits up to CLOSE_WAIT_MS for the jobs of its windows, after asking them to stop
    assert window.job.stop_event.is_set() and not window.job.running()


def test_several_channels_are_chosen_one_at_a_time(vw):
    rng = np.random.default_rng(1)
    mean = rng.normal(size=(3, 2, 4, 5)).astype(np.float32)
    vw.set_result(VolumeResult(mean, np.abs(mean), 2, {}, None))
    assert vw.view.channel_box.isVisibleTo(vw) and vw.view.channel_box.maximum() == 1
    vw.view.channel_box.setValue(1)
    assert np.array_equal(_shown(vw, "mean", "coronal"), mean[:, 1, vw.view.cursor[1], :])
    assert np.array_equal(vw.view.profile_data()["mean"], profile_along(mean, 0, vw.view.cursor, 1))


def test_an_idle_view_stops_repainting(vw, qtbot, monkeypatch, slices):
    """With the aspect lock, tick labels that change the axis width would resize the view, change
    its range and its labels again: an endless re-layout (4 slices 0.3 cm apart, 0.1 cm pixels).
    Should it happen, the axis is given a fixed width after 500 paints so the test fails instead of
    hanging."""
    import pyqtgraph as pg

    painted, original = [], pg.AxisItem.generateDrawSpecs

    def counted(self, p):
        painted.append(self)
        if len(painted) > 500:
            self.setWidth(44)
        return original(self, p)

    monkeypatch.setattr(pg.AxisItem, "generateDrawSpecs", counted)
    vw.resize(1500, 980)  # the size at which the 4 x 16 coronal and sagittal views re-laid out forever
    vw.set_volume_slices(VolumeSlices(slices, z_spacing=0.3))
    qtbot.wait(300)
    assert len(painted) <= 500
    painted.clear()
    qtbot.wait(500)
    assert len(painted) < 5


def test_a_damaged_volume_result_is_refused_in_the_main_window(qtbot, tmp_path):
    import h5py

    main = _main_window(qtbot, tmp_path)
    write_volume(tmp_path / "v.h5", _volume())
    with h5py.File(tmp_path / "v.h5", "a") as f:
        del f["std"]
    assert not main.open_file(tmp_path / "v.h5")
    assert "dataset /std is missing" in main.last_error and "v.h5" in main.last_error
    assert not getattr(main, "volume_windows", [])
