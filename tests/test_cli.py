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
        assert ("posterior" in row) or ("point estimate" in row)
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
