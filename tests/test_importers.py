"""Importers: small files in each layout are written here, imported back and checked numerically."""
from __future__ import annotations

import hashlib

import h5py
import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from diffrecon.coils import combine, fft2c, ifft2c, rss
from diffrecon.errors import InputError
from diffrecon.io import importers
from diffrecon.io.importers import import_dxchange, import_fastmri, import_formats, import_nxtomo, read_image, simulate
from diffrecon.operators import MRI, ParallelBeamCT, birdcage_maps, build_operator, cartesian_mask
from diffrecon.phantoms import phantom
from diffrecon import problems
from diffrecon.problems import simulate_names

N = 32


def image(n: int = N, seed: int = 1_000_000_000) -> np.ndarray:
    return phantom(n, seed).astype(np.float32)


# ------------------------------------------------------------------------------ file builders
def write_fastmri(path, *, coils: int = 4, slices: int = 3, mask: np.ndarray | None = None,
                  noise: float = 0.0, string_attrs: bool = False, reference: bool = True):
    """A fastMRI-layout file of ``slices`` phantom slices; returns (images, mask)."""
    rng = np.random.default_rng(0)
    images = np.stack([image(N, 1_000_000_000 + s) for s in range(slices)])
    maps = birdcage_maps((N, N), coils) if coils > 1 else np.ones((1, N, N), np.complex64)
    kspace = fft2c(maps[None] * images[:, None]).astype(np.complex64)
    kspace += (noise * (rng.standard_normal(kspace.shape) + 1j * rng.standard_normal(kspace.shape))).astype(np.complex64)
    if mask is not None:
        kspace *= mask
    with h5py.File(path, "w") as f:
        f.create_dataset("kspace", data=kspace if coils > 1 else kspace[:, 0])
        if reference:
            f.create_dataset("reconstruction_rss", data=rss(ifft2c(fft2c(maps[None] * images[:, None])), axis=1)
                             .astype(np.float32))
        f.attrs["acquisition"] = "CORPD_FBK"
        f.attrs["max"] = "0.5" if string_attrs else 0.5
        f.attrs["norm"] = "12.0" if string_attrs else 12.0
        f.attrs["patient_id"] = "abc"
        f.create_dataset("ismrmrd_header", data=np.bytes_(
            "<ismrmrdHeader><encoding><encodedSpace><matrixSize><x>32</x><y>32</y><z>1</z></matrixSize>"
            "<fieldOfView_mm><x>16.0</x><y>16.0</y><z>3</z></fieldOfView_mm></encodedSpace></encoding>"
            "</ismrmrdHeader>"))
    return images, mask


def ct_counts(n_angles: int = 45, rows: int = 3):
    """Phantom sinogram made by the CT operator and the raw counts a detector would record."""
    x = image() * 0.1
    angles = np.arange(n_angles) * 180.0 / n_angles
    op = ParallelBeamCT((1, N, N), angles, n_detectors=N)
    sino = op.A(torch.from_numpy(x)[None, None])[0, 0].numpy().astype(np.float64)
    flat = 1000.0 + 50.0 * np.random.default_rng(0).random((rows, N))
    dark = 10.0 + np.zeros((rows, N))
    proj = dark[None] + (flat - dark)[None] * np.exp(-sino)[:, None, :]
    return x, angles, sino, proj.astype(np.float32), flat.astype(np.float32), dark.astype(np.float32)


def write_dxchange(path, theta_units: str = "degrees"):
    x, angles, sino, proj, flat, dark = ct_counts()
    with h5py.File(path, "w") as f:
        f.create_dataset("exchange/data", data=proj)
        f.create_dataset("exchange/data_white", data=np.stack([flat, flat]))
        f.create_dataset("exchange/data_dark", data=dark[None])
        theta = np.radians(angles) if theta_units == "radians" else angles
        f.create_dataset("exchange/theta", data=theta).attrs["units"] = theta_units
    return x, sino


def write_nxtomo(path):
    x, angles, sino, proj, flat, dark = ct_counts()
    data = np.concatenate([dark[None], np.stack([flat, flat]), proj])
    keys = np.array([2, 1, 1] + [0] * len(proj), np.int32)
    rot = np.concatenate([[0.0, 0.0, 0.0], angles])
    nxtomo_file(path, data, keys, rot, units="degree")
    return x, sino


def nxtomo_file(path, frames, keys, rotation, units: str | None = None) -> None:
    """A minimal NXtomo file: detector frames with their image keys and rotation angles."""
    with h5py.File(path, "w") as f:
        e = f.create_group("entry")
        e.attrs["NX_class"] = "NXentry"
        e["definition"] = "NXtomo"
        det = e.create_group("instrument/detector")
        det.create_dataset("data", data=frames)
        det.create_dataset("image_key", data=keys)
        angles = e.create_dataset("sample/rotation_angle", data=rotation)
        if units is not None:
            angles.attrs["units"] = units


