"""What the result view shows, offscreen: images fill their panels, linked zoom, the live
estimate, complex views, ROI statistics, A/B swipe and difference, the theme (plot backgrounds and
the line-profile legend) and the compare-solvers action. Each test states its claim in its name
and checks it numerically."""
import os

os.environ["QT_QPA_PLATFORM"] = "offscreen"

import dataclasses  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

pytest.importorskip("PySide6")
from PySide6 import QtWidgets  # noqa: E402

from gui_windows import CountingPlan, make_denoise16_window, make_shown_window  # noqa: E402,F401,F811 - fixtures

from diffrecon.demo import make_demo  # noqa: E402
from diffrecon.engine import RunConfig  # noqa: E402
from diffrecon.gui.ab_view import swipe_composite  # noqa: E402

FAST = RunConfig(prior="gaussian", steps=3, samples=2, device="cpu", solver="dps")


def _run(qtbot, w, config=FAST):
    assert w.start_run(config)
    qtbot.waitUntil(lambda: w._run_done, timeout=60000)
    w.worker.wait(5000)
    return w.result


def test_images_fill_their_panels_after_load_and_resize(qtbot, make_shown_window):
    w = make_shown_window(make_demo("denoise", size=64))
    qtbot.wait(50)
    for key in ("direct", "truth"):
        (x0, x1), (y0, y1) = w.view.panels[key].plot.vb.viewRange()
        # fitted: one axis spans exactly the image, the other at least (aspect locked)
        assert min(x1 - x0, y1 - y0) == pytest.approx(64, abs=0.5)
        assert max(x1 - x0, y1 - y0) < 64 * 1.6
    w.resize(900, 1000)
    qtbot.wait(100)
    (x0, x1), (y0, y1) = w.view.panels["direct"].plot.vb.viewRange()
    assert min(x1 - x0, y1 - y0) == pytest.approx(64, abs=0.5)


def test_user_zoom_on_mean_is_followed_by_std_panel(qtbot, make_shown_window):
    w = make_shown_window()
    _run(qtbot, w)
    mean, std = w.view.panels["mean"], w.view.panels["std"]
    mean.plot.vb.setRange(xRange=(4, 12), yRange=(4, 12), padding=0)
    mean.plot.vb.sigRangeChangedManually.emit([True, True])
    (x0, x1), (y0, y1) = std.plot.vb.viewRange()
    assert x0 <= 4.01 and x1 >= 11.99 and y0 <= 4.01 and y1 >= 11.99
    assert min(x1 - x0, y1 - y0) == pytest.approx(8, abs=0.01)
    assert not w.view.panels["mean"].group.fitted


def test_live_estimate_panel_holds_the_last_preview_at_the_end_of_a_run(qtbot, make_shown_window):
    w = make_shown_window()
    previews = []
    from diffrecon.engine import run as engine_run

    def recording(m, config, *, stop):
        for event in engine_run(m, config, stop=stop):
            if type(event).__name__ == "Preview":
                previews.append(event)
            yield event

    w.engine_run = recording
    _run(qtbot, w, dataclasses.replace(FAST, steps=4))
    np.testing.assert_allclose(w.view.panels["estimate"].data, previews[-1].x0_hat[0], rtol=1e-6)
    assert previews[-1].step == 4 and "step 4" in w.view.panels["estimate"].title()


def test_complex_mri_panels_offer_phase_real_imaginary_and_log_magnitude(make_shown_window):
    m = make_demo("mri", size=32)
    w = make_shown_window(m)
    panel = w.view.panels["measurement"]
    k = np.asarray(m.y)
    while k.ndim > 2:
        k = k[0]
    assert panel.mode_box.isVisibleTo(panel) and panel.complex_mode() == "log magnitude"
    mag = np.abs(k)
    np.testing.assert_allclose(panel.data, np.log10(mag + 1e-6 * mag.max()), rtol=1e-5, atol=1e-6)
    panel.set_complex_mode("phase")
    np.testing.assert_allclose(panel.data, np.angle(k), atol=1e-6)
    assert tuple(panel.colorbar.levels()) == pytest.approx((-np.pi, np.pi))
    panel.set_complex_mode("real")
    np.testing.assert_allclose(panel.data, k.real, rtol=1e-6)
    panel.set_complex_mode("imaginary")
    np.testing.assert_allclose(panel.data, k.imag, rtol=1e-6)
    assert not w.view.panels["truth"].mode_box.isVisibleTo(w.view.panels["truth"])  # real data: no selector


