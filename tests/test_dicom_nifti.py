"""DICOM files and series, NIfTI volumes and TIFF stacks as images to simulate from: order of
slices, physical units, and one sentence for every damaged or hostile file."""
from __future__ import annotations

import gzip
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

pydicom = pytest.importorskip("pydicom")
nibabel = pytest.importorskip("nibabel")
from pydicom.uid import generate_uid  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from medical_files import huge_dicom, huge_nifti, write_dicom, write_nifti, write_series, write_stack  # noqa: E402
from diffrecon.errors import InputError  # noqa: E402
from diffrecon.io import importers  # noqa: E402
from diffrecon.io.importers.physical import MU_WATER_PER_CM, read_physical  # noqa: E402

#: One valid small file per image format the registry opens with a forward model.
PHYSICAL_WRITERS = {
    "image": lambda d: write_stack(d / "stack.tif"),
    "dicom": lambda d: write_dicom(d / "slice.dcm", np.full((16, 16), 1024)),
    "nifti": lambda d: write_nifti(d / "vol.nii", np.zeros((16, 16, 3), np.int16)),
}


# ------------------------------------------------------------------------------ units and order
def test_ct_slice_is_converted_from_hounsfield_units_to_attenuation_on_cm_pixels(tmp_path):
    hu = np.zeros((16, 16))
    hu[:, :4], hu[:, 12:] = -1000, 1000  # air | water | bone-like
    path = write_dicom(tmp_path / "ct.dcm", (hu + 1024) / 2, slope=2.0, intercept=-1024.0, spacing=(0.7, 0.7))
    img = read_physical(path)
    assert img.units == "1/cm" and img.pixel_unit == "cm" and img.pixel_size == pytest.approx(0.07)
    np.testing.assert_allclose(img.image[0, 0, [0, 8, 13]], [0.0, MU_WATER_PER_CM, 2 * MU_WATER_PER_CM], rtol=1e-6)
    other = read_physical(path, modality="other")
    assert other.units == "a.u." and other.pixel_unit == "mm" and other.image[0, 0, 13] == pytest.approx(1000.0)
    assert read_physical(path, mu_water=0.2).image[0, 0, 8] == pytest.approx(0.2)


def test_mr_slice_keeps_its_rescaled_values_in_arbitrary_units():
    from pydicom.data import get_testdata_file

    path = Path(get_testdata_file("MR_small.dcm"))
    ds = pydicom.dcmread(path)
    img = read_physical(path)
    assert img.units == "a.u." and img.pixel_size == pytest.approx(float(ds.PixelSpacing[0]))
    np.testing.assert_allclose(img.image[0], ds.pixel_array.astype(np.float64), rtol=1e-6)


def test_series_is_ordered_by_position_not_by_name_or_instance_number(tmp_path):
    folder = write_series(tmp_path / "series")
    assert importers.detect(folder).name == "dicom"
    water = MU_WATER_PER_CM
    for k in range(5):
        img = read_physical(folder, slice=k)
        assert img.image[0, 0, 0] == pytest.approx(water * (1 + 0.1 * k))
        assert img.attrs["slice_position"] == pytest.approx(-20.0 + 2.5 * k)
    assert read_physical(folder).attrs["slice"] == 2 and read_physical(folder).attrs["slice_spacing_mm"] == 2.5


def test_oblique_series_is_ordered_along_its_slice_normal(tmp_path):
    folder = tmp_path / "coronal"
    folder.mkdir()
    uid = generate_uid()
    for k in (3, 0, 2, 1):  # coronal slices: rows along x, columns along -z, normal along y
        write_dicom(folder / f"s{k}.dcm", np.full((8, 8), 1024 + 100 * k), series=uid, instance=1,
                    orientation=(1, 0, 0, 0, 0, -1), position=(5.0, 10.0 * k, 99.0 - k))
    assert [read_physical(folder, slice=i).image[0, 0, 0] for i in range(4)] == pytest.approx(
        [MU_WATER_PER_CM * (1 + 0.1 * k) for k in range(4)])


def test_multiframe_file_frames_are_slices(tmp_path):
    path = write_dicom(tmp_path / "mf.dcm", np.stack([np.full((8, 8), 1024 + 100 * k) for k in range(3)]))
    assert read_physical(path, slice=2).image[0, 0, 0] == pytest.approx(MU_WATER_PER_CM * 1.2)


