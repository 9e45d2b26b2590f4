"""Volume measurements: the file (round trip, ranges, damaged files), the importers' row and slice
ranges, and the command line (demo volume, import --rows, reconstruct-volume of a volume file)."""
from __future__ import annotations

import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from diffrecon.cli import main
from diffrecon.errors import InputError
from diffrecon.io import write_measurement
from diffrecon.io.importers import import_dxchange, import_fastmri, import_nxtomo
from diffrecon.io.importers.fastmri import import_fastmri_slices
from diffrecon.io.importers.tomo import import_dxchange_rows, import_nxtomo_rows
from diffrecon.volume import (import_volume, is_volume_measurement, read_volume_measurement, volume_demo,
                              write_volume_measurement)

sys.path.insert(0, str(Path(__file__).parent))
from test_importers import ct_counts, nxtomo_file, write_dxchange, write_fastmri  # noqa: E402


@pytest.fixture(scope="module")
def slices():
    return volume_demo(4, 16, options={"n_views": 6})


@pytest.fixture
def volume_file(tmp_path, slices):
    return write_volume_measurement(tmp_path / "vol.h5", slices, z_spacing=2.5)


def test_round_trip_keeps_every_slice_and_the_geometry(volume_file, slices):
    assert is_volume_measurement(volume_file)
    v = read_volume_measurement(volume_file)
    assert len(v.slices) == 4 and v.z_spacing == 2.5 and v.source == str(volume_file)
    assert v.truth.shape == (4, 1, 16, 16)
    for a, b in zip(slices, v.slices):
        assert np.array_equal(a.y, b.y) and np.array_equal(a.ground_truth, b.ground_truth)
        assert a.noise_sigma == b.noise_sigma and a.value_range == b.value_range and a.units == b.units
        assert a.operator.kind == b.operator.kind and a.operator.params == b.operator.params
        assert all(np.array_equal(a.operator.arrays[k], b.operator.arrays[k]) for k in a.operator.arrays)
    part = read_volume_measurement(volume_file, rows=(1, 3))
    assert [m.attrs["volume_slice"] for m in part.slices] == [1, 2]
    assert np.array_equal(part.slices[0].y, slices[1].y) and part.truth.shape == (2, 1, 16, 16)
    with h5py.File(volume_file, "r") as f:  # one operator for the stack, the data on a leading axis
        assert f["measurement/y"].shape == (4, *np.shape(slices[0].y)) and "operator" in f


def test_truth_given_apart_and_write_refusals(tmp_path, slices):
    truth = np.stack([m.ground_truth for m in slices])[:, 0] * 2  # (Z, H, W) for one channel
    bare = [type(m)(**{**m.__dict__, "ground_truth": None}) for m in slices]
    v = read_volume_measurement(write_volume_measurement(tmp_path / "t.h5", bare, truth=truth))
    assert np.array_equal(v.truth[:, 0], truth) and np.array_equal(v.slices[2].ground_truth[0], truth[2])
    with pytest.raises(InputError, match=r"truth has shape \(3, 16, 16\); expected \(4, 1, 16, 16\)"):
        write_volume_measurement(tmp_path / "u.h5", bare, truth=truth[:3])
    other = volume_demo(2, 16, options={"n_views": 7})[0]
    with pytest.raises(InputError, match="Slice 3 has another forward model"):
        write_volume_measurement(tmp_path / "w.h5", [*slices[:2], other])
    with pytest.raises(InputError, match="z_spacing -1"):
        write_volume_measurement(tmp_path / "w.h5", slices, z_spacing=-1)
    assert not (tmp_path / "u.h5").exists() and not (tmp_path / "w.h5").exists()


def _damage(path: Path, how: str) -> None:
    with h5py.File(path, "a") as f:
        if how == "y-missing":
            del f["measurement/y"]
        elif how == "y-shape":
            y, sigma = f["measurement/y"][:, :, :-1], f["measurement/y"].attrs["noise_sigma"]
            del f["measurement/y"]
            f["measurement/y"] = y
            f["measurement/y"].attrs["noise_sigma"] = sigma
        elif how == "nan":
            y = f["measurement/y"][()]
            y[2, 0, 0, 0] = np.nan
            f["measurement/y"][...] = y
        elif how == "z-spacing":
            f.attrs["z_spacing"] = -2.0
        elif how == "truth-shape":
            del f["measurement/ground_truth"]
            f["measurement/ground_truth"] = np.zeros((3, 1, 16, 16), np.float32)
        elif how == "format":
            f.attrs["diffrecon_format"] = "measurement"
        elif how == "external":
            f["measurement/link"] = h5py.ExternalLink("elsewhere.h5", "/data")


