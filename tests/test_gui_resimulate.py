"""Retrospective re-simulation (Qt-free module) and its controls in the forward-model panel.
Each test states its claim in its name and checks it numerically."""
import dataclasses
import os

os.environ["QT_QPA_PLATFORM"] = "offscreen"

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from diffrecon.demo import make_demo  # noqa: E402
from diffrecon.errors import InputError  # noqa: E402
from diffrecon import resimulate as rs  # noqa: E402
from diffrecon.operators import MRI, Inpaint, ParallelBeamCT, cartesian_mask, random_mask  # noqa: E402


def _full_kspace(size=32):
    """Fully sampled single-coil k-space of the MRI demo's phantom, no ground truth in the file."""
    m = make_demo("mri", size=size)
    op = MRI(m.image_shape, np.ones((size, size), bool), noise_sigma=m.noise_sigma)
    y = op.simulate(torch.as_tensor(m.ground_truth)[None], torch.Generator().manual_seed(1))[0].numpy()
    return dataclasses.replace(m, y=y, operator=op.to_spec(), ground_truth=None)


def test_mri_from_truth_has_acceleration_8_and_y_is_A_truth_plus_seeded_noise():
    m = make_demo("mri", size=32)
    d = rs.resimulate(m, {"acceleration": 8.0}, seed=3)
    mask = d.operator.arrays["mask"]
    assert rs.mask_acceleration(mask) == 8.0 and rs.sampled_columns(mask).sum() == 4
    op = MRI((1, 32, 32), cartesian_mask((32, 32), 8.0, None, "random", 3), noise_sigma=m.noise_sigma)
    expected = op.simulate(torch.as_tensor(m.ground_truth)[None], torch.Generator().manual_seed(3))[0].numpy()
    np.testing.assert_allclose(d.y, expected, atol=1e-6)
    assert np.all(d.y[:, ~mask] == 0)
    assert d.noise_sigma == m.noise_sigma and "x8" in d.title and rs.is_derived(d)
    assert np.asarray(m.operator.arrays["mask"]).mean() == pytest.approx(0.25, abs=0.02)  # the file is untouched


def test_fully_sampled_kspace_is_undersampled_by_masking_the_file_data_exactly():
    m = _full_kspace()
    opts = rs.options(m)
    assert opts.available and "fully sampled" in opts.reason and opts.settings[0].value == 1.0
    d = rs.resimulate(m, {"acceleration": 4.0, "center_fraction": 0.125}, mask_kind="equispaced")
    mask = d.operator.arrays["mask"]
    assert rs.mask_acceleration(mask) == 4.0
    assert rs.sampled_columns(mask)[14:18].all()  # the 4 central columns (0.125 of 32)
    np.testing.assert_array_equal(d.y, m.y * mask)


def test_undersampled_kspace_without_truth_is_refused_with_the_reason():
    m = dataclasses.replace(make_demo("mri", size=32), ground_truth=None)
    opts = rs.options(m)
    assert not opts.available and "x4" in opts.reason and "no ground truth" in opts.reason
    with pytest.raises(InputError, match="no ground truth"):
        rs.resimulate(m, {"acceleration": 8.0})


def test_inpaint_missing_half_and_ct_12_views_equal_their_operators_on_the_truth():
    m = make_demo("inpaint", size=32)
    d = rs.resimulate(m, {"missing_fraction": 0.5}, seed=2)
    mask = d.operator.arrays["mask"]
    assert 1 - mask.mean() == 0.5
    op = Inpaint((1, 32, 32), random_mask((1, 32, 32), 0.5, 2), noise_sigma=m.noise_sigma)
    expected = op.simulate(torch.as_tensor(m.ground_truth)[None], torch.Generator().manual_seed(2))[0].numpy()
    np.testing.assert_allclose(d.y, expected, atol=1e-6)

    c = make_demo("ct", size=32)
    d = rs.resimulate(c, {"views": 12})
    angles = d.operator.arrays["angles_deg"]
    np.testing.assert_allclose(angles, np.arange(12) * 15.0)
    op = ParallelBeamCT((1, 32, 32), angles, c.operator.params["n_detectors"], c.noise_sigma,
                        c.operator.params["pixel_size"])
    expected = op.simulate(torch.as_tensor(c.ground_truth)[None], torch.Generator().manual_seed(0))[0].numpy()
    assert d.y.shape == (1, 12, c.y.shape[-1])
    np.testing.assert_allclose(d.y, expected, atol=1e-5)


