"""Set-up traps a new user meets: the fitted prior's progress and disk cache, reconstruct's --out
suffix, the compare grid's levels with a diverged run, and the CLI compare's warnings and memory."""
from __future__ import annotations

import threading

import numpy as np
import pytest

import diffrecon.priors as priors
from diffrecon.cli import main
from diffrecon.demo import make_demo
from diffrecon.engine import Finished, Preparing, RunConfig, run
from diffrecon.io import write_measurement
from diffrecon.priors import fitted


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
