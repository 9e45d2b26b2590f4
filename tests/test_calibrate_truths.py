"""Calibration on the user's own images (``diffrecon calibrate --truths``): the truths simulated are
those images, cropped, resized and scaled like training data, and bad stacks are one sentence."""
from __future__ import annotations

import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

import diffrecon.calibrate as calibrate_module
from diffrecon.calibrate import calibrate
from diffrecon.calibration import load_store
from diffrecon.engine import Finished, RunConfig
from diffrecon.errors import InputError
from diffrecon.io.images import crop_resize
from diffrecon.io.importers import simulate
from diffrecon.phantoms import phantom

sys.path.insert(0, str(Path(__file__).parent))
import hostile_cases as hc  # noqa: E402

CONFIG = RunConfig(solver="diffpir", steps=4, samples=4, prior="gaussian", device="cpu")
LEVELS = np.array([0, 50, 100, 200], np.uint8)  # each level many times: the 0.1/99.9 percentiles are 0 and 200


def _measurement():
    return simulate(phantom(8, 5), "inpaint", noise=0.05)


def _finish(events):
    return next(e.result for e in events if isinstance(e, Finished))


def _write_images(folder: Path, n: int, size=(8, 8)) -> list[np.ndarray]:
    """``n`` 8-bit images of four grey levels, PNGs and one TIFF, in name order."""
    import tifffile
    from PIL import Image

    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(3)
    images = [LEVELS[rng.integers(0, 4, size)] for _ in range(n)]
    for i, a in enumerate(images):
        if i == n - 1:
            tifffile.imwrite(folder / f"img{i}.tif", a, photometric="minisblack")
        else:
            Image.fromarray(a).save(folder / f"img{i}.png")
    return images


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFRECON_CACHE", str(tmp_path / "cache"))


def test_the_simulated_truths_are_the_folders_images_under_one_affine_map(tmp_path, cache, monkeypatch):
    images = _write_images(tmp_path / "imgs", 3)
    truths = []
    real_run = calibrate_module.run

    def spy(measurement, *args, **kw):
        truths.append(np.asarray(measurement.ground_truth, np.float64))
        return real_run(measurement, *args, **kw)

    monkeypatch.setattr(calibrate_module, "run", spy)
    cal = _finish(calibrate(_measurement(), CONFIG, images=8, truths=tmp_path / "imgs"))
    assert cal.n_images == 3 == len(truths)  # --images caps; the folder holds 3
    assert cal.method.startswith("your images: image folder imgs (3 files); 3 images")
    assert "values [0, 200]" in cal.method
    assert load_store()[cal.key]["method"] == cal.method
    # one map t = a * image + b for all images (the stack's range, not each image's), a > 0
    x = np.concatenate([a.ravel() for a in images]).astype(np.float64)
    t = np.concatenate([t.ravel() for t in truths])
    (a, b), *_ = np.linalg.lstsq(np.stack([x, np.ones_like(x)], 1), t, rcond=None)
    assert a > 0 and np.abs(a * x + b - t).max() < 1e-5 * np.abs(t).max()
    # the ends of the stack's range are the ends of the prior's range, as for phantoms
    lo, hi = _value_range()
    assert b == pytest.approx(lo, abs=1e-5) and a * 200 + b == pytest.approx(hi, abs=1e-5)


def _value_range():
    """The physical values of the Gaussian prior's value-range ends for the test's measurement."""
    from diffrecon.engine import prepare

    setup = prepare(_measurement(), CONFIG)
    lo, hi = setup.denoiser.card.value_range
    return float(setup.norm.to_physical(float(lo))), float(setup.norm.to_physical(float(hi)))


def test_own_images_and_phantoms_give_different_truths_and_factors(tmp_path, cache, monkeypatch):
    monkeypatch.setattr(calibrate_module, "EXACT_MAX_PIXELS", 16)  # phantoms, not prior draws
    _write_images(tmp_path / "imgs", 3)
    phantoms = _finish(calibrate(_measurement(), CONFIG, images=3))
    own = _finish(calibrate(_measurement(), CONFIG, images=3, truths=tmp_path / "imgs"))
    assert "phantoms" in phantoms.method and own.method.startswith("your images")
    assert own.variance_ratio is None  # no exact comparison above EXACT_MAX_PIXELS
    assert own.scale != pytest.approx(phantoms.scale, rel=1e-3)


def test_hdf5_stack_is_cropped_to_the_operators_aspect_and_channels_copied(tmp_path, cache):
    stack = np.random.default_rng(0).gamma(2.0, 100.0, (4, 24, 16)).astype(np.float32)
    with h5py.File(tmp_path / "s.h5", "w") as f:
        f["stack"] = stack
        f["other"] = np.zeros((2, 3))
    truths, description = calibrate_module._user_truths(tmp_path / "s.h5", 3, (2, 8, 8))
    assert truths.shape == (3, 2, 8, 8) and description.startswith("HDF5 s.h5:stack; 3 images")
    np.testing.assert_array_equal(truths[:, 0], truths[:, 1])
    assert truths.min() >= 0 and truths.max() <= 1
    expected = crop_resize(torch.from_numpy(stack[:3, None, 4:20]), 8, 8)[:, 0].numpy()
    low, high = np.percentile(stack[:3], (0.1, 99.9))
    np.testing.assert_allclose(truths[:, 0], np.clip((expected - low) / (high - low), 0, 1), atol=1e-5)