#: A writer of a small valid file per registered import format (a test checks it covers the registry).
WRITERS = {"fastmri": write_fastmri, "dxchange": write_dxchange, "nxtomo": write_nxtomo}


def digest(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def corr(a, b) -> float:
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


# ------------------------------------------------------------------------------ fastMRI
def test_fastmri_detected_mask_equals_written_mask(tmp_path):
    mask = cartesian_mask((N, N), 4, center_fraction=0.25, seed=3)
    write_fastmri(tmp_path / "f.h5", mask=mask)
    m = import_fastmri(tmp_path / "f.h5", slice=1)
    assert np.array_equal(m.operator.arrays["mask"], mask)
    assert m.y.shape == (4, N, N) and m.y.dtype == np.complex64
    assert m.operator.params["image_complex"] is False
    assert m.attrs["acceleration"] == pytest.approx(N / mask[0].sum())


def test_fastmri_coil_maps_combine_to_reference_image(tmp_path):
    images, _ = write_fastmri(tmp_path / "f.h5")
    m = import_fastmri(tmp_path / "f.h5", slice=0)
    maps = m.operator.arrays["coil_maps"]
    x = np.abs(combine(ifft2c(m.y), maps))
    ref = m.ground_truth[0]
    support = ref > 0.1 * ref.max()
    assert np.allclose(ref, images[0], atol=1e-4)
    assert np.abs(x - ref)[support].max() < 0.02 * ref.max()
    assert np.allclose((np.abs(maps) ** 2).sum(0)[support], 1.0, atol=1e-4)


def test_fastmri_forward_model_reproduces_y_from_reference(tmp_path):
    write_fastmri(tmp_path / "f.h5")
    m = import_fastmri(tmp_path / "f.h5", size=16, acceleration=2, center_fraction=0.5)
    op = build_operator(m.operator)
    y_hat = op.A(torch.from_numpy(m.ground_truth)[None])[0].numpy()
    assert m.y.shape == (4, 16, 16) and m.ground_truth.shape == (1, 16, 16)
    assert m.operator.arrays["mask"][0].sum() == 8
    assert np.linalg.norm(y_hat - m.y) / np.linalg.norm(m.y) < 0.15


def test_fastmri_noise_estimate_from_corners_is_within_25_percent(tmp_path):
    write_fastmri(tmp_path / "f.h5", noise=0.05, coils=8)
    m = import_fastmri(tmp_path / "f.h5")
    assert m.noise_sigma == pytest.approx(0.05, rel=0.25)
    assert m.operator.noise_sigma == m.noise_sigma


def test_fastmri_single_coil_with_string_attrs_gets_unit_phase_map_and_pixel_size(tmp_path):
    write_fastmri(tmp_path / "s.h5", coils=1, string_attrs=True)
    m = import_fastmri(tmp_path / "s.h5")
    maps = m.operator.arrays["coil_maps"]
    support = m.ground_truth[0] > 0.1 * m.ground_truth.max()
    assert maps.shape == (1, N, N) and np.allclose(np.abs(maps[0][support]), 1.0, atol=1e-5)
    assert m.attrs["max"] == 0.5 and m.attrs["norm"] == 12.0 and m.attrs["acquisition"] == "CORPD_FBK"
    assert m.pixel_size == pytest.approx(0.5) and m.pixel_unit == "mm"
    complex_m = import_fastmri(tmp_path / "s.h5", coils="none")
    assert complex_m.operator.params["image_complex"] is True and "coil_maps" not in complex_m.operator.arrays


def test_fastmri_refuses_retrospective_mask_on_undersampled_data(tmp_path):
    write_fastmri(tmp_path / "f.h5", mask=cartesian_mask((N, N), 4, center_fraction=0.25))
    with pytest.raises(InputError, match="fully sampled"):
        import_fastmri(tmp_path / "f.h5", acceleration=4)


@pytest.mark.parametrize("damage, message", [
    (lambda f: f.__delitem__("kspace"), "kspace"),
    (lambda f: (f.__delitem__("kspace"), f.create_dataset("kspace", data=np.zeros((2, 4, 8, 8)))), "dtype"),
    (lambda f: f.__setitem__("extra", h5py.ExternalLink("other.h5", "/x")), "external link"),
])
def test_fastmri_bad_files_raise_input_error_naming_the_problem(tmp_path, damage, message):
    write_fastmri(tmp_path / "f.h5")
    with h5py.File(tmp_path / "f.h5", "a") as f:
        damage(f)
    with pytest.raises(InputError, match=message):
        import_fastmri(tmp_path / "f.h5")


def test_fastmri_nan_in_chosen_slice_is_refused(tmp_path):
    write_fastmri(tmp_path / "f.h5")
    with h5py.File(tmp_path / "f.h5", "a") as f:
        f["kspace"][1, 0, 3, 3] = np.nan
    with pytest.raises(InputError, match="NaN"):
        import_fastmri(tmp_path / "f.h5", slice=1)
    with pytest.raises(InputError, match="slice"):
        import_fastmri(tmp_path / "f.h5", slice=7)


# ------------------------------------------------------------------------------ tomography
def test_dxchange_sinogram_inverts_flat_dark_correction_and_fbp_correlates(tmp_path):
    x, sino = write_dxchange(tmp_path / "d.h5")
    m = import_dxchange(tmp_path / "d.h5", slice=1)
    assert m.y.shape == (1, 45, N)
    assert np.allclose(m.y[0], sino, atol=1e-3)
    op = build_operator(m.operator)
    fbp = op.fbp(torch.from_numpy(m.y)[None])[0, 0].numpy()
    assert corr(fbp, x) > 0.9


def test_dxchange_theta_in_radians_becomes_degrees(tmp_path):
    write_dxchange(tmp_path / "d.h5", theta_units="radians")
    m = import_dxchange(tmp_path / "d.h5")
    assert np.allclose(m.operator.arrays["angles_deg"], np.arange(45) * 4.0, atol=1e-3)


def test_dxchange_rebinned_to_size_16_still_reconstructs_the_phantom(tmp_path):
    x, _ = write_dxchange(tmp_path / "d.h5")
    m = import_dxchange(tmp_path / "d.h5", size=16)
    assert m.y.shape == (1, 45, 16) and m.image_shape == (1, 16, 16)
    fbp = build_operator(m.operator).fbp(torch.from_numpy(m.y)[None])[0, 0].numpy()
    assert corr(fbp, x.reshape(16, 2, 16, 2).mean(axis=(1, 3))) > 0.85


def test_nxtomo_equals_dxchange_of_the_same_counts(tmp_path):
    _, sino = write_nxtomo(tmp_path / "n.h5")
    m = import_nxtomo(tmp_path / "n.h5")
    assert m.y.shape == (1, 45, N)
    assert np.allclose(m.y[0], sino, atol=1e-3)
    assert np.allclose(m.operator.arrays["angles_deg"], np.arange(45) * 4.0)


def test_nxtomo_without_entry_names_the_expectation(tmp_path):
    with h5py.File(tmp_path / "n.h5", "w") as f:
        f.create_dataset("data", data=np.zeros((4, 4)))
    with pytest.raises(InputError, match="NXtomo"):
        import_nxtomo(tmp_path / "n.h5")


@pytest.mark.parametrize("fmt", import_formats())
def test_importers_leave_input_file_bytes_unchanged(tmp_path, fmt):
    WRITERS[fmt](tmp_path / "f.h5")
    before = digest(tmp_path / "f.h5")
    importers.open(tmp_path / "f.h5", fmt)
    assert digest(tmp_path / "f.h5") == before


# ------------------------------------------------------------------------------ plain images
def test_read_image_tiff_png_h5_give_float32_chw_with_stored_values(tmp_path):
    a = np.arange(16 * 20, dtype=np.uint16).reshape(16, 20)
    tifffile.imwrite(tmp_path / "a.tif", a)
    rgb = np.zeros((16, 20, 3), np.uint8)
    rgb[..., 1] = 200
    Image.fromarray(rgb).save(tmp_path / "a.png")
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f.create_dataset("g/img", data=a.astype(np.float64))
        f.create_dataset("g/meta", data=np.zeros(3))
    t = read_image(tmp_path / "a.tif")
    assert t.shape == (1, 16, 20) and t.dtype == np.float32 and t[0, 3, 4] == 64
    p = read_image(tmp_path / "a.png")
    assert p.shape == (3, 16, 20) and p[1].min() == 200 and p[0].max() == 0
    assert np.array_equal(read_image(tmp_path / "a.h5")[0], a)


def test_read_image_refuses_truncated_png(tmp_path):
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(tmp_path / "a.png")
    data = open(tmp_path / "a.png", "rb").read()
    open(tmp_path / "b.png", "wb").write(data[: len(data) // 2])
    with pytest.raises(InputError, match="b.png"):
        read_image(tmp_path / "b.png")


#: Measurement shapes worked out by hand (a kind added later is checked against its operator's own).
SIMULATED_SHAPES = {"denoise": (1, N, N), "inpaint": (1, N, N), "deblur": (1, N, N), "sr": (1, 8, 8),
                    "ct": (1, 30, 47), "ct_limited": (1, 60, 47), "mri": (1, N, N)}


@pytest.mark.parametrize("kind", simulate_names())
def test_simulate_builds_each_kind_with_its_measurement_shape(kind):
    m = simulate(image(), kind, noise=0.01, seed=2)
    assert m.y.shape == SIMULATED_SHAPES.get(kind, problems.build(kind, (1, N, N)).meas_shape)
    op = build_operator(m.operator)
    clean = op.A(torch.from_numpy(m.ground_truth)[None])[0].numpy()
    assert 0.005 < np.std((m.y - clean)[np.abs(m.y - clean) > 0]) < 0.02


def test_simulate_refuses_unknown_option():
    with pytest.raises(InputError, match="n_views"):
        simulate(image(), "ct", {"views": 3})