@pytest.mark.parametrize("how, message", [
    ("y-missing", "dataset /measurement/y is missing; expected a (slices, *measurement shape)"),
    ("y-shape", "but the ct operator measures shape"),
    ("nan", "dataset /measurement/y contains NaN or Inf values"),
    ("z-spacing", "root attribute z_spacing is -2.0; expected a positive number"),
    ("truth-shape", "dataset /measurement/ground_truth has shape (3, 1, 16, 16); expected (4, 1, 16, 16)"),
    ("format", "has diffrecon_format='measurement'; expected 'volume-measurement'"),
    ("external", "has an external link /measurement/link -> elsewhere.h5:/data"),
])
def test_damaged_files_are_refused_in_one_sentence(volume_file, how, message):
    _damage(volume_file, how)
    with pytest.raises(InputError) as err:
        read_volume_measurement(volume_file)
    text = str(err.value)
    assert message in text and str(volume_file) in text and "\n" not in text


def test_rows_outside_the_stack_and_non_volume_files(tmp_path, volume_file, slices):
    for rows in [(3, 3), (0, 5), (-1, 2), "0:2"]:
        with pytest.raises(InputError, match=r"expected \(first, end\) with 0 <= first < end <= 4"):
            read_volume_measurement(volume_file, rows=rows)
    write_measurement(tmp_path / "one.h5", slices[0])
    (tmp_path / "text.h5").write_text("not hdf5")
    assert not is_volume_measurement(tmp_path / "one.h5")
    assert not is_volume_measurement(tmp_path / "text.h5") and not is_volume_measurement(tmp_path / "none.h5")


# ------------------------------------------------------------------------------ importers' ranges
def _noisy_flats(flat: np.ndarray) -> np.ndarray:
    """Three flat fields whose photon noise differs from row to row, so each row has its own estimate."""
    rng = np.random.default_rng(5)
    scale = np.array([1.0, 2.0, 4.0])[:, None]  # per detector row
    return (flat[None] + scale[None] * rng.standard_normal((3, *flat.shape)) * 3).astype(np.float32)


def _dxchange_noisy(path):
    _, angles, _, proj, flat, dark = ct_counts()
    with h5py.File(path, "w") as f:
        f["exchange/data"] = proj
        f["exchange/data_white"] = _noisy_flats(flat)
        f["exchange/data_dark"] = dark[None]
        f["exchange/theta"] = angles


def _nxtomo_noisy(path):
    _, angles, _, proj, flat, dark = ct_counts()
    frames = np.concatenate([dark[None], _noisy_flats(flat), proj])
    nxtomo_file(path, frames, np.array([2, 1, 1, 1] + [0] * len(proj), np.int32),
                np.concatenate([[0.0] * 4, angles]), units="degree")


@pytest.mark.parametrize("writer, one, rows", [(_dxchange_noisy, import_dxchange, import_dxchange_rows),
                                               (_nxtomo_noisy, import_nxtomo, import_nxtomo_rows)],
                         ids=["dxchange", "nxtomo"])
def test_row_range_equals_the_rows_one_by_one(tmp_path, writer, one, rows):
    path = tmp_path / "scan.h5"
    writer(path)  # 3 detector rows of 45 angles x 32 columns, flat-field noise 1, 2 and 4 counts
    stack = rows(path, (1, 3), size=16)
    singles = [one(path, r, size=16) for r in (1, 2)]
    assert [m.attrs["detector_row"] for m in stack] == [1, 2]
    for m, s in zip(stack, singles):
        assert np.array_equal(m.y, s.y) and np.array_equal(m.operator.arrays["angles_deg"], s.operator.arrays["angles_deg"])
    # one noise level for the stack: the median of the rows' own estimates
    assert singles[1].noise_sigma > 1.5 * singles[0].noise_sigma
    assert stack[0].noise_sigma == stack[1].noise_sigma == pytest.approx(np.median([s.noise_sigma for s in singles]))
    assert stack[0].attrs["noise_source"].startswith("median over 2 of 2 slices of: flat fields")
    v = import_volume(path, (0, 3), size=16)
    assert len(v.slices) == 3 and v.slices[0].noise_sigma == pytest.approx(
        np.median([one(path, r, size=16).noise_sigma for r in range(3)])) and v.z_spacing == pytest.approx(0.5)  # rows one detector pixel apart, binned by 2
    for bad in [(2, 3), (0, 4), (2, 1)]:
        with pytest.raises(InputError, match=r"rows is .*; expected \(first, end\) with 0 <= first, first \+ 2 <= "
                                             r"end <= 3"):
            rows(path, bad)


