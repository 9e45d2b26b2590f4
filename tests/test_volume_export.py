"""Volume result files read back (diffrecon.volume.file), their exports (ImageJ hyperstack TIFF,
HDF5 volume) and ``diffrecon export-volume``: values, axes, voxel size, refusals."""
from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from diffrecon.cli import main
from diffrecon.errors import InputError
from diffrecon.volume import VolumeResult
from diffrecon.volume.export import export_h5, export_tiff, export_volume, hyperstack
from diffrecon.volume.file import read_volume, volume_geometry, with_geometry, write_volume

tifffile = pytest.importorskip("tifffile")


def _result(channels: int = 1, psnr: bool = True) -> VolumeResult:
    rng = np.random.default_rng(7)
    shape = (4, channels, 6, 5)  # Z, C, H, W all different: a transposed axis shows
    mean = rng.normal(0.2, 0.05, shape).astype(np.float32)
    std = rng.uniform(0.001, 0.02, shape).astype(np.float32)
    r = VolumeResult(mean, std, 3, {"psnr": 21.5, "z_roughness": 0.01}, [20.0, 21.0, 22.0, 23.0] if psnr else None,
                     {"solver": "diffpir", "lam_z": 0.5, "seed": 2}, "1/cm", False)
    return with_geometry(r, z_spacing=0.25, pixel_size=0.1, pixel_unit="cm")


def test_round_trip_keeps_every_part(tmp_path):
    r = _result()
    write_volume(tmp_path / "v.h5", r)
    back = read_volume(tmp_path / "v.h5")
    assert np.array_equal(back.mean, r.mean) and np.array_equal(back.std, r.std)
    assert back.mean.dtype == np.float32 and back.mean.shape == (4, 1, 6, 5)
    assert (back.n_samples, back.units, back.complete) == (3, "1/cm", False)
    assert back.metrics == {"psnr": 21.5, "z_roughness": 0.01}
    assert back.slice_psnr == [20.0, 21.0, 22.0, 23.0]
    assert back.provenance["lam_z"] == 0.5 and back.provenance["seed"] == 2
    assert volume_geometry(back) == (0.25, 0.1, "cm")


def test_a_result_without_geometry_reads_with_the_defaults(tmp_path):
    r = VolumeResult(np.zeros((2, 1, 3, 3), np.float32), np.zeros((2, 1, 3, 3), np.float32), 1, {}, None)
    write_volume(tmp_path / "v.h5", r)
    back = read_volume(tmp_path / "v.h5")
    assert volume_geometry(back) == (1.0, 1.0, "px") and back.slice_psnr is None and back.complete


def _damage(path, how):
    with h5py.File(path, "a") as f:
        how(f)


@pytest.mark.parametrize("how, words", [
    (lambda f: f.attrs.__setitem__("format", "diffrecon-result"), "no diffrecon volume result"),
    (lambda f: f.__delitem__("std"), "/std is missing"),
    (lambda f: (f.__delitem__("std"), f.create_dataset("std", data=np.zeros((4, 1, 6, 4), np.float32))),
     "expected (4, 1, 6, 5)"),
    (lambda f: (f.__delitem__("mean"), f.create_dataset("mean", data=np.zeros((4, 6, 5), np.float32))), "rank 3"),
    (lambda f: (f.__delitem__("mean"), f.create_dataset("mean", data=np.zeros((4, 1, 6, 5), np.int32))),
     "dtype int32"),
    (lambda f: f["mean"].__setitem__((0, 0, 0, 0), np.nan), "NaN or Inf"),
    (lambda f: f["std"].__setitem__((1, 0, 0, 0), -1.0), "negative values"),
    (lambda f: f.attrs.__setitem__("n_samples", 0), "n_samples"),
    (lambda f: f.attrs.__setitem__("metrics", "[1, 2]"), "expected a JSON object"),
    (lambda f: f.attrs.__setitem__("provenance", "{not json"), "provenance"),
    (lambda f: f.attrs.__setitem__("z_spacing", -2.0), "positive distance"),
    (lambda f: (f.__delitem__("slice_psnr"), f.create_dataset("slice_psnr", data=np.zeros(3))), "/slice_psnr has shape (3,); expected (4,)"),
    (lambda f: f.__setitem__("extra", h5py.ExternalLink("elsewhere.h5", "/data")), "external link"),
])
def test_malformed_files_are_refused_in_one_sentence(tmp_path, how, words):
    path = tmp_path / "v.h5"
    write_volume(path, _result())
    _damage(path, how)
    with pytest.raises(InputError) as err:
        read_volume(path)
    text = str(err.value)
    assert words in text and str(path) in text and "\n" not in text


