"""Measurement and result files: round trips, atomic writes and refusal of bad files."""
from __future__ import annotations

import functools
import os

import h5py
import numpy as np
import pytest
import torch

from diffrecon.demo import DEMO_KINDS, make_demo
from diffrecon.errors import InputError
from diffrecon.io import describe, read_measurement, read_result, write_measurement, write_result
from diffrecon.measurement import FORMAT_VERSION, Measurement, Result
from diffrecon.operators import OPERATORS, OperatorSpec, build_operator


@functools.lru_cache(maxsize=1)
def _demos_by_operator() -> dict[str, str]:
    out = {}
    for demo in DEMO_KINDS:
        try:
            out.setdefault(make_demo(demo, size=16, seed=1).operator.kind, demo)
        except InputError:  # its forward model is not in this tree (yet)
            pass
    return out


def _example(kind: str) -> Measurement:
    """A small measurement of operator ``kind``: the demo using it, else a hand-built one."""
    if kind in _demos_by_operator():
        return make_demo(_demos_by_operator()[kind], size=16, seed=1)
    if kind == "matrix":
        from diffrecon.operators import MatrixOperator
        rng = np.random.default_rng(0)
        op = MatrixOperator((1, 4, 4), rng.standard_normal((10, 16)).astype(np.float32), noise_sigma=0.05)
        x = rng.random((1, 1, 4, 4)).astype(np.float32)
        y = op.A(torch.from_numpy(x))[0].numpy()
        return Measurement(y=y, operator=op.to_spec(), noise_sigma=0.05, ground_truth=x[0])
    pytest.fail(f"no example measurement for operator kind {kind!r}; add one to _example")


def test_sparse_matrix_operator_round_trips_through_its_csr_arrays(tmp_path):
    from diffrecon.operators import MatrixOperator
    dense = np.zeros((6, 16), np.float32)
    dense[[0, 2, 5], [3, 7, 15]] = [1.5, -2.0, 0.25]
    op = MatrixOperator((1, 4, 4), torch.from_numpy(dense).to_sparse_csr(), noise_sigma=0.01)
    x = torch.arange(16, dtype=torch.float32).reshape(1, 1, 4, 4)
    m = Measurement(y=op.A(x)[0].numpy(), operator=op.to_spec(), noise_sigma=0.01)
    write_measurement(tmp_path / "s.h5", m)
    back = build_operator(read_measurement(tmp_path / "s.h5").operator)
    np.testing.assert_allclose(back.A(x)[0].numpy(), dense @ np.arange(16.0), rtol=1e-6)


def _denoise_measurement(size: int = 16) -> Measurement:
    return make_demo("denoise", size=size, seed=2)


@pytest.mark.parametrize("kind", sorted(OPERATORS))
def test_measurement_round_trip_restores_data_and_operator(tmp_path, kind):
    m = _example(kind)
    path = tmp_path / "m.h5"
    write_measurement(path, m)
    back = read_measurement(path)
    assert back.y.dtype == (np.complex64 if np.iscomplexobj(m.y) else np.float32)
    np.testing.assert_array_equal(back.y, m.y)
    np.testing.assert_array_equal(back.ground_truth, m.ground_truth)
    assert back.operator.kind == kind and tuple(back.operator.image_shape) == tuple(m.operator.image_shape)
    assert back.operator.params == m.operator.params
    assert set(back.operator.arrays) == set(m.operator.arrays)
    for name, arr in m.operator.arrays.items():
        assert back.operator.arrays[name].dtype == np.asarray(arr).dtype
        np.testing.assert_array_equal(back.operator.arrays[name], arr)
    assert back.noise_sigma == pytest.approx(m.noise_sigma) and back.operator.noise_sigma == pytest.approx(m.noise_sigma)
    assert (back.units, back.value_range, back.pixel_size, back.pixel_unit, back.title) == \
        (m.units, m.value_range, m.pixel_size, m.pixel_unit, m.title)
    # The rebuilt operator is the same forward model, not merely the same parameters.
    x = torch.from_numpy(np.asarray(m.ground_truth, dtype=np.float32))[None]
    np.testing.assert_allclose(build_operator(back.operator).A(x).numpy(), build_operator(m.operator).A(x).numpy(),
                               rtol=1e-6, atol=1e-6)
    with h5py.File(path, "r") as f:
        assert f.attrs["diffrecon_format"] == "measurement" and f.attrs["format_version"] == FORMAT_VERSION