def test_fastmri_slice_range_with_one_mask_and_multi_coil_refused(tmp_path):
    path = tmp_path / "knee.h5"
    write_fastmri(path, coils=1, slices=3, noise=0.01)
    stack = import_fastmri_slices(path, (0, 3), coils="none")
    assert len(stack) == 3 and len({m.noise_sigma for m in stack}) == 1
    assert np.array_equal(stack[1].y, import_fastmri(path, 1, coils="none").y)
    v = import_volume(path, (1, 3), coils="none")
    assert v.z_spacing == pytest.approx(3 / 0.5)  # 3 mm slices of 0.5 mm pixels (the header's field of view)
    multi = tmp_path / "multi.h5"
    write_fastmri(multi, coils=4, slices=2)
    with pytest.raises(InputError, match="has another forward model than .*; a volume measurement holds one"):
        import_fastmri_slices(multi, (0, 2))


# ------------------------------------------------------------------------------ command line
def test_cli_demo_import_and_reconstruct_a_volume_file(tmp_path, capsys):
    demo = tmp_path / "demo.h5"
    assert main(["demo", "volume", "--out", str(demo), "--slices", "4", "--size", "16", "--z-spacing", "2"]) == 0
    v = read_volume_measurement(demo)
    assert len(v.slices) == 4 and v.z_spacing == 2.0 and v.truth is not None
    out = tmp_path / "rec.h5"
    code = main(["reconstruct-volume", str(demo), "--rows", "1:4", "--out", str(out), "--solver", "dds",
                 "--prior", "gaussian", "--steps", "4", "--samples", "1", "--device", "cpu"])
    text = capsys.readouterr().out
    assert code == 0 and "Wrote" in text and "3 slices, dds, lam_z 0.25" in text  # 1 / 2^2
    with h5py.File(out, "r") as f:
        assert f["mean"].shape == (3, 1, 16, 16) and np.isfinite(f["mean"][()]).all()
    from diffrecon.volume import read_volume
    from diffrecon.volume.file import volume_geometry

    pixel = v.slices[0].pixel_size  # the result records the voxel size its exports carry
    assert volume_geometry(read_volume(out)) == (2.0 * pixel, pixel, v.slices[0].pixel_unit)

    scan = tmp_path / "scan.h5"
    write_dxchange(scan)
    imported = tmp_path / "rows.h5"
    assert main(["import", str(scan), "--rows", "0:3", "--size", "16", "--out", str(imported)]) == 0
    assert "3 slices (rows 0 to 2) of ct" in capsys.readouterr().out
    assert len(read_volume_measurement(imported).slices) == 3

    assert main(["reconstruct-volume", str(demo), "--out", str(tmp_path / "p.h5"), "--solver", "dds",
                 "--posterior", "--prior", "gaussian", "--device", "cpu"]) == 2
    assert "--posterior is DiffPIR's posterior path" in capsys.readouterr().err
    assert main(["import", str(scan), "--rows", "2:2", "--out", str(tmp_path / "x.h5")]) == 2
    err = capsys.readouterr().err.strip()
    assert "'2:2' is not a range A:B of at least 2 rows" in err and len(err.splitlines()) == 1


# ------------------------------------------------------------------------------ any mutation
def _fuzz_bases() -> dict:
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="diffrecon-volume-fuzz-"))
    write_volume_measurement(base / "volume.h5", volume_demo(3, 16, options={"n_views": 6}), z_spacing=2.0)
    _dxchange_noisy(base / "dxchange.h5")
    _nxtomo_noisy(base / "nxtomo.h5")
    return {"volume.h5": (base, lambda p: read_volume_measurement(p, rows=(1, 3))),
            "dxchange.h5": (base, lambda p: import_dxchange_rows(p, (0, 3), size=16)),
            "nxtomo.h5": (base, lambda p: import_nxtomo_rows(p, (1, 3)))}


def test_mutated_volume_files_read_or_raise_one_sentence():
    """Every mutation of the fuzz test of the readers (deleted datasets, dtypes, shapes, NaN,
    external links, virtual datasets, attributes, truncation, overwritten bytes) on a volume
    measurement and on the row-range importers' files: a result or one InputError sentence."""
    from hypothesis import given, strategies as st
    from test_fuzz_readers import FUZZ, MUTATIONS, check_reader

    bases = _fuzz_bases()

    @FUZZ
    @given(layout=st.sampled_from(sorted(bases)), **MUTATIONS)
    def check(layout, op, pick, shape, dtype_i, frac, data):
        base, reader = bases[layout]
        check_reader(layout, op, pick, shape, dtype_i, frac, data, reader, base)

    check()
