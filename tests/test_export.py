"""Export: result maps to ImageJ TIFF, colour-mapped PNG and plain HDF5, atomically."""
from __future__ import annotations

import h5py
import numpy as np
import pytest
import tifffile
from matplotlib.image import imread

from diffrecon.errors import InputError
from diffrecon.io import write_result
from diffrecon.io.export import export_array, export_result
from diffrecon.measurement import Measurement, Result
from diffrecon.operators import Denoise


def write_small_result(path, *, ground_truth: bool = True, samples: bool = True):
    rng = np.random.default_rng(0)
    gt = rng.random((1, 16, 24)).astype(np.float32)
    mean = gt + 0.1 * rng.standard_normal(gt.shape).astype(np.float32)
    m = Measurement(y=mean, operator=Denoise((1, 16, 24), 0.1).to_spec(), noise_sigma=0.1, units="1/cm",
                    ground_truth=gt if ground_truth else None, pixel_size=0.25, pixel_unit="mm")
    r = Result(mean=mean, std=np.full_like(mean, 0.1), samples=np.stack([mean, gt]) if samples else None,
               n_samples=2, metrics={}, provenance={"solver": "dps"}, units="1/cm", measurement=m)
    write_result(path, r)
    return r


def test_tiff_export_is_imagej_float32_with_pixel_size_and_unit(tmp_path):
    r = write_small_result(tmp_path / "r.h5")
    out = export_result(tmp_path / "r.h5", "mean", "tiff")
    assert out == tmp_path / "r_mean.tif"
    with tifffile.TiffFile(out) as tif:
        assert tif.is_imagej and tif.imagej_metadata["unit"] == "mm"
        x_res = tif.pages[0].tags["XResolution"].value
        data = tif.asarray()
    assert x_res[0] / x_res[1] == pytest.approx(4.0)
    assert data.dtype == np.float32 and np.array_equal(data, r.mean[0])


def test_samples_tiff_is_a_stack_of_all_samples(tmp_path):
    r = write_small_result(tmp_path / "r.h5")
    out = export_result(tmp_path / "r.h5", "samples", "tiff", tmp_path / "s.tif")
    assert np.array_equal(tifffile.imread(out), r.samples[:, 0])


def test_error_map_is_signed_mean_minus_ground_truth_in_h5(tmp_path):
    r = write_small_result(tmp_path / "r.h5")
    out = export_result(tmp_path / "r.h5", "error", "h5", tmp_path / "e.h5")
    with h5py.File(out, "r") as f:
        assert f["data"].attrs["units"] == "1/cm" and f["data"].attrs["pixel_size"] == 0.25
        assert np.allclose(f["data"][()], r.mean - r.measurement.ground_truth)
        assert f["data"].attrs["title"] == "error (mean − truth)"


def test_error_without_ground_truth_is_one_sentence(tmp_path):
    write_small_result(tmp_path / "r.h5", ground_truth=False)
    with pytest.raises(InputError, match="no ground truth"):
        export_result(tmp_path / "r.h5", "error", "png")


def test_png_shows_data_enlarged_with_colour_bar(tmp_path):
    write_small_result(tmp_path / "r.h5")
    out = export_result(tmp_path / "r.h5", "std", "png", cmap="magma")
    img = imread(out)
    # 24 columns enlarged 22x to >= 512 pixels, plus room for axes and the colour bar.
    assert img.shape[1] > 24 * 22 and img.shape[0] > 16 * 22
    assert img[..., :3].std() > 0.05


def test_overwrite_refused_when_not_allowed_and_no_temporary_files_left(tmp_path):
    a = np.ones((8, 8), np.float32)
    export_array(a, tmp_path / "a.tif")
    with pytest.raises(InputError, match="exists"):
        export_array(2 * a, tmp_path / "a.tif", allow_overwrite=False)
    assert tifffile.imread(tmp_path / "a.tif").max() == 1.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tif"]


def test_complex_array_goes_to_h5_only(tmp_path):
    z = (np.ones((8, 8)) * (1 + 2j)).astype(np.complex64)
    with pytest.raises(InputError, match="complex"):
        export_array(z, tmp_path / "z.png")
    export_array(z, tmp_path / "z.h5")
    with h5py.File(tmp_path / "z.h5", "r") as f:
        assert f["data"][3, 3] == 1 + 2j


def test_unknown_format_and_colour_map_are_refused(tmp_path):
    with pytest.raises(InputError, match="suffix"):
        export_array(np.ones((8, 8)), tmp_path / "a.jpg")
    with pytest.raises(InputError, match="Colour map"):
        export_array(np.ones((8, 8)), tmp_path / "a.png", cmap="nope")
    assert list(tmp_path.iterdir()) == []
