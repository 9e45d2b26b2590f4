"""The diffrecon command line: demo, info, solvers, reconstruct, gui and its error handling."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest

import diffrecon.engine as engine
from diffrecon.cli import main
from diffrecon.io import read_result
from diffrecon.measurement import Result
from diffrecon.solvers import SOLVERS

ROOT = Path(__file__).resolve().parents[1]


def test_demo_writes_a_file_that_info_describes(tmp_path, capsys):
    out = tmp_path / "d.h5"
    assert main(["demo", "denoise", "--out", str(out), "--size", "16", "--seed", "3", "--noise", "0.05"]) == 0
    assert "noise_sigma 0.05" in capsys.readouterr().out
    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "y  dataset (1, 16, 16) float32" in text
    assert "operator denoise, image (1, 16, 16)" in text and "noise_sigma 0.05" in text


def test_solvers_lists_every_registered_solver_with_its_parameters(capsys):
    assert main(["solvers"]) == 0
    text = capsys.readouterr().out
    assert len(SOLVERS) > 0
    lines = text.splitlines()
    for name, info in SOLVERS.items():
        row = next(line for line in lines if line.startswith(name + " "))
        assert info.title in row
        assert info.spread_of().text in row  # posterior std, seed spread, prior samples or point estimate
        for field in info.Params.__dataclass_fields__:
            assert f"    {field}=" in text


@pytest.mark.parametrize("argv, expected", [
    (["info", "missing.h5"], "does not exist"),
    (["demo", "nope", "--out", "x.h5"], "invalid choice"),
    (["demo", "denoise", "--out", "no/such/folder/x.h5", "--size", "16"], "does not exist"),
    (["demo", "denoise", "--out", "x.h5", "--size", "3"], "valid sizes"),
    (["reconstruct", "missing.h5", "--out", "r.h5"], "does not exist"),
    (["reconstruct", "m.h5", "--out", "r.h5", "--device", "gpu7"], "invalid device"),
    (["reconstruct", "m.h5", "--out", "r.h5", "--steps", "0"], "must be at least 1"),
])
def test_bad_input_exits_2_with_one_line_on_stderr(tmp_path, monkeypatch, capsys, argv, expected):
    monkeypatch.chdir(tmp_path)
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2
    assert expected in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_bad_solver_parameter_exits_2_naming_the_setting(tmp_path, capsys):
    m = tmp_path / "m.h5"
    assert main(["demo", "denoise", "--out", str(m), "--size", "16"]) == 0
    name = next(iter(SOLVERS))
    assert main(["reconstruct", str(m), "--out", str(tmp_path / "r.h5"), "--solver", name, "--param", "nonsense"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err
    assert main(["reconstruct", str(m), "--out", str(tmp_path / "r.h5"), "--solver", "nosuchsolver"]) == 2
    assert "nosuchsolver" in capsys.readouterr().err
    assert not (tmp_path / "r.h5").exists()


def test_command_line_process_reports_bad_file_without_traceback(tmp_path):
    bad = tmp_path / "bad.h5"
    bad.write_text("not hdf5")
    proc = subprocess.run([sys.executable, "-m", "diffrecon.cli", "info", str(bad)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "not an HDF5 file" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_no_arguments_without_display_points_at_cli_and_offscreen(monkeypatch, capsys):
    for var in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    assert main([]) == 2
    err = capsys.readouterr().err
    assert "QT_QPA_PLATFORM=offscreen" in err and "diffrecon --help" in err and len(err.strip().splitlines()) == 1


def test_gui_command_passes_its_options_to_run_gui(monkeypatch, tmp_path):
    calls = []
    fake = types.ModuleType("diffrecon.gui.app")
    fake.run_gui = lambda path=None, **kw: calls.append((path, kw)) or 0
    monkeypatch.setitem(sys.modules, "diffrecon.gui.app", fake)
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    shot = tmp_path / "s.png"
    assert main(["gui", "m.h5", "--reconstruct", "--screenshot", str(shot), "--quit"]) == 0
    assert calls == [(Path("m.h5"), {"reconstruct": True, "screenshot": shot, "quit_after": True})]


# ---------------------------------------------------------------------------- reconstruct
def _fake_run(n_done: int, interrupt: bool):
    """An engine stand-in that sends itself SIGINT and checks the CLI turns it into a stop."""

    def run(measurement, config, *, stop=None, denoiser=None):
        yield engine.Planned("cpu", [1, 1], config.steps, config.steps, None, True, (1.0, 0.0))
        yield engine.Progress(1, config.steps, 0, config.samples, 1, 0, 2, 0.1, None, {"rss": 2**20})
        if interrupt:
            os.kill(os.getpid(), signal.SIGINT)
            deadline = time.monotonic() + 5
            while not stop.is_set() and time.monotonic() < deadline:
                time.sleep(0.01)
            assert stop.is_set()
        shape = measurement.image_shape
        mean = np.full(shape, 0.5, np.float32)
        yield engine.Finished(Result(mean=mean, std=np.full(shape, 0.1, np.float32), samples=None,
                                     n_samples=n_done, metrics={"psnr": 30.0}, provenance={"solver": config.solver},
                                     units=measurement.units, complete=not interrupt))
    return run


@pytest.mark.parametrize("n_done", [1, 0])
def test_ctrl_c_stops_cleanly_and_writes_partial_result_only_after_a_finished_sample(tmp_path, monkeypatch, capsys,
                                                                                     n_done):
    m = tmp_path / "m.h5"
    assert main(["demo", "denoise", "--out", str(m), "--size", "16"]) == 0
    monkeypatch.setattr(engine, "run", _fake_run(n_done, interrupt=True))
    out = tmp_path / "r.h5"
    rc = main(["reconstruct", str(m), "--out", str(out), "--steps", "3", "--samples", "2", "--solver", next(iter(SOLVERS))])
    err = capsys.readouterr().err
    assert rc == 130 and "Traceback" not in err
    if n_done:
        r = read_result(out)
        assert r.complete is False and r.n_samples == 1 and r.measurement.operator.kind == "denoise"
    else:
        assert not out.exists() and "no result written" in err
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored


def test_reconstruct_prints_metrics_and_writes_result(tmp_path, monkeypatch, capsys):
    m = tmp_path / "m.h5"
    assert main(["demo", "denoise", "--out", str(m), "--size", "16"]) == 0
    monkeypatch.setattr(engine, "run", _fake_run(2, interrupt=False))
    out = tmp_path / "r.h5"
    assert main(["reconstruct", str(m), "--out", str(out), "--steps", "3", "--samples", "2",
                 "--solver", next(iter(SOLVERS))]) == 0
    assert "psnr: 30" in capsys.readouterr().out
    r = read_result(out)
    assert r.complete and r.metrics == {"psnr": 30.0} and float(r.mean.mean()) == pytest.approx(0.5)


def test_reconstruct_with_gaussian_prior_writes_finite_mean_and_std(tmp_path, capsys):
    m = tmp_path / "m.h5"
    assert main(["demo", "denoise", "--out", str(m), "--size", "32"]) == 0
    out = tmp_path / "r.h5"
    rc = main(["reconstruct", str(m), "--out", str(out), "--prior", "gaussian", "--steps", "3", "--samples", "2",
               "--seed", "1", "--device", "cpu", "--precision", "fp32"])
    assert rc == 0, capsys.readouterr().err
    r = read_result(out)
    assert r.mean.shape == (1, 32, 32) and r.n_samples == 2
    assert np.isfinite(r.mean).all() and np.isfinite(r.std).all() and float(r.std.max()) > 0
    assert r.provenance.get("steps") == 3


# ---------------------------------------------------------------------------- import, simulate, export
sys.path.insert(0, str(Path(__file__).parent))
from test_importers import write_dxchange, write_fastmri, write_nxtomo  # noqa: E402

from diffrecon import cli  # noqa: E402
from diffrecon.io import read_measurement, write_measurement, write_result  # noqa: E402


def _one_line_error(capsys, expected: str) -> str:
    err = capsys.readouterr().err
    assert expected in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    return err


@pytest.mark.parametrize("writer, fmt, kind, y_shape", [
    (write_fastmri, "auto", "mri", (4, 16, 16)),
    (write_dxchange, "auto", "ct", (1, 45, 16)),
    (write_nxtomo, "auto", "ct", (1, 45, 16)),
    (write_nxtomo, "nxtomo", "ct", (1, 45, 16)),
])
def test_import_picks_the_importer_from_the_layout_and_writes_a_measurement(tmp_path, capsys, writer, fmt, kind,
                                                                            y_shape):
    src, out = tmp_path / "src.h5", tmp_path / "m.h5"
    writer(src)
    assert main(["import", str(src), "--out", str(out), "--format", fmt, "--size", "16", "--slice", "1"]) == 0
    assert f"Wrote {out}" in capsys.readouterr().out
    m = read_measurement(out)
    assert m.operator.kind == kind and tuple(m.y.shape) == y_shape and m.operator.image_shape == (1, 16, 16)


def test_import_with_acceleration_undersamples_fully_sampled_kspace_by_that_factor(tmp_path):
    src, out = tmp_path / "k.h5", tmp_path / "m.h5"
    write_fastmri(src, coils=2, slices=1)
    assert main(["import", str(src), "--out", str(out), "--acceleration", "4", "--center-fraction", "0.125",
                 "--seed", "3"]) == 0
    m = read_measurement(out)
    columns = m.operator.arrays["mask"].any(axis=0)
    assert columns.sum() == 32 // 4 and m.attrs["acceleration"] == pytest.approx(4.0)


def test_bad_import_exits_2_with_one_line(tmp_path, capsys):
    dx, image_file, meas = tmp_path / "dx.h5", tmp_path / "x.tif", tmp_path / "m.h5"
    write_dxchange(dx)
    image_file.write_bytes(b"II*\0")
    write_measurement(meas, read_measurement(ROOT / "diffrecon/resources/demo/denoise.h5"))
    plain = tmp_path / "plain.h5"
    import h5py
    with h5py.File(plain, "w") as f:
        f["data"] = np.zeros((4, 4))
    cases = [
        (["import", str(dx), "--out", str(tmp_path / "o.h5"), "--acceleration", "4"], "fastMRI k-space only"),
        (["import", str(dx), "--out", str(tmp_path / "o.h5"), "--slice", "7"], "slice is 7"),
        (["import", str(image_file), "--out", str(tmp_path / "o.h5")], "diffrecon simulate"),
        (["import", str(meas), "--out", str(tmp_path / "o.h5")], "already a diffrecon measurement"),
        (["import", str(plain), "--out", str(tmp_path / "o.h5")], "matches no import format"),
        (["import", str(dx), "--out", str(tmp_path / "no/such/o.h5")], "does not exist"),
        (["import", str(dx), "--out", str(tmp_path / "o.h5"), "--format", "dicom"], "invalid choice"),
    ]
    for argv, expected in cases:
        assert main(argv) == 2, argv
        _one_line_error(capsys, expected)
    assert not (tmp_path / "o.h5").exists()


def test_simulate_from_tiff_keeps_image_as_truth_units_and_pixel_size(tmp_path, capsys):
    import tifffile
    img = np.arange(256, dtype=np.float32).reshape(16, 16) / 255.0
    src, out = tmp_path / "x.tif", tmp_path / "m.h5"
    tifffile.imwrite(src, img)
    assert main(["simulate", str(src), "--operator", "sr", "--option", "factor=2", "--noise", "0", "--out", str(out),
                 "--units", "1/cm", "--pixel-size", "0.5", "--pixel-unit", "mm"]) == 0
    m = read_measurement(out)
    np.testing.assert_array_equal(m.ground_truth[0], img)
    assert m.y.shape == (1, 8, 8) and m.units == "1/cm" and m.pixel_size == 0.5 and m.pixel_unit == "mm"
    # Noise-free 2x super-resolution of a ramp: each y is the mean of its 2 x 2 block.
    np.testing.assert_allclose(m.y[0], img.reshape(8, 2, 8, 2).mean(axis=(1, 3)), atol=1e-6)


def test_simulate_from_h5_dataset_adds_noise_of_the_given_sigma(tmp_path):
    import h5py
    src, out = tmp_path / "x.h5", tmp_path / "m.h5"
    with h5py.File(src, "w") as f:
        f["a"] = np.zeros((2, 2))
        f["img"] = np.zeros((64, 64), np.float32)
    assert main(["simulate", str(src), "--dataset", "img", "--operator", "denoise", "--noise", "0.2", "--seed", "5",
                 "--out", str(out)]) == 0
    m = read_measurement(out)
    assert m.noise_sigma == pytest.approx(0.2) and float(np.std(m.y)) == pytest.approx(0.2, rel=0.1)


@pytest.mark.parametrize("extra, expected", [
    (["--option", "factor=two"], "must be an integer"),
    (["--option", "n_views=3"], "does not apply to sr"),
    (["--option", "factor"], "is not KEY=VALUE"),
    (["--pixel-size", "-1"], "--pixel-size"),
    (["--noise", "-1"], "noise"),
])
def test_bad_simulate_setting_exits_2_naming_it(tmp_path, capsys, extra, expected):
    import tifffile
    src = tmp_path / "x.tif"
    tifffile.imwrite(src, np.zeros((16, 16), np.float32))
    argv = ["simulate", str(src), "--operator", "sr", "--noise", "0.1", "--out", str(tmp_path / "m.h5"), *extra]
    assert main(argv) == 2
    _one_line_error(capsys, expected)
    assert not (tmp_path / "m.h5").exists()


def _result_file(tmp_path, samples: bool = True) -> tuple[Path, Result]:
    m = read_measurement(ROOT / "diffrecon/resources/demo/denoise.h5")
    rng = np.random.default_rng(0)
    shape = m.image_shape
    r = Result(mean=rng.random(shape, np.float32), std=rng.random(shape, np.float32) * 0.1,
               samples=rng.random((2, *shape), np.float32) if samples else None, n_samples=2, metrics={},
               provenance={"solver": "dps"}, units="a.u.", measurement=m)
    path = tmp_path / "r.h5"
    write_result(path, r)
    return path, r


def test_export_writes_mean_tiff_error_h5_and_std_png_with_the_data(tmp_path, capsys):
    import h5py
    import tifffile
    path, r = _result_file(tmp_path)
    assert main(["export", str(path), "--what", "mean", "--out", str(tmp_path / "mean.tif")]) == 0
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "mean.tif"), r.mean[0])
    assert main(["export", str(path), "--what", "error", "--format", "h5", "--out", str(tmp_path / "e.h5")]) == 0
    with h5py.File(tmp_path / "e.h5") as f:
        np.testing.assert_allclose(f["data"][()], r.mean - r.measurement.ground_truth, atol=1e-6)
    assert main(["export", str(path), "--what", "std", "--format", "png", "--out", str(tmp_path / "s.png"),
                 "--cmap", "magma"]) == 0
    assert (tmp_path / "s.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert capsys.readouterr().out.count("Wrote") == 3


def test_bad_export_exits_2_with_one_line(tmp_path, capsys):
    path, _ = _result_file(tmp_path, samples=False)
    cases = [
        (["--what", "samples", "--out", str(tmp_path / "s.tif")], "stores no samples"),
        (["--what", "mean", "--out", str(tmp_path / "m.png"), "--format", "tiff"], "suffix of png"),
        (["--what", "mean", "--out", str(tmp_path / "m.dat")], "no image suffix"),
        (["--what", "mean", "--out", str(tmp_path / "m.png"), "--cmap", "rainbowz"], "rainbowz"),
        (["--what", "median", "--out", str(tmp_path / "m.png")], "invalid choice"),
    ]
    for extra, expected in cases:
        assert main(["export", str(path), *extra]) == 2, extra
        _one_line_error(capsys, expected)
    assert main(["export", str(tmp_path / "none.h5"), "--what", "mean", "--out", str(tmp_path / "m.tif")]) == 2
    _one_line_error(capsys, "does not exist")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.h5"]


# ---------------------------------------------------------------------------- commands from other modules
def test_a_listed_command_is_added_and_unknown_or_broken_ones_do_not_break_the_cli(monkeypatch, capsys):
    def add_hello_parser(sub):
        p = sub.add_parser("hello")
        p.add_argument("--code", type=int, default=0)
        p.set_defaults(func=lambda args: args.code)

    def add_compare_parser(sub):  # a command whose module lacks the function it imports when it runs
        def run(args):
            from broken_commands import run_compare  # noqa: F401
        sub.add_parser("compare").add_argument("file")
        sub.choices["compare"].set_defaults(func=run)
    broken = types.ModuleType("broken_commands")  # lacks its function
    monkeypatch.setitem(sys.modules, "broken_commands", broken)
    monkeypatch.setattr(cli, "COMMANDS", [add_hello_parser, add_compare_parser, cli.add_solvers_parser])
    assert main(["hello", "--code", "7"]) == 7
    assert main(["later"]) == 2
    _one_line_error(capsys, "invalid choice")
    assert main(["compare", "a.h5"]) == 2
    _one_line_error(capsys, "broken_commands does not load")
    assert main(["solvers"]) == 0


def test_train_validate_and_compare_are_registered_with_their_own_options(capsys):
    assert main(["train", "--out", "x"]) == 2
    _one_line_error(capsys, "--data")
    for command, option in (("train", "--data"), ("validate", "--solvers"), ("compare", "--solvers")):
        assert main([command, "--help"]) == 0
        assert option in capsys.readouterr().out


def test_first_ctrl_c_sets_stop_the_second_interrupts_and_the_old_handler_returns_after_the_block():
    import threading

    stop, before = threading.Event(), signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        with cli.ctrl_c_stops(stop):
            handler = signal.getsignal(signal.SIGINT)
            handler(signal.SIGINT, None)
            assert stop.is_set()
            handler(signal.SIGINT, None)
    assert signal.getsignal(signal.SIGINT) is before


# ---------------------------------------------------------------------------- progress
def _progress(step, steps, samples_done, samples_total, **work):
    event = engine.Progress(step, steps, samples_done, samples_total, 0, 0, 0, 0.1, None, {})
    for key, value in work.items():
        setattr(event, key, value)
    return event


def test_the_bar_counts_sample_steps_from_the_plan_and_follows_a_replan(monkeypatch):
    import contextlib
    import dataclasses

    from diffrecon.cli.progress import RunBar

    @dataclasses.dataclass
    class Replanned:  # the engine's event after an out-of-memory error (where it has one)
        batches: list
        reason: str

    monkeypatch.setattr(engine, "Replanned", Replanned, raising=False)
    with contextlib.ExitStack() as stack:
        bar = RunBar(stack, "test")
        bar.start_run(3, 4)
        bar.event(engine.Planned("cpu", [2, 1], 4, 4, None, True, (1.0, 0.0)))
        bar.event(_progress(3, 4, 0, 3))
        assert (bar.bar.n, bar.bar.total) == (3 * 2, 12)  # 3 steps of the first batch of 2
        bar.event(_progress(1, 4, 2, 3))
        assert bar.bar.n == 2 * 4 + 1  # two samples done, one step of the batch of 1
        # out of memory in the first batch: all three samples again, one per batch
        bar.event(Replanned([1, 1, 1], "out of memory with 2 samples per batch"))
        bar.event(_progress(2, 4, 1, 3))
        assert (bar.bar.n, bar.bar.total) == (1 * 4 + 2 * 1, 12)  # with the old plan it would say 8


def test_the_bar_takes_work_done_and_total_from_the_event_where_it_has_them():
    import contextlib

    from diffrecon.cli.progress import RunBar

    with contextlib.ExitStack() as stack:
        bar = RunBar(stack, "test")
        bar.start_run(3, 4)
        bar.event(engine.Planned("cpu", [3], 4, 4, None, True, (1.0, 0.0)))
        bar.event(_progress(1, 4, 0, 3, work_done=5, work_total=14))
        assert (bar.bar.n, bar.bar.total) == (5, 14)


def test_reconstruct_posterior_takes_the_solvers_posterior_mode(tmp_path, capsys):
    """--posterior: the validity report's parameters, --param still on top; refused without a mode."""
    from diffrecon.cli import main
    from diffrecon.io import read_result
    from diffrecon.solvers import SOLVERS

    demo = tmp_path / "d.h5"
    assert main(["demo", "inpaint", "--size", "16", "--out", str(demo)]) == 0
    out = tmp_path / "r.h5"
    args = ["reconstruct", str(demo), "--solver", "diffpir", "--prior", "gaussian", "--steps", "3", "--samples", "2",
            "--posterior", "--param", "lam=2", "--out", str(out)]
    assert main(args) == 0
    params = read_result(out).provenance["params"]
    mode = dict(SOLVERS["diffpir"].posterior_mode)
    assert params["lam"] == 2.0 and params["r_variance"] == mode["r_variance"] == "local"
    assert params["zeta"] == mode["zeta"] and params["perturb"] is True
    # a posterior sampler from noise (the fast preset's warm start would make it a seed spread) ...
    result = read_result(out)
    assert result.provenance["warm_start"] == "none" and result.std_is_posterior
    # ... unless a warm start is asked for
    assert main([*args[:-1], str(tmp_path / "w.h5"), "--warm-start", "tv"]) == 0
    assert read_result(tmp_path / "w.h5").provenance["warm_start"] == "tv"
    capsys.readouterr()
    assert main(["reconstruct", str(demo), "--solver", "ddim", "--posterior", "--out", str(tmp_path / "x.h5")]) == 2
    assert "ddim has no posterior mode; solvers with one are" in capsys.readouterr().err
