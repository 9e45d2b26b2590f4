"""Volumes from a 2D prior (diffrecon.volume): shapes, per-sample streams, z-coupling, Stop, bad input."""
from __future__ import annotations

import dataclasses
import threading

import numpy as np
import pytest

from diffrecon.engine import RunConfig
from diffrecon.engine.events import Progress
from diffrecon.errors import InputError
from diffrecon.volume import VolumeFinished, phantom_volume, reconstruct_volume, volume_demo, z_inconsistency


@pytest.fixture(scope="module")
def slices():
    return volume_demo(8, 16, options={"n_views": 6})


def _config(**kw):
    base = dict(prior="gaussian", steps=8, samples=2, device="cpu", prior_fit=False, seed=3)
    base.update(kw)
    return RunConfig(**base)


def _result(slices, config, **kw):
    events = list(reconstruct_volume(slices, config, **kw))
    assert isinstance(events[-1], VolumeFinished)
    return events[-1].result, events


def test_phantom_volume_varies_slowly_along_z():
    vol = phantom_volume(12, 24, seed=1)
    assert vol.shape == (12, 24, 24) and vol.min() >= 0 and vol.max() <= 1
    step = np.abs(np.diff(vol, axis=0)).mean()
    assert 0 < step < 0.5 * np.abs(vol - vol.mean(0)).mean() + 1e-9  # neighbours differ less than slices from the mean
    assert np.array_equal(vol, phantom_volume(12, 24, seed=1))


def test_shapes_metrics_and_progress(slices):
    r, events = _result(slices, _config())
    assert r.mean.shape == (8, 1, 16, 16) and r.std.shape == (8, 1, 16, 16)
    assert r.n_samples == 2 and r.complete and np.all(r.std >= 0) and r.std.max() > 0
    assert len(r.slice_psnr) == 8 and all(np.isfinite(r.slice_psnr))
    truth = np.stack([m.ground_truth for m in slices])
    assert r.metrics["z_inconsistency"] == pytest.approx(z_inconsistency(r.mean, truth))
    assert r.metrics["psnr"] > 12  # far better than a blank volume
    progress = [e for e in events if isinstance(e, Progress)]
    assert progress[-1].work_done == progress[-1].work_total == 16
    assert r.provenance["nfe"] == 2 * 8 * 8


def test_samples_independent_of_count_and_slice_batches(slices):
    one, _ = _result(slices, _config(samples=1), slice_batch=3, lam_z=1.0)
    two, _ = _result(slices, _config(samples=2), slice_batch=8, lam_z=1.0)
    other_seed, _ = _result(slices, _config(samples=1, seed=4), slice_batch=3, lam_z=1.0)
    # sample 0 is the same alone and beside sample 1, in batches of 3 or 8 slices (up to float32
    # rounding of the sparse products in other batch shapes): with two samples the std is
    # |x0 - x1| / 2, so |x0 - mean| equals it at every voxel
    assert np.allclose(np.abs(one.mean - two.mean), two.std, atol=2e-5)
    assert two.std.max() > 1e-3
    assert np.abs(one.mean - other_seed.mean).max() > 1e-3


def test_z_coupling_reduces_inter_slice_inconsistency(slices):
    config = _config(steps=12, samples=1)
    apart, _ = _result(slices, config, lam_z=0.0)
    coupled, _ = _result(slices, config, lam_z=1.0)
    assert coupled.metrics["z_inconsistency"] < 0.9 * apart.metrics["z_inconsistency"]
    assert coupled.metrics["psnr"] > apart.metrics["psnr"] - 0.5


def test_stop_within_a_step(slices):
    stop = threading.Event()
    config = _config(samples=2)
    events = []
    for event in reconstruct_volume(slices, config, slice_batch=2, stop=stop):
        events.append(event)
        if isinstance(event, Progress) and event.samples_done == 1 and event.step == 2:
            stop.set()
    r = events[-1].result
    assert isinstance(events[-1], VolumeFinished) and not r.complete and r.n_samples == 1
    assert sum(isinstance(e, Progress) for e in events) == 8 + 2  # no step after the stop


def test_stop_before_any_sample_ends_without_result(slices):
    stop = threading.Event()
    stop.set()
    events = list(reconstruct_volume(slices, _config(), stop=stop))
    assert not any(isinstance(e, VolumeFinished) for e in events)
    assert "Stopped" in events[-1].message


def test_slices_with_another_operator_are_refused(slices):
    other = volume_demo(2, 16, options={"n_views": 7})[0]
    with pytest.raises(InputError) as err:
        list(reconstruct_volume([*slices[:3], other], _config()))
    text = str(err.value)
    assert text.startswith("Slice 4 has another forward model") and text.count(". ") == 0
    with pytest.raises(InputError, match="noise"):
        list(reconstruct_volume([slices[0], dataclasses.replace(slices[1], noise_sigma=0.5)], _config()))
    with pytest.raises(InputError, match="at least 2"):
        list(reconstruct_volume(slices[:1], _config()))
    with pytest.raises(InputError, match="diffpir, dds, ddnm; 'dps' has no volume path"):
        list(reconstruct_volume(slices, _config(solver="dps")))
    with pytest.raises(InputError, match="noise_aware=true"):
        list(reconstruct_volume(slices, _config(solver="dds", params={"noise_aware": False}), lam_z=1.0))
    with pytest.raises(InputError, match="travel_length=0"):
        list(reconstruct_volume(slices, _config(solver="ddnm", params={"travel_length": 2})))
    with pytest.raises(InputError, match="warm start 'tv'"):
        list(reconstruct_volume(slices, _config(warm_start="tv")))


