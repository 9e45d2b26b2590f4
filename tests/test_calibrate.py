"""Calibration of a setting's std: the correction and its coverages from simulated measurements,
the store in the cache folder, and runs of the same setting that apply it and say so."""
from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from diffrecon.calibrate import _Image, calibrate, save, summarise
from diffrecon.calibration import Calibration, load_store, lookup, status_text, store_path
from diffrecon.engine import Finished, Planned, RunConfig, run
from diffrecon.errors import InputError
from diffrecon.io import read_result, write_result
from diffrecon.io.importers import simulate
from diffrecon.phantoms import CALIBRATION_SEEDS, TEST_SEEDS, TRAIN_SEEDS, VALIDATION_SEEDS, phantom


def _sampler_stats(k: int, spread: float, images: int = 6, pixels: int = 3000, seed: int = 0) -> list[_Image]:
    """Images whose K 'samples' are exact posterior draws with their std multiplied by ``spread``."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(images):
        mu, sd = rng.normal(size=pixels), rng.uniform(0.2, 2.0, size=pixels)
        draws = mu + spread * sd * rng.standard_normal((k, pixels))
        truth = mu + sd * rng.standard_normal(pixels)
        out.append(_Image(draws.mean(0), draws.std(0, ddof=1), truth))
    return out


@pytest.mark.parametrize("k", [4, 8])
def test_an_exact_sampler_needs_no_correction(k):
    cal = summarise(_sampler_stats(k, 1.0), k)
    assert cal.coverage == pytest.approx(0.9, abs=0.015) and cal.coverage_calibrated == pytest.approx(0.9, abs=0.015)
    assert cal.scale == pytest.approx(1.0, abs=0.05) and cal.error_to_std == pytest.approx(1.0, abs=0.05)


@pytest.mark.parametrize("spread", [0.5, 2.0])
def test_a_mis_dispersed_sampler_gets_the_factor_that_restores_nominal_coverage_on_unseen_images(spread):
    cal = summarise(_sampler_stats(8, spread, seed=1), 8)
    assert abs(cal.coverage - 0.9) > 0.08  # visibly off before
    # the error of the mean has variance sd^2 (1 + spread^2 / K); an exact sampler's interval assumes sd^2 (1 + 1 / K)
    assert cal.scale == pytest.approx(np.sqrt((1 + spread**2 / 8) / (1 + 1 / 8)) / spread, rel=0.06)
    assert cal.coverage_calibrated == pytest.approx(0.9, abs=0.02)  # leave-one-out, not in-sample


def test_the_store_is_atomic_json_in_the_cache_folder_and_a_damaged_one_reads_empty(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFRECON_CACHE", str(tmp_path / "cache"))
    cal = summarise(_sampler_stats(4, 2.0, images=3), 4, key="abc", setting="s", method="m")
    path = save(cal)
    assert path == store_path() == tmp_path / "cache" / "calibration.json"
    assert lookup("abc") == cal and lookup("other") is None
    assert [p.name for p in path.parent.iterdir()] == ["calibration.json"]  # no temporary file left
    save(Calibration.from_dict({**cal.to_dict(), "key": "def", "scale": 3.0}))
    assert set(load_store()) == {"abc", "def"} and json.loads(path.read_text())["version"] == 1
    path.write_text("{not json")
    assert load_store() == {} and lookup("abc") is None


def test_calibration_truths_are_phantoms_no_other_split_uses():
    for split in (TRAIN_SEEDS, VALIDATION_SEEDS, TEST_SEEDS):
        assert CALIBRATION_SEEDS.start >= split.stop or CALIBRATION_SEEDS.stop <= split.start


def _measurement():
    return simulate(phantom(8, 5), "inpaint", noise=0.05)


CONFIG = RunConfig(solver="diffpir", steps=4, samples=4, prior="gaussian", device="cpu")


def _finish(events):
    out = None
    for event in events:
        if isinstance(event, Finished):
            out = event.result
    return out


def test_calibrating_a_setting_makes_its_runs_scale_the_std_and_say_so_everywhere(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFRECON_CACHE", str(tmp_path / "cache"))
    m = _measurement()
    plain = _finish(run(m, CONFIG))
    assert status_text(plain.provenance) == "uncalibrated" and plain.provenance["calibration"]["applied"] is False
    cal = _finish(calibrate(m, CONFIG, images=2))
    assert isinstance(cal, Calibration) and cal.n_images == 2 and cal.samples == 4
    assert cal.variance_ratio > 0 and abs(cal.exact_coverage - 0.9) < 0.15  # exact draws on the same images
    assert "exact prior" in cal.method
    events = list(run(m, CONFIG))
    planned = next(e for e in events if isinstance(e, Planned))
    corrected = _finish(events)
    np.testing.assert_allclose(corrected.std, cal.scale * plain.std, rtol=1e-5)
    np.testing.assert_array_equal(corrected.mean, plain.mean)
    assert planned.calibration == cal.status() == status_text(corrected.provenance)
    assert corrected.provenance["calibration"]["scale"] == cal.scale
    assert cal.status().startswith("calibrated (coverage ") and "measured on 2 images" in cal.status()
    write_result(tmp_path / "r.h5", corrected)
    with h5py.File(tmp_path / "r.h5", "r") as f:
        assert f["posterior"].attrs["calibration"] == cal.status()
    assert status_text(read_result(tmp_path / "r.h5").provenance) == cal.status()
    other = _finish(run(m, RunConfig(**{**CONFIG.__dict__, "steps": 5})))  # another step budget
    assert status_text(other.provenance) == "uncalibrated"
    off = _finish(run(m, RunConfig(**{**CONFIG.__dict__, "use_calibration": False})))
    np.testing.assert_array_equal(off.std, plain.std)


def test_phantom_simulation_where_the_prior_is_not_exact_enough_or_the_image_too_big(tmp_path, monkeypatch):
    import diffrecon.calibrate as calibrate_module

    monkeypatch.setenv("DIFFRECON_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(calibrate_module, "EXACT_MAX_PIXELS", 16)
    cal = _finish(calibrate(_measurement(), CONFIG, images=2))
    assert "phantoms" in cal.method and cal.variance_ratio is None and cal.exact_coverage is None
    assert 0 <= cal.coverage_calibrated <= 1


@pytest.mark.parametrize("change, words", [
    ({"solver": "tv"}, "point estimate"), ({"solver": "ddpm"}, "ignores the measurement"),
    ({"samples": 1}, "at least 2"),
])
def test_calibrate_refuses_settings_without_an_uncertainty_in_one_sentence(change, words):
    config = RunConfig(**{**CONFIG.__dict__, **change})
    with pytest.raises(InputError, match=words) as info:
        list(calibrate(_measurement(), config, images=2))
    assert "\n" not in str(info.value)
    with pytest.raises(InputError, match="--images"):
        list(calibrate(_measurement(), CONFIG, images=1))


def test_cli_calibrate_stores_and_reconstruct_reports_it(tmp_path, monkeypatch, capsys):
    from diffrecon.cli import main
    from diffrecon.io import write_measurement

    monkeypatch.setenv("DIFFRECON_CACHE", str(tmp_path / "cache"))
    write_measurement(tmp_path / "m.h5", _measurement())
    common = ["--solver", "diffpir", "--steps", "4", "--samples", "4", "--prior", "gaussian", "--device", "cpu"]
    assert main(["calibrate", str(tmp_path / "m.h5"), "--images", "2", "--warm-start", "none", *common]) == 0
    out = capsys.readouterr().out
    assert "coverage of the 90 % t-interval" in out and str(store_path()) in out
    assert main(["reconstruct", str(tmp_path / "m.h5"), "--out", str(tmp_path / "r.h5"), "--warm-start", "none",
                 *common]) == 0
    assert "posterior std, calibrated (coverage" in capsys.readouterr().out
    # the fast preset warm-starts: another setting, with its own (here none) calibration
    assert main(["reconstruct", str(tmp_path / "m.h5"), "--out", str(tmp_path / "w.h5"), *common]) == 0
    assert "seed spread (not a posterior std), uncalibrated" in capsys.readouterr().out
    assert main(["calibrate", str(tmp_path / "m.h5"), "--images", "2", *common]) == 0
    assert "warm-started from TV" in capsys.readouterr().out
    assert main(["reconstruct", str(tmp_path / "m.h5"), "--out", str(tmp_path / "w2.h5"), *common]) == 0
    assert "seed spread (not a posterior std), calibrated (coverage" in capsys.readouterr().out


def test_cli_calibrate_defaults_to_the_fast_preset_like_reconstruct(tmp_path, monkeypatch, capsys):
    from diffrecon.cli import main
    from diffrecon.engine.presets import FAST
    from diffrecon.io import write_measurement

    monkeypatch.setenv("DIFFRECON_CACHE", str(tmp_path / "cache"))
    write_measurement(tmp_path / "m.h5", _measurement())
    assert main(["calibrate", str(tmp_path / "m.h5"), "--images", "2", "--samples", "2", "--prior", "gaussian",
                 "--device", "cpu"]) == 0
    setting = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("setting:"))
    assert f"{FAST['solver']}(" in setting and f"{FAST['steps']} steps" in setting and "warm-started from TV" in setting


def test_progress_counts_the_work_of_all_images_where_the_engine_reports_its_work(tmp_path, monkeypatch):
    """An engine whose Progress carries work_done / work_total (sample-steps of one run): the
    calibration's events count them over all its images, so a bar reaches the end once."""
    import diffrecon.calibrate as calibrate_module
    from diffrecon.engine import Progress

    def run_with_work(measurement, config, **kw):
        for event in run(measurement, config, **kw):
            if isinstance(event, Progress):
                event.work_total = config.steps * config.samples
                event.work_done = event.samples_done * config.steps + event.step * config.samples
            yield event

    monkeypatch.setenv("DIFFRECON_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(calibrate_module, "run", run_with_work)
    work = [(e.work_done, e.work_total) for e in calibrate(_measurement(), CONFIG, images=3)
            if isinstance(e, Progress)]
    total = 3 * CONFIG.steps * CONFIG.samples
    assert {t for _, t in work} == {total} and work[-1][0] == total
    assert all(a <= b for (a, _), (b, _) in zip(work, work[1:]))  # never back: images follow each other
    assert any(done <= CONFIG.steps * CONFIG.samples for done, _ in work)  # the first image's part is there
