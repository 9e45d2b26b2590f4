"""Set-up traps a new user meets: the fitted prior's progress and disk cache, reconstruct's --out
suffix, the compare grid's levels with a diverged run, and the CLI compare's warnings and memory."""
from __future__ import annotations

import re
import threading
from pathlib import Path

import numpy as np
import pytest

import diffrecon.priors as priors
from diffrecon.cli import main
from diffrecon.demo import make_demo
from diffrecon.engine import Finished, Preparing, RunConfig, run
from diffrecon.grid_levels import outlier_runs, shared_levels
from diffrecon.io import write_measurement
from diffrecon.priors import fitted
from diffrecon.runtime import RunMemory, process_peak_rss


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFRECON_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(priors, "FIT_PHANTOMS", 4)
    monkeypatch.setattr(fitted, "_memory", {})
    return tmp_path / "cache"


def _events(m, **kw):
    config = RunConfig(solver="diffpir", steps=2, samples=1, prior="gaussian", device="cpu", **kw)
    return list(run(m, config))


def test_gaussian_fit_at_a_new_size_reports_progress_and_is_read_back_from_disk(fresh_cache, monkeypatch):
    m = make_demo("denoise", size=16)
    first = _events(m)
    prep = [e for e in first if isinstance(e, Preparing)]
    assert [(e.done, e.total) for e in prep] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    files = list((fresh_cache / "fitted_priors").glob("gaussian_1x16x16_*.safetensors"))
    assert len(files) == 1 and not list(files[0].parent.glob("*.tmp"))
    fitted_power = fitted._memory[("gaussian", (1, 16, 16))].power.clone()
    monkeypatch.setattr(fitted, "_memory", {})  # a new process: only the disk cache is left
    second = _events(m)
    assert not [e for e in second if isinstance(e, Preparing)]
    assert np.array_equal(fitted._memory[("gaussian", (1, 16, 16))].power.numpy(), fitted_power.numpy())
    r1, r2 = (next(e for e in ev if isinstance(e, Finished)).result for ev in (first, second))
    assert np.array_equal(r1.mean, r2.mean)


def test_stop_while_fitting_ends_the_run_and_caches_nothing(fresh_cache):
    stop = threading.Event()
    events = []
    for e in run(make_demo("denoise", size=16), RunConfig(solver="diffpir", steps=2, samples=1, prior="gaussian",
                                                          device="cpu"), stop=stop):
        events.append(e)
        if isinstance(e, Preparing):
            stop.set()
    assert not [e for e in events if isinstance(e, Finished)]
    assert not (fresh_cache / "fitted_priors").exists() or not list((fresh_cache / "fitted_priors").iterdir())


@pytest.mark.parametrize("name", ["r.tif", "r.png", "r"])
def test_reconstruct_refuses_an_image_suffix_before_any_work(tmp_path, capsys, name):
    write_measurement(tmp_path / "m.h5", make_demo("denoise", size=16))
    assert main(["reconstruct", str(tmp_path / "m.h5"), "--out", str(tmp_path / name), "--steps", "1"]) == 2
    err = capsys.readouterr().err
    assert "writes an HDF5 result file" in err and "diffrecon export" in err
    assert not (tmp_path / name).exists()


# ------------------------------------------------------------------------------ compare
def _maps(seed: int, scale: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (scale * rng.random((16, 16))).astype(np.float32)


def test_one_diverged_run_leaves_the_other_runs_shared_levels_unchanged():
    good = {"mean": [_maps(0), _maps(1)], "std": [0.1 * _maps(2), 0.2 * _maps(3)], "error": [_maps(4) - 0.5] * 2}
    bad = {row: maps + [m * 1e5 for m in maps[:1]] for row, maps in good.items()}
    for truth in (None, _maps(5)):
        levels_good, out_good = shared_levels(good, truth)
        levels_bad, out_bad = shared_levels(bad, truth)
        assert out_good == [False, False] and out_bad == [False, False, True]
        assert levels_bad == levels_good
    # two runs, no truth: the tamer one is the reference, the wild one the outlier
    assert outlier_runs([_maps(0) * 1e6, _maps(1)]) == [True, False]


def test_run_memory_is_this_runs_peak_not_the_process_peak():
    big = np.ones(300 * 2**20 // 8)  # 300 MiB resident before the run
    del big
    memory = RunMemory("cpu")
    assert memory.peak() < process_peak_rss() - 200 * 2**20


def test_cli_compare_prints_the_runs_warnings_and_a_memory_column(tmp_path, capsys, fresh_cache):
    write_measurement(tmp_path / "m.h5", make_demo("denoise", size=16))
    rc = main(["compare", str(tmp_path / "m.h5"), "--solvers", "ddim,diffpir", "--steps", "2", "--samples", "2",
               "--prior", "gaussian", "--device", "cpu", "--out", str(tmp_path / "c.h5")])
    out = capsys.readouterr()
    assert rc == 0
    assert "run 1 (ddim · 2 steps · seed 0) warning: ddim with eta = 0 is deterministic" in out.err + out.out
    table = [line for line in out.out.splitlines() if line.startswith(("ddim ·", "diffpir ·"))]
    assert len(table) == 2 and all(re.search(r" done .* \d+ MiB peak$", line) for line in table)


# ------------------------------------------------------------------------------ set-up
def test_ci_installs_the_readmes_system_libraries_and_cpu_torch():
    root = Path(__file__).resolve().parents[1]
    readme, ci = (root / "README.md").read_text(), (root / ".ci" / "run").read_text()
    apt = re.search(r"sudo apt-get install -y (.*?)\n```", readme, re.S).group(1)
    readme_pkgs = set(apt.replace("\\", " ").split())
    ci_pkgs = set(re.search(r"QT_SYSTEM_LIBS=\((.*?)\)", ci, re.S).group(1).split())
    assert readme_pkgs == ci_pkgs and {"libxcb-icccm4", "libxcb-keysyms1", "libxcb-cursor0"} <= ci_pkgs
    torch_line = "torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"
    assert f"pip install {torch_line}" in readme and f"pip install -q {torch_line}" in ci


def test_background_prediction_does_not_fit_a_new_size_but_says_the_run_will(fresh_cache):
    from diffrecon.engine import plan
    from diffrecon.errors import InputError

    m = make_demo("denoise", size=16)
    config = RunConfig(solver="diffpir", steps=2, samples=1, prior="gaussian", device="cpu")
    with pytest.raises(InputError, match="fitted at this image size by the first run"):
        plan(m, config, fit_prior=False)
    assert not (fresh_cache / "fitted_priors").exists()
    assert plan(m, config).predicted_seconds is not None  # the CLI's budget planning still fits