def test_cli_reconstruct_volume_writes_mean_and_std(tmp_path, capsys):
    import h5py

    from diffrecon.cli import main
    from diffrecon.io import write_measurement

    paths = []
    for z, m in enumerate(volume_demo(4, 16, options={"n_views": 6})):
        paths.append(tmp_path / f"slice{z}.h5")
        write_measurement(paths[-1], m)
    out = tmp_path / "vol.h5"
    code = main(["reconstruct-volume", *map(str, paths), "--out", str(out), "--prior", "gaussian", "--steps", "5",
                 "--samples", "2", "--device", "cpu", "--lam-z", "0.5", "--slice-batch", "3"])
    assert code == 0
    assert "z_inconsistency" in capsys.readouterr().out
    with h5py.File(out, "r") as f:
        assert f.attrs["format"] == "diffrecon-volume" and f.attrs["n_samples"] == 2
        assert f["mean"].shape == (4, 1, 16, 16) and f["std"].shape == (4, 1, 16, 16)
        assert f["slice_psnr"].shape == (4,) and np.all(np.asarray(f["std"]) >= 0)
    odd = tmp_path / "odd.h5"
    write_measurement(odd, volume_demo(2, 16, options={"n_views": 7})[0])
    code = main(["reconstruct-volume", str(paths[0]), str(odd), "--out", str(tmp_path / "bad.h5"),
                 "--prior", "gaussian", "--device", "cpu"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "Slice 2 has another forward model" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "bad.h5").exists()


# ------------------------------------------------------------------------------ the solvers' volume paths
POSTERIOR = {"lam": 1.0, "zeta": 1.0, "perturb": True, "r_variance": "prior"}


@pytest.mark.parametrize("solver, params", [("dds", {}), ("ddnm", {}), ("diffpir", POSTERIOR)],
                         ids=["dds", "ddnm", "diffpir-posterior"])
def test_each_solver_couples_slices(slices, solver, params):
    config = _config(solver=solver, params=params, steps=8, samples=1)
    apart, _ = _result(slices, config, lam_z=0.0, cg_iters=10)
    coupled, events = _result(slices, config, lam_z=1.0, cg_iters=10)
    # measured on this 8 x 16 x 16, 6-view volume: the error jumps from slice to slice drop by
    # 20-65 % and the PSNR rises by 0.7-4 dB; a bound of 10 % and 0 dB leaves room for rounding
    assert coupled.metrics["z_inconsistency"] < 0.9 * apart.metrics["z_inconsistency"]
    assert coupled.metrics["psnr"] > apart.metrics["psnr"]
    assert coupled.provenance["solver"] == solver and coupled.provenance["params"]["eta" if solver != "diffpir"
                                                                                    else "perturb"] is not None
    assert sum(isinstance(e, Progress) for e in events) == 8


def test_lam_z_follows_the_slice_distance_unless_given(slices):
    from diffrecon.volume import LAM_Z_ISOTROPIC, default_lam_z

    assert default_lam_z(2.0) == pytest.approx(LAM_Z_ISOTROPIC / 4)
    assert default_lam_z(0.5) == pytest.approx(LAM_Z_ISOTROPIC * 4)
    with pytest.raises(InputError, match="z_spacing"):
        default_lam_z(0.0)
    config = _config(solver="dds", steps=3, samples=1)
    far, _ = _result(slices[:3], config, z_spacing=4.0)
    given, _ = _result(slices[:3], config, z_spacing=4.0, lam_z=0.5)
    assert far.provenance["lam_z"] == pytest.approx(LAM_Z_ISOTROPIC / 16) and far.provenance["z_spacing"] == 4.0
    assert given.provenance["lam_z"] == 0.5 and given.provenance["lam_z_rule"] == "given"


class _Hooked:
    """A denoiser that calls ``hook(batch)`` before each evaluation."""

    def __init__(self, inner, hook):
        self.inner, self.hook = inner, hook

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def to(self, device):
        self.inner = self.inner.to(device)
        return self

    def __call__(self, x, sigma):
        self.hook(x.shape[0])
        return self.inner(x, sigma)


def _gaussian():
    from diffrecon.priors import load_prior

    return load_prior("gaussian", (1, 16, 16))


def test_stop_inside_the_data_step(slices):
    stop, calls = threading.Event(), []

    def hook(batch):
        calls.append(batch)
        if len(calls) == 4 * 3:  # the last of four slice batches in step 3: the data step sees the stop
            stop.set()

    config = _config(solver="ddnm", samples=1)
    events = list(reconstruct_volume(slices, config, slice_batch=2, stop=stop, denoiser=_Hooked(_gaussian(), hook)))
    assert [e.step for e in events if isinstance(e, Progress)] == [1, 2]  # step 3 never finished
    assert len(calls) == 12 and not any(isinstance(e, VolumeFinished) for e in events)


def test_out_of_memory_halves_the_slice_batch_and_keeps_the_answer(slices):
    def hook(batch):
        if batch > 2:
            raise MemoryError("simulated")

    config = _config(solver="diffpir", params=POSTERIOR, samples=1, steps=4)
    halved, events = _result(slices, config, slice_batch=8, cg_iters=10, denoiser=_Hooked(_gaussian(), hook))
    direct, _ = _result(slices, config, slice_batch=2, cg_iters=10, denoiser=_gaussian())
    logs = [e.message for e in events if type(e).__name__ == "Log"]
    assert "Out of CPU memory; going on with 4 slices per batch." in logs
    assert "Out of CPU memory; going on with 2 slices per batch." in logs
    assert halved.provenance["slice_batch"] == 2
    # the step is taken again from the same random state: the same draws as with batches of 2
    assert np.allclose(halved.mean, direct.mean, atol=2e-5)