def test_crop_resize_keeps_the_largest_centred_crop_of_the_target_aspect():
    x = torch.arange(40.0).reshape(1, 1, 10, 4)
    torch.testing.assert_close(crop_resize(x, 4, 4), x[..., 3:7, :])  # square: rows 3..6
    torch.testing.assert_close(crop_resize(x, 10, 2), x[..., 1:3])  # tall: columns 1..2
    y = torch.ones(1, 1, 12, 12)
    assert crop_resize(y, 3, 6).shape == (1, 1, 3, 6) and torch.allclose(crop_resize(y, 3, 6), torch.ones(1))


def test_one_multi_page_tiff_is_a_stack_of_its_pages_for_calibration_and_training(tmp_path):
    import tifffile

    from diffrecon.io.images import read_image_stack
    from diffrecon.training import load_training_data

    pages = np.random.default_rng(2).random((5, 6, 7)).astype(np.float32)
    tifffile.imwrite(tmp_path / "s.tif", pages, photometric="minisblack")
    raw, description = read_image_stack(tmp_path / "s.tif", 2, role="Calibration images")
    np.testing.assert_array_equal(np.concatenate(raw), pages[:2, None])
    assert description == "TIF s.tif (5 page(s))"
    data = load_training_data(tmp_path / "s.tif", 8, n_images=100)
    assert data.images.shape == (5, 1, 8, 8) and data.description.startswith("TIF s.tif (5 page(s)); 5 images")


def _refusal(tmp_path, truths, **kw) -> str:
    with pytest.raises(InputError) as err:
        list(calibrate(_measurement(), CONFIG, images=4, truths=truths, **kw))
    assert "\n" not in str(err.value)
    return str(err.value)


def test_unusable_calibration_images_are_refused_in_one_sentence(tmp_path, cache):
    _write_images(tmp_path / "one", 1)
    assert "holds 1 image(s); calibration needs at least 2" in _refusal(tmp_path, tmp_path / "one")
    (tmp_path / "notes.txt").write_text("not an image\n")
    assert "notes.txt is neither a folder, a PNG/TIF/TIFF image nor an HDF5 file" in _refusal(
        tmp_path, tmp_path / "notes.txt")
    bad = tmp_path / "bad"
    _write_images(bad, 3)
    (bad / "img1.png").write_text("not a png\n")
    assert "Calibration image" in _refusal(tmp_path, bad) and "img1.png cannot be read" in _refusal(tmp_path, bad)
    assert "does not exist" in _refusal(tmp_path, tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    assert "Calibration folder" in _refusal(tmp_path, tmp_path / "empty")
    with h5py.File(tmp_path / "flat.h5", "w") as f:
        f["images"] = np.full((3, 8, 8), 7.0, np.float32)
    assert "is constant" in _refusal(tmp_path, tmp_path / "flat.h5")
    with h5py.File(tmp_path / "nan.h5", "w") as f:
        f["images"] = np.full((3, 8, 8), np.nan, np.float32)
    assert "NaN" in _refusal(tmp_path, tmp_path / "nan.h5")
    with h5py.File(tmp_path / "rgb.h5", "w") as f:
        f["images"] = np.ones((3, 3, 8, 8), np.float32)
    assert "3 channels" in _refusal(tmp_path, tmp_path / "rgb.h5")


@pytest.mark.parametrize("kind, word", [("link", "external"), ("virtual", "virtual"), ("raw", "external")])
def test_hdf5_calibration_images_with_outside_data_are_refused_unless_allowed(tmp_path, cache, kind, word):
    path = Path(hc._train_stack(tmp_path, None, edit=hc._external_stack(kind)))
    message = _refusal(tmp_path, path)
    assert message.startswith("File") and word in message and "stack.h5" in message
    if kind == "link":
        cal = _finish(calibrate(_measurement(), CONFIG, images=2, truths=path, dataset="images", allow_external=True))
        assert cal.n_images == 2 and "HDF5 stack.h5:images" in cal.method


def test_cli_calibrate_truths(tmp_path, cache, capsys):
    from diffrecon.cli import main
    from diffrecon.io import write_measurement

    write_measurement(tmp_path / "m.h5", _measurement())
    _write_images(tmp_path / "imgs", 3)
    common = ["--solver", "diffpir", "--steps", "4", "--samples", "4", "--prior", "gaussian", "--device", "cpu"]
    assert main(["calibrate", str(tmp_path / "m.h5"), "--truths", str(tmp_path / "imgs"), "--images", "2",
                 *common]) == 0
    out = capsys.readouterr().out
    assert "method: your images: image folder imgs (3 files); 2 images" in out and "(2 images, K = 4)" in out
    with h5py.File(tmp_path / "two.h5", "w") as f:
        f["a"] = np.ones((3, 8, 8))
        f["b"] = np.ones((3, 8, 8))
    assert main(["calibrate", str(tmp_path / "m.h5"), "--truths", str(tmp_path / "two.h5"), *common]) == 2
    assert "name the image stack with --dataset" in capsys.readouterr().err
    assert main(["calibrate", str(tmp_path / "m.h5"), "--truths", str(tmp_path / "two.h5"), "--dataset", "b",
                 *common]) == 2
    assert "is constant" in capsys.readouterr().err
