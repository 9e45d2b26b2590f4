"""The problem registry: every preset builds its forward model from typed, checked options, and
every forward model says how it is shown and which sampling can be changed afterwards."""
from __future__ import annotations

import numpy as np
import pytest

from diffrecon import resimulate as rs
from diffrecon.demo import make_demo
from diffrecon.errors import InputError
from diffrecon.operators import OPERATORS
from diffrecon.problems import (FORWARD_MODELS, PROBLEMS, build, demo_names, display_of, forward_model, parse_options,
                                problem, simulate_names, simulate_options)


def _size(name: str) -> int:
    return 8 if name == "rf" else 16


def test_every_operator_kind_has_a_forward_model_entry():
    assert set(FORWARD_MODELS) == set(OPERATORS)


@pytest.mark.parametrize("name", PROBLEMS)
def test_each_preset_builds_its_declared_operator_kind_from_its_defaults(name):
    p = problem(name)
    op = build(name, (1, _size(name), _size(name)), noise=0.05, seed=1)
    assert op.kind == p.kind and op.noise_sigma == 0.05
    assert p.resolve() == p.defaults  # every default is one of its option's valid values


@pytest.mark.parametrize("name", demo_names())
def test_each_demo_overrides_only_options_of_its_preset_with_valid_values(name):
    p = problem(name)
    assert set(p.demo.options) <= {o.name for o in p.options}
    resolved = p.resolve(p.demo.options)
    assert all(resolved[k] == v for k, v in p.demo.options.items())


@pytest.mark.parametrize("name, option", [(n, o) for n in PROBLEMS for o in PROBLEMS[n].options])
def test_each_option_refuses_a_value_outside_its_valid_ones_naming_it(name, option):
    if option.choices:
        bad = "bogus" if option.kind is str else max(option.choices) + 1
    elif option.low is not None:
        bad = option.kind(option.low - 1)
    else:
        bad = float("nan")
    with pytest.raises(InputError, match=f"Option {option.name}=.* of {name} is invalid; valid values are"):
        build(name, (1, _size(name), _size(name)), {option.name: bad})


def test_unknown_option_is_refused_with_the_valid_ones():
    with pytest.raises(InputError, match="Option 'views' does not apply to ct; valid options are n_views"):
        build("ct", (1, 16, 16), {"views": 3})


def test_options_from_the_command_line_take_their_option_types():
    typed = parse_options("mri", {"acceleration": "6", "center_fraction": "none", "coils": "3", "mask_kind": "equispaced",
                                  "other": "x"})
    assert typed == {"acceleration": 6.0, "center_fraction": None, "coils": 3, "mask_kind": "equispaced", "other": "x"}
    assert isinstance(typed["coils"], int) and isinstance(typed["acceleration"], float)
    with pytest.raises(InputError, match="n_views of ct must be an integer"):
        parse_options("ct", {"n_views": "2.5"})


def test_simulate_offers_the_presets_marked_for_it_with_their_defaults():
    assert tuple(simulate_options()) == simulate_names() == tuple(n for n, p in PROBLEMS.items() if p.simulate)
    assert simulate_options()["ct"] == {"n_views": 30}


def test_multichannel_image_is_refused_by_single_channel_problems():
    for name in (n for n, p in PROBLEMS.items() if p.single_channel):
        with pytest.raises(InputError, match="single-channel"):
            build(name, (3, 16, 16))


@pytest.mark.parametrize("name", demo_names())
def test_display_hint_matches_the_measurement(name):
    m = make_demo(name, size=_size(name))
    shown = display_of(m)
    assert shown is forward_model(m.operator.kind).display
    if shown.mode == "kspace":
        assert np.iscomplexobj(m.y) and shown.complex_view == "log magnitude"
    if shown.mode == "sinogram":  # one row per view
        assert m.y.shape[-2] == len(m.operator.arrays["angles_deg"])
    assert shown.in_image_units == (shown.mode == "image")


def test_a_kind_without_an_entry_is_shown_as_an_image_and_keeps_its_sampling():
    model = forward_model("future_kind")
    assert model.display.mode == "image" and model.resampling is None


@pytest.mark.parametrize("name", [n for n in demo_names() if forward_model(PROBLEMS[n].kind).resampling])
def test_resampling_with_the_files_own_settings_keeps_its_sampling_density(name):
    m = make_demo(name, size=32)
    opts = rs.options(m)
    assert opts.available and opts.settings
    values = {s.name: s.value for s in opts.settings}
    again = rs.resimulate(m, values, seed=5)
    before, after = m.operator.arrays, again.operator.arrays
    for key in set(before) & {"mask", "angles_deg"}:
        a, b = np.asarray(before[key]), np.asarray(after[key])
        assert a.size == b.size and np.mean(a) == pytest.approx(np.mean(b), rel=0.02)
    assert again.y.shape == m.y.shape and again.attrs["derivation"].endswith(f"from {rs.source_name(m)}")


def test_robust_levels_ignore_one_hot_pixel_and_non_finite_values():
    from diffrecon.display import robust_levels, robust_range

    a = np.linspace(0.0, 1.0, 10_000).reshape(100, 100)
    a[0, 0], a[0, 1], a[0, 2] = 1e6, np.nan, -np.inf
    lo, hi = robust_levels(a)
    assert lo == pytest.approx(0.005, abs=1e-3) and hi == pytest.approx(0.995, abs=1e-3)
    assert robust_levels(a - 0.5, symmetric=True) == pytest.approx((-0.495, 0.495), abs=1e-3)
    assert robust_range(np.full((2, 2), np.nan)) is None and robust_levels(np.full((2, 2), np.nan)) == (0.0, 1.0)
    assert robust_levels(np.ones((3, 3)))[1] > 1.0  # a flat image still gets a non-empty interval


def test_only_patterns_drawn_at_random_offer_a_mask_kind():
    kinds = {name: rs.options(make_demo(name, size=16)).mask_kinds for name in ("mri", "inpaint", "ct", "deblur")}
    assert kinds == {"mri": rs.MASK_KINDS, "inpaint": (), "ct": (), "deblur": ()}
