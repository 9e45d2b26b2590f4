"""The window's Qt-free session model: it opens every supported file, says which choices an
importer made, offers the compatible solvers, the direct reconstruction, re-simulation and
export, and tells subscribers each change; importing it loads no Qt."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from test_importers import write_dxchange, write_fastmri, write_nxtomo
from diffrecon import resimulate as rs
from diffrecon.demo import make_demo
from diffrecon.engine import RunConfig
from diffrecon.errors import InputError
from diffrecon.io import read_result, write_measurement, write_result
from diffrecon.measurement import Result
from diffrecon.session import MeasurementChanged, RecipeChanged, ResultChanged, Session
from diffrecon.solvers import SOLVERS

ROOT = Path(__file__).resolve().parents[1]


def _session():
    s, events = Session(), []
    s.subscribe(events.append)
    return s, events


def _result(m, seed=7):
    mean = np.asarray(m.ground_truth, np.float32) + 0.5
    return Result(mean=mean, std=np.full_like(mean, 0.1), samples=np.stack([mean, mean + 1]), n_samples=2,
                  metrics={"psnr": 20.0}, provenance={"solver": "dps", "steps": 4, "samples": 2, "seed": seed},
                  units=m.units, measurement=m)


def test_importing_the_session_loads_no_qt(tmp_path):
    path = tmp_path / "m.h5"
    write_measurement(path, make_demo("denoise", size=16))
    code = ("import sys; from diffrecon.session import Session; s = Session(); s.open(sys.argv[1]); "
            "s.direct_reconstruction(); s.compatible_solvers(); print(any(m.startswith(('PySide', 'shiboken', "
            "'superqt', 'pyqtgraph')) for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("fmt, writer, kind, choice", [
    ("fastmri", write_fastmri, "mri", "slice 1"),
    ("dxchange", write_dxchange, "ct", "detector row 1"),
    ("nxtomo", write_nxtomo, "ct", "detector row 1"),
])
def test_open_reads_each_import_format_with_its_default_choices_named(tmp_path, fmt, writer, kind, choice):
    path = tmp_path / f"{fmt}.h5"
    writer(path)
    s, events = _session()
    opened = s.open(path)
    assert opened.fmt == fmt and s.measurement.operator.kind == kind and s.path == path
    assert choice in s.note and "default" in s.note
    assert [type(e) for e in events] == [MeasurementChanged, ResultChanged]
    assert events[0].measurement is s.measurement and events[0].origin == "file" and events[0].note == s.note
    assert events[1].result is None


def test_open_reads_an_image_as_a_simulated_measurement_of_it(tmp_path):
    truth = np.linspace(0.0, 2.0, 16 * 16, dtype=np.float32).reshape(16, 16)
    tifffile.imwrite(tmp_path / "x.tif", truth)
    s, _ = _session()
    assert s.open(tmp_path / "x.tif").fmt == "image"
    np.testing.assert_array_equal(s.measurement.ground_truth[0], truth)
    assert s.measurement.noise_sigma == pytest.approx(0.05 * 2.0) and "5%" in s.note


def test_open_refuses_an_hdf5_file_of_no_known_layout_naming_it(tmp_path):
    import h5py

    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["something"] = np.zeros(3)
    s, events = _session()
    with pytest.raises(InputError, match="other.h5 is neither a diffrecon measurement or result nor"):
        s.open(tmp_path / "other.h5")
    assert events == [] and s.measurement is None


def test_opening_a_result_restores_its_settings_and_result(tmp_path):
    m = make_demo("denoise", size=16)
    write_result(tmp_path / "r.h5", _result(m))
    s, events = _session()
    s.open(tmp_path / "r.h5")
    assert [type(e) for e in events] == [MeasurementChanged, ResultChanged, RecipeChanged, ResultChanged]
    assert s.config.steps == 4 and s.config.seed == 7 and isinstance(s.config, RunConfig)
    np.testing.assert_allclose(s.result.mean, m.ground_truth + 0.5, rtol=1e-6)
    assert events[-1].from_file


def test_compatible_solvers_name_every_solver_and_the_reason_one_cannot_serve():
    s, _ = _session()
    s.set_measurement(make_demo("denoise", size=16))
    op = s.operator()
    offered = s.compatible_solvers()
    assert set(offered) == set(SOLVERS)
    assert offered == {name: info.unmet_need(op) for name, info in SOLVERS.items()}
    assert offered["dps"] is None  # gradient guidance serves any forward model
    assert s.operator() is op  # built once per measurement


def test_direct_reconstruction_of_a_denoising_measurement_is_its_wiener_shrunk_data():
    s, _ = _session()
    m = make_demo("denoise", size=16)
    s.set_measurement(m)
    y = np.asarray(m.y, np.float64)
    gamma = m.noise_sigma ** 2 / np.mean(y ** 2)  # noise over signal power, ||A|| = 1
    np.testing.assert_allclose(s.direct_reconstruction(), y / (1 + gamma), rtol=1e-4, atol=1e-6)


def test_resimulate_derives_from_the_files_measurement_and_tells_it():
    m = make_demo("mri", size=32)
    s, events = _session()
    s.set_measurement(m)
    derived = s.resimulate({"acceleration": 8.0})
    assert s.measurement is derived and s.file_measurement is m
    assert rs.mask_acceleration(derived.operator.arrays["mask"]) == pytest.approx(8.0, rel=0.15)
    assert events[-2].origin == "derived" and events[-2].measurement is derived
    s.use(m)
    assert events[-2].origin == "original" and s.measurement is m


def test_export_writes_maps_through_io_export_and_the_whole_result_as_hdf5(tmp_path):
    m = make_demo("denoise", size=16)
    s, _ = _session()
    s.set_measurement(m)
    with pytest.raises(InputError, match="no result"):
        s.export(tmp_path / "x.tif")
    s.set_result(_result(m))
    s.export(tmp_path / "mean.tif", "mean")
    s.export(tmp_path / "error.tif", "error")
    s.export(tmp_path / "all.h5", "result")
    np.testing.assert_allclose(tifffile.imread(tmp_path / "mean.tif"), m.ground_truth[0] + 0.5, rtol=1e-6)
    np.testing.assert_allclose(tifffile.imread(tmp_path / "error.tif"), 0.5, rtol=1e-6)
    np.testing.assert_allclose(read_result(tmp_path / "all.h5").samples[1], m.ground_truth + 1.5, rtol=1e-6)


def test_an_unsubscribed_callback_hears_nothing_more():
    s, events = _session()
    heard = []
    stop = s.subscribe(heard.append)
    s.set_planned("plan")
    stop()
    s.set_planned(None)
    assert len(heard) == 1 and heard[0].planned == "plan" and len(events) == 2