def _result(m: Measurement, k: int = 3) -> Result:
    rng = np.random.default_rng(0)
    samples = rng.random((k, *m.image_shape)).astype(np.float32)
    return Result(mean=samples.mean(0), std=samples.std(0), samples=samples, n_samples=k,
                  metrics={"psnr": 21.5, "ssim": 0.75}, std_is_posterior=False, units=m.units, measurement=m,
                  provenance={"solver": "dps", "params": {"zeta": 0.5}, "steps": 3, "samples": k, "seed": 7,
                              "device": "cpu", "elapsed_s": 1.25}, complete=False)


def test_result_round_trip_keeps_statistics_provenance_and_nexus_errors_link(tmp_path):
    m = _denoise_measurement()
    r = _result(m)
    r.spread, r.std_is_posterior = "posterior", True
    path = tmp_path / "r.h5"
    write_result(path, r)
    back = read_result(path)
    np.testing.assert_array_equal(back.mean, r.mean)
    np.testing.assert_array_equal(back.std, r.std)
    np.testing.assert_array_equal(back.samples, r.samples)
    assert (back.n_samples, back.std_is_posterior, back.complete, back.units) == (3, True, False, m.units)
    assert back.metrics == {"psnr": 21.5, "ssim": 0.75}
    assert back.provenance["params"] == {"zeta": 0.5} and back.provenance["seed"] == 7
    assert back.provenance["elapsed_s"] == 1.25 and back.provenance["software_version"]
    np.testing.assert_array_equal(back.measurement.y, m.y)
    assert back.measurement.operator.kind == "denoise"
    assert read_measurement(path).noise_sigma == pytest.approx(m.noise_sigma)  # a result reopens as its measurement
    with h5py.File(path, "r") as f:
        p = f["posterior"]
        assert p.attrs["NX_class"] == "NXdata" and p.attrs["signal"] == "mean"
        assert isinstance(p.get("mean_errors", getlink=True), h5py.HardLink)
        assert p["mean_errors"] == p["std"]  # the same object under two names


def test_result_keeps_at_most_16_samples(tmp_path):
    r = _result(_denoise_measurement(8), k=20)
    write_result(tmp_path / "r.h5", r)
    assert read_result(tmp_path / "r.h5").samples.shape == (16, 1, 8, 8)


def test_result_written_into_a_group_reads_back_equal_and_errors_name_the_file(tmp_path):
    from diffrecon.io.result_file import read_result_from, write_result_into

    m = _denoise_measurement(8)
    r = _result(m)
    path = tmp_path / "many.h5"
    with h5py.File(path, "w") as f:
        write_result_into(f.create_group("runs/000"), r)
        f.create_group("runs/001").attrs["diffrecon_format"] = "result"
    with h5py.File(path, "r") as f:
        back = read_result_from(f["runs/000"], path)
        np.testing.assert_array_equal(back.mean, r.mean)
        np.testing.assert_array_equal(back.samples, r.samples)
        assert back.metrics == {"psnr": 21.5, "ssim": 0.75} and back.provenance["seed"] == 7
        np.testing.assert_array_equal(back.measurement.y, m.y)
        assert "mean_errors" not in f["runs/000/posterior"]  # a seed spread gets no NeXus error bars
        with pytest.raises(InputError, match=f"File {path}: "):
            read_result_from(f["runs/001"], path)


