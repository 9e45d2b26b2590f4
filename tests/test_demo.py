"""Demo measurements: shapes, physical units, noise level, reproducibility, bundled files."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from diffrecon.demo import DEMO_KINDS, demo_path, make_demo
from diffrecon.errors import InputError
from diffrecon.io import read_measurement
from diffrecon.operators import build_operator


def _size(kind: str) -> int:
    return 16 if kind == "rf" else 32


@pytest.mark.parametrize("kind", DEMO_KINDS)
def test_demo_residual_matches_its_declared_noise_level(kind):
    m = make_demo(kind, size=_size(kind), seed=1)
    op = build_operator(m.operator)
    assert m.y.shape == tuple(op.meas_shape)
    assert m.y.dtype == (np.complex64 if op.is_complex else np.float32)
    assert m.ground_truth.shape == (1, _size(kind), _size(kind))
    lo, hi = m.value_range
    assert m.ground_truth.min() >= lo - 1e-6 and m.ground_truth.max() <= hi + 1e-6
    assert m.ground_truth.max() > lo + 0.5 * (hi - lo)  # the phantom fills the range, not a corner of it
    assert m.noise_sigma > 0 and m.operator.noise_sigma == m.noise_sigma
    residual = m.y - op.A(torch.from_numpy(m.ground_truth)[None])[0].numpy()
    rms = np.sqrt(np.sum(np.abs(residual) ** 2) / op.measurement_dof)
    assert rms == pytest.approx(m.noise_sigma, rel=0.15)


def test_demo_noise_levels_follow_the_documented_rules():
    assert make_demo("denoise", size=16).noise_sigma == pytest.approx(0.1)
    assert make_demo("inpaint", size=16).noise_sigma == pytest.approx(0.01)
    ct = make_demo("ct", size=32)
    clean = build_operator(ct.operator).A(torch.from_numpy(ct.ground_truth)[None])
    assert ct.noise_sigma == pytest.approx(0.01 * float(clean.max()), rel=1e-5)
    assert ct.units == "1/cm" and ct.value_range == (0.0, 0.4) and (ct.pixel_size, ct.pixel_unit) == (0.1, "cm")
    assert make_demo("denoise", size=16, noise=0.25).noise_sigma == 0.25


def test_demo_operators_match_the_problem_description():
    ct = make_demo("ct", size=32)
    assert ct.operator.arrays["angles_deg"].shape == (30,)
    lim = make_demo("ct_limited", size=32).operator.arrays["angles_deg"]
    assert lim.shape == (60,) and lim.max() < 90.0
    mri = make_demo("mri", size=32).operator.arrays["mask"]
    assert mri.mean() == pytest.approx(0.25, abs=0.02)
    assert make_demo("mri_multicoil", size=32).operator.arrays["coil_maps"].shape == (8, 32, 32)
    assert make_demo("inpaint", size=32).operator.arrays["mask"].mean() == pytest.approx(0.3, abs=0.01)
    assert make_demo("sr", size=32).y.shape == (1, 8, 8)
    rf = make_demo("rf")
    assert rf.image_shape == (1, 32, 32) and rf.operator.params["n_antennas"] == 16


def test_same_seed_gives_same_measurement_and_other_seed_differs():
    a, b, c = (make_demo("deblur", size=16, seed=s) for s in (4, 4, 5))
    np.testing.assert_array_equal(a.y, b.y)
    assert np.abs(a.y - c.y).mean() > 1e-3 and np.abs(a.ground_truth - c.ground_truth).mean() > 1e-3


def test_phantom_seed_changes_only_the_phantom_and_acceleration_only_the_mri_mask():
    from diffrecon.phantoms import TEST_SEEDS, VALIDATION_SEEDS

    test, same = make_demo("inpaint", 16, 1), make_demo("inpaint", 16, 1, phantom_seed=TEST_SEEDS[1])
    np.testing.assert_array_equal(test.y, same.y)
    val = make_demo("inpaint", 16, 1, phantom_seed=VALIDATION_SEEDS[0])
    np.testing.assert_array_equal(val.operator.arrays["mask"], test.operator.arrays["mask"])
    assert np.abs(val.ground_truth - test.ground_truth).mean() > 1e-3
    x4, x8 = make_demo("mri", 32, 0), make_demo("mri", 32, 0, acceleration=8)
    assert x4.operator.arrays["mask"].mean() == 0.25 and x8.operator.arrays["mask"].mean() == 0.125
    np.testing.assert_array_equal(x4.ground_truth, x8.ground_truth)
    assert "x8" in x8.title and "x4" in x4.title


@pytest.mark.parametrize("bad", [dict(kind="xray"), dict(kind="ct", size=2), dict(kind="ct", seed=-1),
                                 dict(kind="ct", noise=float("nan")), dict(kind="ct", acceleration=4),
                                 dict(kind="mri", acceleration=0.5), dict(kind="ct", seed=-1, phantom_seed=3)])
def test_bad_demo_settings_raise_input_error(bad):
    with pytest.raises(InputError):
        make_demo(**bad)


@pytest.mark.parametrize("kind", DEMO_KINDS)
def test_bundled_demo_file_reads_back_at_default_size(kind):
    m = read_measurement(demo_path(kind))
    assert m.image_shape == ((1, 32, 32) if kind == "rf" else (1, 128, 128))
    assert m.attrs["demo_kind"] == kind and m.ground_truth is not None and np.isfinite(m.y).all()


def test_demo_measurement_of_any_image_uses_the_demo_units_and_relative_noise():
    from diffrecon.demo import demo_measurement

    img = np.linspace(0.0, 1.0, 24 * 24).reshape(24, 24)
    m = demo_measurement("ct", img, seed=2)
    np.testing.assert_allclose(m.ground_truth[0], 0.4 * img, rtol=1e-6)
    clean = build_operator(m.operator).A(torch.from_numpy(m.ground_truth)[None])[0].numpy()
    assert m.noise_sigma == pytest.approx(0.01 * np.abs(clean).max(), rel=1e-5) and m.units == "1/cm"
    assert np.std(m.y - clean) == pytest.approx(m.noise_sigma, rel=0.1)
    assert demo_measurement("inpaint", img, options={"fraction_missing": 0.25}).operator.arrays["mask"].mean() == \
        pytest.approx(0.75, abs=0.01)


def test_a_demo_measurements_title_names_the_options_it_was_measured_with():
    import numpy as np

    from diffrecon.demo import demo_measurement

    image = np.zeros((32, 32))
    assert demo_measurement("ct", image, options={"n_views": 8}).title == "Sparse-view CT, 8 views"
    assert demo_measurement("ct_limited", image, options={"range_deg": 45.0, "n_views": 12}).title == \
        "Limited-angle CT, 45 degrees, 12 views"