def test_invalid_values_get_one_sentence_per_setting():
    mri = make_demo("mri", size=32)
    bad = rs.problems(mri, {"acceleration": 0.5, "center_fraction": None})
    assert list(bad) == ["acceleration"] and "from 1 to 32" in bad["acceleration"]
    bad = rs.problems(mri, {"acceleration": 8.0, "center_fraction": 0.2})
    assert list(bad) == ["center_fraction"] and "0.125" in bad["center_fraction"]
    assert rs.problems(mri, {"acceleration": float("nan")}).keys() == {"acceleration"}
    assert rs.problems(make_demo("ct", size=32), {"views": 2.5}).keys() == {"views"}
    assert rs.problems(make_demo("inpaint", size=32), {"missing_fraction": 1.0}).keys() == {"missing_fraction"}
    assert rs.problems(mri, {"acceleration": 6.0, "center_fraction": 0.1}) == {}


# ------------------------------------------------------------------------------ the panel
pytest.importorskip("PySide6")


@pytest.fixture
def window(qtbot, tmp_path):
    from PySide6 import QtCore

    from diffrecon.gui.main_window import MainWindow
    settings = QtCore.QSettings(str(tmp_path / "settings.ini"), QtCore.QSettings.Format.IniFormat)
    w = MainWindow(settings=settings, plan_fn=lambda m, c: (_ for _ in ()).throw(InputError("no plan in tests")))
    qtbot.addWidget(w)
    return w


def test_panel_resimulates_mri_x8_shows_it_as_derived_and_goes_back_to_the_file(window):
    m = make_demo("mri", size=32)
    window.set_measurement(m)
    panel = window.forward.sampling
    assert panel.isVisibleTo(window) and float(panel.edits["acceleration"].text()) == 4.0
    panel.edits["acceleration"].setText("8")
    panel.apply_button.click()
    derived = window.forward.edited_measurement()
    assert rs.mask_acceleration(derived.operator.arrays["mask"]) == 8.0 and derived is window.measurement
    assert "x8" in panel.origin.text() and panel.revert_button.isEnabled()
    shown = window.view.panels["measurement"].source
    assert np.count_nonzero(np.abs(shown).sum(axis=0)) == 4  # the k-space panel shows 4 columns
    panel.revert_button.click()
    assert window.measurement.y is m.y and float(panel.edits["acceleration"].text()) == 4.0
    assert not panel.revert_button.isEnabled()


def test_invalid_acceleration_gets_red_border_and_tooltip_and_is_not_applied(window):
    window.set_measurement(make_demo("mri", size=32))
    edit = window.forward.sampling.edits["acceleration"]
    edit.setText("0.5")
    assert "#d04040" in edit.styleSheet() and "from 1 to 32" in edit.toolTip()
    assert not window.forward.sampling.apply_button.isEnabled()
    assert window.forward.sampling.apply() is False and not rs.is_derived(window.measurement)
    edit.setText("6")
    assert edit.styleSheet() == "" and window.forward.sampling.apply_button.isEnabled()


def test_controls_are_disabled_with_the_reason_without_full_kspace_or_truth(window):
    window.set_measurement(dataclasses.replace(make_demo("mri", size=32), ground_truth=None))
    edit = window.forward.sampling.edits["acceleration"]
    assert not edit.isEnabled() and "no ground truth" in edit.toolTip()
    assert not window.forward.sampling.apply_button.isEnabled()
    window.set_measurement(make_demo("deblur", size=32))
    assert window.forward.sampling.isHidden() and window.forward.sampling.edits == {}