def test_atomic_write_replaces_the_target_only_when_the_writer_succeeds(tmp_path):
    from diffrecon.io.atomic import atomic_write

    def fail_half_way(tmp):
        tmp.write_text("half")
        raise RuntimeError("writer failed")

    target = tmp_path / "t.txt"
    assert atomic_write(target, lambda tmp: tmp.write_text("one")) == target
    with pytest.raises(RuntimeError, match="writer failed"):
        atomic_write(target, fail_half_way)
    assert target.read_text() == "one" and sorted(os.listdir(tmp_path)) == ["t.txt"]
    with pytest.raises(InputError, match="Cannot write .*no/such: folder .* does not exist"):
        atomic_write(tmp_path / "no" / "such", lambda tmp: None)


def test_failed_write_leaves_existing_file_untouched_and_no_temporary(tmp_path):
    path = tmp_path / "m.h5"
    good = _denoise_measurement()
    write_measurement(path, good)
    before = path.read_bytes()
    bad = _denoise_measurement()
    bad.operator = OperatorSpec("denoise", bad.operator.image_shape, arrays={"x": np.array(["a"], dtype=object)})
    with pytest.raises(ValueError):
        write_measurement(path, bad)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["m.h5"]
    np.testing.assert_array_equal(read_measurement(path).y, good.y)


# ---------------------------------------------------------------------------- bad files
def _valid(tmp_path, name="m.h5"):
    path = tmp_path / name
    write_measurement(path, _denoise_measurement())
    return path


def _mutate(tmp_path, fn):
    path = _valid(tmp_path)
    with h5py.File(path, "r+") as f:
        fn(f)
    return path


def _replace(name, value):
    def fn(f):
        del f[name]
        f[name] = value
        f[name].attrs["noise_sigma"] = 0.1
    return fn


def _replace_y(value):
    return _replace("measurement/y", value)