def test_roi_statistics_equal_numpy_on_the_same_slice_for_mean_and_std(qtbot, make_shown_window):
    w = make_shown_window()
    _run(qtbot, w)
    w.roi.set_bounds((3, 17, 5, 29))
    assert w.roi.bounds() == (3, 17, 5, 29)
    mean, std = w.view.mean[3:17, 5:29], w.view.std[3:17, 5:29]
    stats = w.roi.stats()
    np.testing.assert_allclose(stats["mean"], (mean.mean(), mean.std(), mean.min(), mean.max()), rtol=1e-6)
    np.testing.assert_allclose(stats["std"], (std.mean(), std.std(), std.min(), std.max()), rtol=1e-6)
    assert w.roi.table.item(0, 0).text() == f"{mean.mean():.4g}"
    assert w.roi.table.item(3, 1).text() == f"{std.max():.4g}"
    assert tuple(w.roi.mirror.pos()) == (5, 3) and tuple(w.roi.mirror.size()) == (24, 14)  # mirrored on std


def test_pinned_a_and_new_result_b_give_exact_swipe_and_difference(qtbot, make_shown_window):
    w = make_shown_window()
    a = _run(qtbot, w).mean[0].astype(np.float32)
    assert w.pin_result_as_a()
    b = _run(qtbot, w, dataclasses.replace(FAST, seed=5)).mean[0].astype(np.float32)
    ab = w.view.ab
    assert ab.comparable() and not np.array_equal(a, b)
    np.testing.assert_array_equal(ab.difference.data, a - b)
    assert ab.difference.colorbar.levels()[0] == -ab.difference.colorbar.levels()[1]  # symmetric map
    ab.set_divider(10)
    np.testing.assert_array_equal(ab.swipe.data[:, :10], a[:, :10])
    np.testing.assert_array_equal(ab.swipe.data[:, 10:], b[:, 10:])
    np.testing.assert_array_equal(swipe_composite(a, b, 0), b)


def test_result_file_opened_as_a_compares_with_current_result(qtbot, make_shown_window, tmp_path):
    w = make_shown_window()
    a = _run(qtbot, w).mean[0]
    assert w.export(tmp_path / "a.h5", "result")
    b = _run(qtbot, w, dataclasses.replace(FAST, seed=3)).mean[0]
    assert w.open_a_file(tmp_path / "a.h5")
    np.testing.assert_allclose(w.view.ab.difference.data, a - b, rtol=1e-5, atol=1e-7)
    assert not w.open_a_file(tmp_path / "missing.h5") and "missing.h5" in w.message_label.text()


def test_theme_choice_is_persisted_and_turns_plot_backgrounds_dark(make_shown_window):
    w = make_shown_window()
    w.set_theme("dark")
    assert w.settings.value("view/theme") == "dark" and w.dark
    assert w.view.panels["mean"].graphics.backgroundBrush().color().lightness() < 50
    palette = QtWidgets.QApplication.palette()
    assert palette.color(palette.ColorRole.Window).lightness() < 100
    w.set_theme("light")
    assert not w.dark and w.view.panels["mean"].graphics.backgroundBrush().color().lightness() > 200
    assert w.theme_actions["light"].isChecked() and not w.theme_actions["dark"].isChecked()


def test_compare_solvers_action_has_ctrl_k_and_is_enabled_only_when_importable(make_shown_window):
    from diffrecon.gui.menus import compare_window_class

    w = make_shown_window()
    cls, reason = compare_window_class()
    assert w.compare_action.shortcut().toString() == "Ctrl+K"
    assert w.compare_action.isEnabled() == (cls is not None)
    assert (reason in w.compare_action.toolTip()) if cls is None else reason == ""


def _legend_html(w):
    return [label.item.toHtml() for _sample, label in w.profile.plot.getPlotItem().legend.items]


def test_profile_legend_text_is_light_in_dark_theme_and_dark_in_light_theme(make_denoise16_window):
    w = make_denoise16_window(CountingPlan())
    w.set_theme("dark")
    html = _legend_html(w)
    assert len(html) == 2 and all("#c8c8c8" in h for h in html)  # (200, 200, 200)
    w.set_theme("light")
    assert all("#282828" in h for h in _legend_html(w))  # (40, 40, 40)

