"""Results are never lost: a full disk, a size limit, a killed write, SIGTERM and Ctrl-C during the
final write each end in one sentence with the earlier file intact and no temporary file left;
outputs that would destroy an input or cannot be written are refused before any work; new files
get the umask's permissions and rewritten files keep theirs."""
from __future__ import annotations

import errno
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import diffrecon.engine as engine
from diffrecon.cli import main
from diffrecon.demo import make_demo
from diffrecon.io import atomic, h5, read_measurement, read_result, write_result
from diffrecon.io.atomic import atomic_path, remove_stray_temporaries
from diffrecon.io.export import export_array
from diffrecon.measurement import Result

ROOT = Path(__file__).resolve().parents[1]
OLD = b"the earlier file"


def _old(path: Path) -> Path:
    path.write_bytes(OLD)
    return path


def _entries(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


def _result(size: int = 16) -> Result:
    m = make_demo("denoise", size=size)
    mean = np.full(m.image_shape, 0.5, np.float32)
    return Result(mean=mean, std=np.full_like(mean, 0.1), samples=None, n_samples=2, metrics={"psnr": 20.0},
                  provenance={"solver": "dps"}, units=m.units, measurement=m)


def _one_sentence(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# ---------------------------------------------------------------------------- disk full (class 4)
def test_disk_full_while_writing_is_one_sentence_exit_2_earlier_file_intact_no_temporary(tmp_path, monkeypatch,
                                                                                          capsys):
    out = _old(tmp_path / "m.h5")

    def full(path, data):
        Path(path).write_bytes(bytes(data)[:100])  # part of it reached the disk
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(h5, "write_bytes", full)
    assert main(["demo", "denoise", "--out", str(out), "--size", "16"]) == 2
    line = _one_sentence(capsys.readouterr().err)
    assert line == f"diffrecon: Cannot write {out}: the disk is full; the earlier file is unchanged."
    assert out.read_bytes() == OLD and _entries(tmp_path) == ["m.h5"]


def test_disk_full_in_an_image_export_keeps_the_earlier_image(tmp_path, monkeypatch):
    out = _old(tmp_path / "mean.tif")
    import diffrecon.io.export as export

    def full(tmp, *args):
        Path(tmp).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(export, "_write_tiff", full)
    with pytest.raises(OSError, match="the disk is full; the earlier file is unchanged"):
        export_array(np.ones((8, 8)), out)
    assert out.read_bytes() == OLD and _entries(tmp_path) == ["mean.tif"]


@pytest.mark.skipif(not hasattr(signal, "SIGXFSZ"), reason="needs POSIX file size limits")
def test_a_real_file_size_limit_ends_in_one_sentence_without_traceback_or_crash(tmp_path):
    """The same as a full disk, for real: writes past RLIMIT_FSIZE fail with EFBIG. Before, the HDF5
    library wrote the file itself, and a failed write left it broken: tracebacks, then a crash at exit."""
    out = _old(tmp_path / "m.h5")
    code = textwrap.dedent("""
        import resource, signal, sys
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (16384, 16384))
        from diffrecon.cli import main
        sys.exit(main(sys.argv[1:]))
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.run([sys.executable, "-c", code, "demo", "denoise", "--out", str(out), "--size", "64"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2, proc.stderr
    line = _one_sentence(proc.stderr)
    assert line == f"diffrecon: Cannot write {out}: the file would exceed the size limit; the earlier file is unchanged."
    assert out.read_bytes() == OLD and _entries(tmp_path) == ["m.h5"]


# ---------------------------------------------------------------------------- results never lost (class 7)
def test_export_onto_its_own_result_file_is_refused_and_the_result_survives(tmp_path, monkeypatch, capsys):
    r = tmp_path / "R.h5"
    write_result(r, _result())
    before = r.read_bytes()
    assert main(["export", str(r), "--what", "mean", "--out", str(r)]) == 2
    assert "is the input file" in _one_sentence(capsys.readouterr().err)
    assert r.read_bytes() == before
    monkeypatch.chdir(tmp_path)  # the same file under another spelling
    assert main(["export", "R.h5", "--what", "mean", "--out", f"./../{tmp_path.name}/R.h5", "--format", "h5"]) == 2
    assert r.read_bytes() == before and read_result(r).mean.shape == (1, 16, 16)


@pytest.mark.parametrize("case", ["folder", "write-protected", "input", "unwritable folder"])
def test_a_bad_out_is_refused_before_the_run_starts(tmp_path, monkeypatch, capsys, case):
    m = tmp_path / "m.h5"
    assert main(["demo", "denoise", "--out", str(m), "--size", "16"]) == 0
    started = []
    monkeypatch.setattr(engine, "run", lambda *a, **k: started.append(1) or iter(()))
    out = {"folder": tmp_path, "write-protected": tmp_path / "old.h5", "input": m,
           "unwritable folder": tmp_path / "ro" / "r.h5"}[case]
    if case == "write-protected":
        _old(out).chmod(0o444)
    if case == "unwritable folder":
        (tmp_path / "ro").mkdir()
        real_create = atomic._create_temporary

        def refuse(folder, *args):  # root ignores folder permissions: deny as the kernel would
            if Path(folder) == tmp_path / "ro":
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(folder))
            return real_create(folder, *args)

        monkeypatch.setattr(atomic, "_create_temporary", refuse)
    capsys.readouterr()
    assert main(["reconstruct", str(m), "--out", str(out), "--prior", "gaussian", "--steps", "2"]) == 2
    line = _one_sentence(capsys.readouterr().err)
    expected = {"folder": "is a folder", "write-protected": "is write-protected", "input": "is the input file",
                "unwritable folder": "is not writable (permission denied)"}[case]
    assert expected in line and started == []
    if case == "write-protected":
        assert out.read_bytes() == OLD


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_stray_temporary_file_of_a_killed_write_is_removed_by_the_next_write_to_the_folder(tmp_path):
    target = _old(tmp_path / "r.h5")
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child starts a write and is killed in the middle of it
        try:
            with atomic_path(target) as tmp:
                tmp.write_bytes(b"half a file")
                os.write(ready_w, b"x")
                time.sleep(60)
        finally:
            os._exit(0)
    assert os.read(ready_r, 1) == b"x"
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    stray = [n for n in _entries(tmp_path) if n != "r.h5"]
    assert len(stray) == 1 and stray[0].startswith(".r.h5.diffrecon-")
    live = tmp_path / f".x.h5.diffrecon-{atomic._HOST}-{os.getpid()}-0123abcd.tmp"  # a write going on now
    live.write_bytes(b"busy")
    legacy = tmp_path / ".y.h5.abcd_123.tmp"  # the name an earlier version gave, an hour old
    legacy.write_bytes(b"old")
    os.utime(legacy, (time.time() - 3600, time.time() - 3600))
    other = tmp_path / ".notes.txt.abcd_123.tmp"  # not ours
    other.write_bytes(b"keep")
    write_result(tmp_path / "other.h5", _result())
    assert _entries(tmp_path) == sorted([live.name, other.name, "other.h5", "r.h5"])
    assert target.read_bytes() == OLD
    assert remove_stray_temporaries(tmp_path) == []


def _sigterm_script() -> str:
    return textwrap.dedent("""
        import os, signal, sys, time
        import numpy as np
        import diffrecon.engine as engine
        from diffrecon.measurement import Result

        def run(measurement, config, *, stop=None, denoiser=None):
            yield engine.Planned("cpu", [1, 1], config.steps, config.steps, None, True, (1.0, 0.0))
            os.kill(os.getpid(), signal.SIGTERM)
            deadline = time.monotonic() + 10
            while not stop.is_set() and time.monotonic() < deadline:
                time.sleep(0.01)
            shape = measurement.image_shape
            yield engine.Finished(Result(mean=np.full(shape, 0.5, np.float32), std=np.full(shape, 0.1, np.float32),
                                         samples=None, n_samples=1, metrics={}, provenance={"solver": "dps"},
                                         units=measurement.units, complete=not stop.is_set()))

        engine.run = run
        from diffrecon.cli import main
        sys.exit(main(sys.argv[1:]))
    """)


def test_sigterm_during_a_run_stops_it_like_ctrl_c_and_writes_the_finished_samples(tmp_path):
    m = tmp_path / "m.h5"
    assert main(["demo", "denoise", "--out", str(m), "--size", "16"]) == 0
    out = tmp_path / "r.h5"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", _sigterm_script(), "reconstruct", str(m), "--out", str(out),
                           "--steps", "3", "--samples", "2", "--solver", "dps"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 130 and "Traceback" not in proc.stderr, proc.stderr
    assert "Stopping after the current step" in proc.stderr
    r = read_result(out)
    assert r.complete is False and r.n_samples == 1
    assert _entries(tmp_path) == ["m.h5", "r.h5"]


def _interrupting_writer(monkeypatch, times: int):
    real = h5.write_bytes

    def write(path, data):
        for _ in range(times):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)  # the handler runs between two bytecodes of this thread
        real(path, data)

    monkeypatch.setattr(h5, "write_bytes", write)


def test_one_ctrl_c_during_the_final_write_lets_it_complete_and_says_so(tmp_path, monkeypatch, capsys):
    out = _old(tmp_path / "m.h5")
    _interrupting_writer(monkeypatch, 1)
    assert main(["demo", "denoise", "--out", str(out), "--size", "16"]) == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err and f"interrupted while writing {out}; the write completed first" in err
    assert read_measurement(out).y.shape == (1, 16, 16) and _entries(tmp_path) == ["m.h5"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_second_ctrl_c_during_the_final_write_abandons_it_and_keeps_the_earlier_file(tmp_path, monkeypatch,
                                                                                      capsys):
    out = _old(tmp_path / "m.h5")
    _interrupting_writer(monkeypatch, 2)
    assert main(["demo", "denoise", "--out", str(out), "--size", "16"]) == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip().endswith("diffrecon: interrupted.")
    assert out.read_bytes() == OLD and _entries(tmp_path) == ["m.h5"]


# ---------------------------------------------------------------------------- permissions (class 9)
@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_new_results_and_exports_get_the_umask_permissions_and_a_rewrite_keeps_the_mode(tmp_path, umask_022):
    def mode(p):
        return stat.S_IMODE(p.stat().st_mode)

    r = tmp_path / "r.h5"
    write_result(r, _result())
    export_array(np.ones((8, 8)), tmp_path / "a.tif")
    export_array(np.ones((8, 8)), tmp_path / "a.png")
    assert [mode(tmp_path / n) for n in ("r.h5", "a.tif", "a.png")] == [0o644] * 3
    r.chmod(0o664)
    (tmp_path / "a.tif").chmod(0o600)
    write_result(r, _result())
    export_array(np.zeros((8, 8)), tmp_path / "a.tif")
    assert mode(r) == 0o664 and mode(tmp_path / "a.tif") == 0o600
    os.umask(0o077)
    write_result(tmp_path / "private.h5", _result())
    assert mode(tmp_path / "private.h5") == 0o600