BAD_FILES = {
    "missing_y": (lambda f: f.__delitem__("measurement/y"), ["/measurement/y", "missing"]),
    "missing_operator": (lambda f: f.__delitem__("operator"), ["operator", "missing"]),
    "not_diffrecon": (lambda f: f.attrs.__delitem__("diffrecon_format"), ["not a diffrecon file", "diffrecon_format"]),
    "other_format": (lambda f: f.attrs.__setitem__("diffrecon_format", "spectrum"), ["'spectrum'"]),
    "newer_version": (lambda f: f.attrs.__setitem__("format_version", FORMAT_VERSION + 1),
                      [f"format_version {FORMAT_VERSION + 1}", "update diffrecon"]),
    "wrong_rank": (_replace_y(np.zeros((16, 16), np.float32)), ["/measurement/y", "(16, 16)", "(1, 16, 16)"]),
    "wrong_shape": (_replace_y(np.zeros((1, 8, 8), np.float32)), ["/measurement/y", "(1, 8, 8)"]),
    "wrong_dtype": (_replace_y(np.zeros((1, 16, 16), np.int32)), ["/measurement/y", "int32"]),
    "complex_for_real_operator": (_replace_y(np.zeros((1, 16, 16), np.complex64)), ["/measurement/y", "float32"]),
    "nan": (_replace_y(np.full((1, 16, 16), np.nan, np.float32)), ["/measurement/y", "NaN"]),
    "absurd_shape": (lambda f: (f["measurement"].__delitem__("y"),
                                f["measurement"].create_dataset("y", shape=(2**16, 2**16), dtype="f4", chunks=(8, 8))),
                     ["/measurement/y", "16 GiB"]),
    "absurd_image_shape": (lambda f: f["operator"].attrs.__setitem__("image_shape", np.array([1, 40000, 40000])),
                           ["/operator", "image_shape", "5.96 GiB"]),
    "unknown_operator": (lambda f: f["operator"].attrs.__setitem__("kind", "xray3000"), ["/operator", "xray3000"]),
    "bad_image_shape": (lambda f: f["operator"].attrs.__setitem__("image_shape", np.array([1, -4, 16])),
                        ["image_shape", "/operator"]),
    "bad_params_json": (lambda f: f["operator"].attrs.__setitem__("params", "{not json"), ["params", "JSON"]),
    "bad_noise_sigma": (lambda f: f["measurement/y"].attrs.__setitem__("noise_sigma", -1.0), ["noise_sigma"]),
    "bad_ground_truth": (_replace("measurement/ground_truth", np.zeros((2, 16, 16), np.float32)),
                         ["/measurement/ground_truth", "(2, 16, 16)"]),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_measurement_file_raises_input_error_naming_file_and_dataset(tmp_path, case):
    fn, expected = BAD_FILES[case]
    path = _mutate(tmp_path, fn)
    with pytest.raises(InputError) as info:
        read_measurement(path)
    message = str(info.value)
    assert str(path) in message
    for text in expected:
        assert text in message, (case, message)
    assert "\n" not in message


def test_not_hdf5_and_truncated_files_are_refused_with_file_named(tmp_path):
    text = tmp_path / "notes.h5"
    text.write_text("hello")
    with pytest.raises(InputError, match="not an HDF5 file") as info:
        read_measurement(text)
    assert str(text) in str(info.value)
    path = _valid(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(InputError) as info:
        read_measurement(path)
    assert str(path) in str(info.value)
    with pytest.raises(InputError, match="does not exist"):
        read_measurement(tmp_path / "missing.h5")


def test_external_link_and_virtual_dataset_are_refused_unless_allowed(tmp_path):
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["data"] = np.arange(4.0)
    path = _mutate(tmp_path, lambda f: f.__setitem__("measurement/extra", h5py.ExternalLink(str(other), "/data")))
    with pytest.raises(InputError, match="external link /measurement/extra"):
        read_measurement(path)
    assert read_measurement(path, allow_external=True).y.shape == (1, 16, 16)

    def add_virtual(f):
        layout = h5py.VirtualLayout(shape=(4,), dtype="f8")
        layout[:] = h5py.VirtualSource(str(other), "data", shape=(4,))
        f.create_virtual_dataset("virtual", layout)
    path2 = tmp_path / "v.h5"
    write_measurement(path2, _denoise_measurement())
    with h5py.File(path2, "r+") as f:
        add_virtual(f)
    with pytest.raises(InputError, match="virtual dataset") as info:
        read_measurement(path2)
    assert "/virtual" in str(info.value)
    with pytest.raises(InputError, match="external link"):
        read_result(path)


def test_bad_result_std_shape_names_posterior_std(tmp_path):
    path = tmp_path / "r.h5"
    write_result(path, _result(_denoise_measurement()))
    with h5py.File(path, "r+") as f:
        del f["posterior/std"]
        f["posterior/std"] = np.zeros((1, 4, 4), np.float32)
    with pytest.raises(InputError, match="/posterior/std") as info:
        read_result(path)
    assert "(1, 4, 4)" in str(info.value) and str(path) in str(info.value)
    with pytest.raises(InputError, match="'measurement'; expected 'result'"):
        read_result(_valid(tmp_path, "meas.h5"))


def test_describe_shows_tree_of_any_hdf5_and_summary_of_diffrecon_files(tmp_path):
    plain = tmp_path / "plain.h5"
    with h5py.File(plain, "w") as f:
        f.create_group("entry").create_dataset("counts", data=np.zeros((3, 5), np.uint16)).attrs["units"] = "counts"
    text = describe(plain)
    assert "counts  dataset (3, 5) uint16" in text and "@units = 'counts'" in text
    assert "Not a diffrecon file" in text
    path = tmp_path / "r.h5"
    r = _result(_denoise_measurement())
    r.spread, r.std_is_posterior = "posterior", True
    write_result(path, r)
    text = describe(path)
    assert "diffrecon result: 3 samples" in text and "operator denoise" in text and "psnr=21.5" in text
    assert "mean_errors  dataset (1, 16, 16) float32" in text


# ---------------------------------------------------------------------------- damaged files
def test_h5py_error_inside_open_file_becomes_one_input_error_naming_the_file(tmp_path):
    from diffrecon.io import open_readonly
    path = _valid(tmp_path)
    with pytest.raises(InputError, match="truncated or damaged") as info:
        with open_readonly(path) as f:
            f["no/such/dataset"]  # h5py's KeyError stands in for any metadata error h5py raises
    assert str(path) in str(info.value) and "KeyError" in str(info.value)


def test_error_raised_by_diffrecon_code_passes_the_damaged_file_guard_unchanged(tmp_path):
    import inspect

    from diffrecon.io import importers
    from diffrecon.io.h5 import damaged_file_guard
    # one implementation for readers and importers: importers open files through open_readonly only
    for module in (importers.fastmri, importers.tomo, importers.image, importers._common):
        assert "damaged_file_guard" not in inspect.getsource(module)
    with pytest.raises(ValueError, match="a bug, not damage") as info:
        with damaged_file_guard(tmp_path / "x.h5"):
            raise ValueError("a bug, not damage")
    assert not isinstance(info.value, InputError)


@pytest.mark.parametrize("group, key, value, reader", [
    ("operator/mask", "is_bool", np.ones((2, 2)), read_measurement),
    ("operator/mask", "is_bool", 3, read_measurement),
    ("/", "format_version", np.nan, read_measurement),
    ("posterior", "std_is_posterior", np.zeros((2, 2)), read_result),
    ("posterior", "complete", "yes", read_result),
    ("posterior", "n_samples", np.ones(4), read_result),
    ("provenance", "json_keys", "5", read_result),
])
def test_malformed_flag_or_count_attribute_raises_input_error_naming_it(tmp_path, group, key, value, reader):
    from diffrecon.io.importers import simulate
    m = simulate(np.ones((16, 16), np.float32), "inpaint", noise=0.01)
    path = tmp_path / "r.h5"
    write_result(path, _result(m))
    with h5py.File(path, "r+") as f:
        f[group].attrs[key] = value
    with pytest.raises(InputError, match=key) as info:
        reader(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_integer_flags_written_by_other_tools_read_as_booleans(tmp_path):
    path = tmp_path / "r.h5"
    write_result(path, _result(_denoise_measurement()))
    with h5py.File(path, "r+") as f:
        f["posterior"].attrs["complete"] = np.int8(0)
        f["posterior"].attrs["std_is_posterior"] = np.uint8(1)
        del f["posterior"].attrs["spread"]  # other tools write only the flag
        f["posterior"].attrs["n_samples"] = 3.0
    r = read_result(path)
    assert r.complete is False and r.std_is_posterior is True and r.n_samples == 3


# ---------------------------------------------------------------------------- import_file
def test_import_file_detects_each_layout_and_refuses_other_files(tmp_path):
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).parent))
    from test_importers import WRITERS

    from diffrecon.io import IMPORT_FORMATS, detect_import_format, import_file
    for name in IMPORT_FORMATS:
        WRITERS[name](tmp_path / f"{name}.h5")
        assert detect_import_format(tmp_path / f"{name}.h5") == name
    m = import_file(tmp_path / "dxchange.h5", size=16)
    assert m.operator.kind == "ct" and m.y.shape == (1, 45, 16)
    with pytest.raises(InputError, match="center_fraction applies only with acceleration"):
        import_file(tmp_path / "fastmri.h5", center_fraction=0.1)
    with pytest.raises(InputError, match="already a diffrecon measurement"):
        detect_import_format(_valid(tmp_path))
    with pytest.raises(InputError, match="'dicom' is unknown"):
        import_file(tmp_path / "nxtomo.h5", "dicom")