def test_sizes_are_checked_before_reading(tmp_path, monkeypatch):
    path = tmp_path / "v.h5"
    write_volume(path, _result())
    monkeypatch.setenv("DIFFRECON_MAX_ARRAY_BYTES", "400")  # the mean is 4*6*5*4 = 480 bytes
    with pytest.raises(InputError, match="/mean"):
        read_volume(path)


def test_not_hdf5_is_refused(tmp_path):
    (tmp_path / "v.h5").write_bytes(b"not an hdf5 file at all")
    with pytest.raises(InputError, match="not an HDF5 file"):
        read_volume(tmp_path / "v.h5")


@pytest.mark.parametrize("channels", [1, 2])
def test_tiff_is_an_imagej_hyperstack_with_the_voxel_size(tmp_path, channels):
    r = _result(channels)
    done = []
    export_tiff(tmp_path / "v.tif", r, progress=lambda d, t: done.append((d, t)))
    assert done == [(1, 4), (2, 4), (3, 4), (4, 4)]
    with tifffile.TiffFile(tmp_path / "v.tif") as t:
        assert t.is_imagej
        series = t.series[0]
        assert series.axes == "ZCYX" and series.shape == (4, 2 * channels, 6, 5) and series.dtype == np.float32
        data = series.asarray()
        meta = t.imagej_metadata
        x_res = t.pages[0].tags["XResolution"].value
    assert np.array_equal(data[:, :channels], r.mean) and np.array_equal(data[:, channels:], r.std)
    assert meta["spacing"] == pytest.approx(0.25) and meta["unit"] == "cm"
    assert meta["channels"] == 2 * channels and meta["slices"] == 4 and meta["hyperstack"]
    assert x_res[0] / x_res[1] == pytest.approx(10.0)  # 10 pixels per cm: 0.1 cm pixels
    assert "value_unit=1/cm" in meta["Info"]
    names = hyperstack(r)[1]
    assert meta["Labels"][:2 * channels] == [f"{n} z=0" for n in names]
    lo, hi = meta["Ranges"][0:2]
    assert lo == pytest.approx(float(r.mean[:, 0].min())) and hi == pytest.approx(float(r.mean[:, 0].max()))


def test_h5_export_holds_mean_std_units_and_voxel_size(tmp_path):
    r = _result()
    export_h5(tmp_path / "e.h5", r)
    with h5py.File(tmp_path / "e.h5", "r") as f:
        mean, std = f["mean"], f["std"]
        assert mean.shape == (4, 6, 5) and mean.dtype == np.float32
        assert np.array_equal(mean[()], r.mean[:, 0]) and np.array_equal(std[()], r.std[:, 0])
        assert mean.attrs["units"] == "1/cm" and mean.attrs["axes"] == "ZYX"
        assert np.allclose(mean.attrs["element_size"], [0.25, 0.1, 0.1])
        assert np.allclose(mean.attrs["element_size_um"], [2500.0, 1000.0, 1000.0])
        assert [d.label for d in std.dims] == ["z", "y", "x"]
        assert json.loads(f.attrs["metrics"])["psnr"] == 21.5


def test_export_volume_refuses_an_unknown_suffix(tmp_path):
    with pytest.raises(InputError, match=r"\.tif, \.tiff .* \.h5"):
        export_volume(tmp_path / "v.png", _result())
    assert not (tmp_path / "v.png").exists()


def test_cli_export_volume_writes_both(tmp_path, capsys):
    write_volume(tmp_path / "v.h5", _result())
    code = main(["export-volume", str(tmp_path / "v.h5"), "--tiff", str(tmp_path / "o.tif"),
                 "--h5", str(tmp_path / "o.h5")])
    out = capsys.readouterr().out
    assert code == 0 and "Wrote" in out and "o.tif" in out and "o.h5" in out
    assert np.array_equal(tifffile.imread(tmp_path / "o.tif")[:, 1], _result().std[:, 0])
    with h5py.File(tmp_path / "o.h5", "r") as f:
        assert np.array_equal(f["mean"][()], _result().mean[:, 0])


@pytest.mark.parametrize("args, words", [
    ([], "needs --tiff"),
    (["--tiff", "o.png"], "must end in .tif or .tiff"),
    (["--h5", "v.h5"], "is the input file"),
])
def test_cli_export_volume_refuses_bad_arguments(tmp_path, capsys, monkeypatch, args, words):
    monkeypatch.chdir(tmp_path)
    write_volume(tmp_path / "v.h5", _result())
    assert main(["export-volume", "v.h5", *args]) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1


def test_cli_export_volume_refuses_a_2d_result(tmp_path, capsys):
    with h5py.File(tmp_path / "r.h5", "w") as f:
        f.attrs["diffrecon_format"] = "result"
    assert main(["export-volume", str(tmp_path / "r.h5"), "--h5", str(tmp_path / "o.h5")]) == 2
    assert "no diffrecon volume result" in capsys.readouterr().err
    assert not (tmp_path / "o.h5").exists()