def test_simulated_ct_from_a_series_carries_units_and_resampled_pixel_size(tmp_path):
    folder = write_series(tmp_path / "series", size=32, spacing=(0.5, 0.5))
    m = importers.open(folder, operator="ct", size=16, options={"n_views": 12}, noise=0.0)
    assert m.units == "1/cm" and m.pixel_unit == "cm" and m.pixel_size == pytest.approx(0.1)
    assert m.ground_truth.shape == (1, 16, 16) and m.attrs["source_format"] == "dicom" and m.source == folder
    np.testing.assert_allclose(m.ground_truth, MU_WATER_PER_CM * 1.2, rtol=1e-5)
    # the sinogram's line integrals scale with the pixel size: twice the size, twice the integral
    big = importers.open(folder, operator="ct", size=16, options={"n_views": 12}, pixel_size=0.2)
    np.testing.assert_allclose(big.y, 2 * m.y, rtol=1e-4, atol=1e-6)


def test_nifti_slice_scaling_orientation_and_voxel_size(tmp_path):
    data = np.zeros((12, 10, 4), np.int16)
    data[1, 2, 3] = 600  # stored; HU = 2 * 600 - 1024 = 176
    data[..., 0] = 1
    for name in ("v.nii", "v.nii.gz"):
        path = write_nifti(tmp_path / name, data, slope=2.0, inter=-1024.0)
        assert importers.detect(path).name == "nifti"
        img = read_physical(path, slice=3, modality="ct")
        assert img.image.shape == (1, 10, 12) and img.pixel_size == pytest.approx(0.08) and img.units == "1/cm"
        assert img.image[0, 10 - 1 - 2, 1] == pytest.approx(MU_WATER_PER_CM * 1.176, rel=1e-5)
        assert img.image[0, 0, 0] == 0.0 and img.attrs["orientation"] == "RAS"
        plain = read_physical(path, slice=0)
        assert plain.units == "a.u." and plain.image[0, 0, 0] == pytest.approx(2 * 1 - 1024.0)


def test_tiff_stack_gives_the_slice_asked_for(tmp_path):
    path = write_stack(tmp_path / "s.tif")
    assert importers.read_image(path)[0, 0, 0] == 4.0  # the middle one
    assert importers.read_image(path, slice=7)[0, 0, 0] == 7.0
    m = importers.open(path, operator="denoise", slice=2)
    assert m.ground_truth[0, 0, 0] == 2.0
    with pytest.raises(InputError, match="expected an integer from 0 to 8"):
        importers.read_image(path, slice=9)


def test_read_image_reads_dicom_and_nifti_for_simulate(tmp_path):
    folder = write_series(tmp_path / "series")
    assert importers.read_image(folder).shape == (1, 16, 16)
    nii = write_nifti(tmp_path / "v.nii", np.ones((16, 16, 3), np.float32))
    np.testing.assert_array_equal(importers.read_image(nii), np.ones((1, 16, 16), np.float32))


# ------------------------------------------------------------------------------ hostile files
def _one_sentence(err: pytest.ExceptionInfo, path: Path) -> None:
    msg = str(err.value)
    assert path.name in msg and "\n" not in msg and msg.endswith((".", ")")) and len(msg) < 600, msg


def test_dicom_declaring_a_huge_image_is_refused_before_reading(tmp_path):
    path = huge_dicom(tmp_path / "huge.dcm")
    with pytest.raises(InputError, match="65535 x 65535 pixels") as err:
        read_physical(path)
    _one_sentence(err, path)


def test_dicom_frames_beyond_the_array_budget_are_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFRECON_MAX_ARRAY_BYTES", "4096")
    path = write_dicom(tmp_path / "mf.dcm", np.zeros((3, 32, 32)))
    with pytest.raises(InputError, match="DIFFRECON_MAX_ARRAY_BYTES") as err:
        read_physical(path)
    _one_sentence(err, path)


@pytest.mark.parametrize("damage", ["truncated", "header", "garbage"])
def test_damaged_dicom_gets_one_sentence(tmp_path, damage):
    path = write_dicom(tmp_path / "d.dcm", np.full((16, 16), 1024))
    raw = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(raw[: len(raw) - 200])
    elif damage == "header":
        path.write_bytes(raw[:132] + b"\xff" * 64 + raw[196:])
    else:
        path.write_bytes(raw[:132] + os.urandom(300))
    with pytest.raises(InputError) as err:
        read_physical(path)
    _one_sentence(err, path)


def test_series_with_a_link_two_series_or_duplicate_positions_is_refused(tmp_path):
    folder = write_series(tmp_path / "a", n=3)
    outside = write_dicom(tmp_path / "outside.dcm", np.zeros((16, 16)), z=99.0)
    (folder / "link.dcm").symlink_to(outside)
    with pytest.raises(InputError, match="link link.dcm, which is not followed"):
        read_physical(folder)
    (folder / "link.dcm").unlink()
    write_dicom(folder / "other.dcm", np.zeros((16, 16)), z=50.0)  # another series
    with pytest.raises(InputError, match="2 series"):
        read_physical(folder)
    dup = write_series(tmp_path / "b", n=2)
    uid = pydicom.dcmread(next(dup.iterdir())).SeriesInstanceUID
    write_dicom(dup / "again", np.zeros((16, 16)), z=-20.0, series=uid)
    with pytest.raises(InputError, match="same ImagePositionPatient"):
        read_physical(dup)


def test_nifti_truncated_huge_or_four_dimensional_is_refused(tmp_path):
    path = write_nifti(tmp_path / "v.nii", np.zeros((16, 16, 8), np.float32))
    path.write_bytes(path.read_bytes()[:-500])
    with pytest.raises(InputError, match="truncated") as err:
        read_physical(path)
    _one_sentence(err, path)
    huge = huge_nifti(tmp_path / "h.nii")
    with pytest.raises(InputError, match="30000 x 30000") as err:
        read_physical(huge)
    _one_sentence(err, huge)
    four = write_nifti(tmp_path / "t.nii", np.zeros((8, 8, 2, 3), np.float32), zooms=(1, 1, 1, 1))
    with pytest.raises(InputError, match="one time point"):
        read_physical(four)
    gz = write_nifti(tmp_path / "v.nii.gz", np.random.default_rng(0).random((32, 32, 8)).astype(np.float32))
    gz.write_bytes(gz.read_bytes()[: gz.stat().st_size // 2])
    with pytest.raises(InputError) as err:
        read_physical(gz, slice=7)
    _one_sentence(err, gz)


def test_every_image_format_has_a_test_writer():
    assert set(PHYSICAL_WRITERS) == {n for n, i in importers.IMPORTERS.items() if i.needs_operator}


@pytest.mark.parametrize("fmt", sorted(PHYSICAL_WRITERS))
def test_every_image_format_refuses_a_damaged_or_foreign_file_in_one_sentence(tmp_path, fmt):
    good = PHYSICAL_WRITERS[fmt](tmp_path)
    assert importers.detect(good).name == fmt
    m = importers.open(good, operator="inpaint", size=16)
    assert np.isfinite(m.y).all()
    with pytest.raises(InputError, match="diffrecon simulate"):
        importers.open(good)  # an image needs a forward model
    raw = good.read_bytes()
    cases = {"truncated": raw[: max(200, len(raw) // 3)], "foreign": b"not an image at all\n" * 20,
             "header_only": raw[:140]}
    for name, content in cases.items():
        bad = tmp_path / f"{name}{''.join(good.suffixes)}"
        bad.write_bytes(content)
        with pytest.raises(InputError) as err:
            importers.open(bad, fmt, operator="inpaint")
        _one_sentence(err, bad)


def test_gzip_that_is_not_nifti_is_not_detected_as_nifti(tmp_path):
    path = tmp_path / "x.nii.gz"
    with gzip.open(path, "wb") as f:
        f.write(b"\0" * 400)
    with pytest.raises(InputError):
        importers.detect(path)


def test_every_image_format_in_physical_units_has_a_hostile_case():
    import hostile_cases

    formats = {n for n, i in importers.IMPORTERS.items() if i.needs_operator and n != "image"}
    assert set(hostile_cases.HUGE_IMAGES) == formats
    names = [c.name for c in hostile_cases.REGISTRY_CASES]
    assert all(f"simulate:{fmt} declaring a huge image" in names for fmt in formats)


def test_simulate_command_keeps_a_dicom_ct_slices_units_and_pixel_size(tmp_path, capsys):
    """``diffrecon simulate`` on a DICOM CT slice: attenuation in 1/cm on cm pixels (line integrals
    scale with the pixel size), unless the flags override them; a plain image refuses --modality."""
    from diffrecon.cli import main
    from diffrecon.io import read_measurement

    hu = np.zeros((16, 16))
    hu[:, :2] = -1000
    path = write_dicom(tmp_path / "ct.dcm", hu + 1024, intercept=-1024.0, spacing=(0.7, 0.7))
    out = tmp_path / "ct.h5"
    assert main(["simulate", str(path), "--operator", "ct", "--noise", "0", "--out", str(out)]) == 0
    m = read_measurement(out)
    assert m.units == "1/cm" and m.attrs.get("pixel_unit", "cm") == "cm"
    assert m.operator.params["pixel_size"] == pytest.approx(0.07)
    again = tmp_path / "ct_px.h5"
    assert main(["simulate", str(path), "--operator", "ct", "--noise", "0", "--pixel-size", "0.14",
                 "--out", str(again)]) == 0
    y1, y2 = np.asarray(m.y), np.asarray(read_measurement(again).y)
    np.testing.assert_allclose(y2, 2 * y1, rtol=1e-4, atol=1e-6)  # twice the pixel pitch: twice the line integrals
    png = tmp_path / "plain.png"
    from PIL import Image
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(png)
    capsys.readouterr()
    assert main(["simulate", str(png), "--operator", "denoise", "--noise", "0.1", "--modality", "ct",
                 "--out", str(tmp_path / "p.h5")]) == 2
    assert "--modality" in capsys.readouterr().err
