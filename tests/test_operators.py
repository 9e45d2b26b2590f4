"""Forward models: the conventions of operators/base.py, checked numerically for every kind."""
from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.ndimage
import torch

from diffrecon.errors import InputError
from diffrecon.operators import (
    MRI, OPERATORS, Blur, Denoise, Inpaint, MatrixOperator, ParallelBeamCT, RFBorn, SuperResolution,
    birdcage_maps, box_mask, build_operator, cartesian_mask, gaussian_kernel, limited_angle_angles,
    motion_kernel, random_mask, sparse_view_angles,
)


def _sparse_matrix(m: int, n: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    dense = torch.randn(m, n, generator=g) * (torch.rand(m, n, generator=g) < 0.1)
    return dense.to_sparse_csr()


FACTORIES = {
    "denoise": [lambda: Denoise((2, 16, 16))],
    "inpaint": [
        lambda: Inpaint((1, 16, 16), random_mask((16, 16), 0.5, seed=1)),
        lambda: Inpaint((2, 16, 16), np.stack([random_mask((16, 16), 0.3, seed=s) for s in (2, 3)])),
    ],
    "blur": [
        lambda: Blur((1, 16, 16), gaussian_kernel(5, 1.0)),
        lambda: Blur((2, 15, 16), motion_kernel(7, 30.0, 5.0)),
    ],
    "sr": [lambda: SuperResolution((1, 16, 16), 2), lambda: SuperResolution((2, 16, 16), 4)],
    "ct": [
        lambda: ParallelBeamCT((1, 16, 16), sparse_view_angles(12)),
        lambda: ParallelBeamCT((2, 16, 16), limited_angle_angles(120, 10), n_detectors=20, pixel_size=0.1),
    ],
    "mri": [
        lambda: MRI((1, 16, 16), cartesian_mask((16, 16), 4)),
        lambda: MRI((1, 16, 16), cartesian_mask((16, 16), 2, kind="equispaced"), image_complex=True),
        lambda: MRI((1, 16, 16), cartesian_mask((16, 16), 4), coil_maps=birdcage_maps((16, 16), 4)),
    ],
    "matrix": [
        lambda: MatrixOperator((1, 16, 16), torch.randn(50, 256, generator=torch.Generator().manual_seed(1))),
        lambda: MatrixOperator((2, 8, 8), torch.randn(40, 128, dtype=torch.complex64,
                                                      generator=torch.Generator().manual_seed(2))),
        lambda: MatrixOperator((1, 16, 16), _sparse_matrix(60, 256)),
    ],
    "rf": [lambda: RFBorn((1, 16, 16), [1.0e9, 2.0e9], 8, radius_m=0.2, pixel_size_m=0.01)],
}
CASES = [pytest.param(f, id=f"{kind}{i}") for kind, fs in FACTORIES.items() for i, f in enumerate(fs)]


def test_every_registered_kind_has_a_test_factory():
    assert set(FACTORIES) == set(OPERATORS)


def _rand(shape, complex_: bool, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if complex_:
        return torch.complex(torch.randn(shape, generator=g), torch.randn(shape, generator=g))
    return torch.randn(shape, generator=g)


def _image(op, batch=2, seed=0):
    return _rand((batch, *op.image_shape), op.image_complex, seed)


def _meas(op, batch=2, seed=1):
    return _rand((batch, *op.meas_shape), op.is_complex, seed)


def _real(t: torch.Tensor) -> torch.Tensor:
    return (torch.view_as_real(t) if t.is_complex() else t).double().reshape(t.shape[0], -1)


def _dot(a, b):
    return (_real(a) * _real(b)).sum(dim=1)


def _dense(op) -> torch.Tensor:
    """The real matrix of the real-linear map x -> A x, built column by column in one batch."""
    n = int(np.prod(op.image_shape))
    eye = torch.eye(n).reshape(n, *op.image_shape)
    cols = [_real(op.A(eye))]
    if op.image_complex:
        cols.append(_real(op.A(eye * 1j)))
    return torch.cat(cols, dim=0).T


def _dense_singular_values(op) -> torch.Tensor:
    """Singular values of the dense real matrix, descending (eigvalsh of the smaller Gram matrix
    is several times faster than an SVD on a busy CPU and accurate to ~1e-8 relative here)."""
    D = _dense(op)
    gram = D.T @ D if D.shape[0] >= D.shape[1] else D @ D.T
    return torch.linalg.eigvalsh(gram).clamp_min(0).sqrt().flip(0)


@pytest.mark.parametrize("factory", CASES)
def test_adjoint_satisfies_dot_product_identity(factory):
    op = factory()
    x, y = _image(op), _meas(op)
    lhs, rhs = _dot(op.A(x), y), _dot(x, op.A_adjoint(y))
    scale = _real(op.A(x)).norm(dim=1) * _real(y).norm(dim=1)
    assert torch.all((lhs - rhs).abs() <= 1e-4 * scale), (lhs, rhs)


@pytest.mark.parametrize("factory", CASES)
def test_batch_of_three_equals_three_single_calls(factory):
    op = factory()
    x, y = _image(op, 3), _meas(op, 3)
    for f, v in ((op.A, x), (op.A_adjoint, y)):
        whole = f(v)
        single = torch.cat([f(v[i : i + 1]) for i in range(3)])
        assert torch.allclose(whole, single, atol=1e-5 * whole.abs().max().item())


@pytest.mark.parametrize("factory", CASES)
def test_pinv_reproduces_measurement_on_the_range(factory):
    op = factory()
    ax = op.A(_image(op))
    back = op.A(op.A_pinv(ax))
    tol = 1e-4 if op.exact_pinv else 1e-2
    assert _real(back - ax).norm() <= tol * _real(ax).norm()


@pytest.mark.parametrize("factory", CASES)
def test_solve_regularized_satisfies_its_normal_equations(factory):
    op = factory()
    gamma = torch.tensor([0.1, 1.0]) * op.norm() ** 2
    y, z = op.A(_image(op, seed=5)) + 0.1 * _meas(op), _image(op, seed=6)
    x = op.solve_regularized(y, z, gamma)
    g = gamma.reshape(-1, *([1] * (z.ndim - 1)))
    residual = op.A_adjoint(op.A(x) - y) + g * (x - z)
    ref = _real(op.A_adjoint(y)).norm(dim=1) + gamma * _real(z).norm(dim=1)
    tol = 1e-4 if op.exact_pinv else 1e-3
    assert torch.all(_real(residual).norm(dim=1) <= tol * ref)


@pytest.mark.parametrize("factory", CASES)
def test_norm_agrees_with_largest_singular_value_of_dense_matrix(factory):
    op = factory()
    s_max = _dense_singular_values(op)[0].item()
    assert abs(op.norm() - s_max) <= 1e-2 * s_max


SVD_CASES = [p for p in CASES if p.values[0]().has_svd]


@pytest.mark.parametrize("factory", SVD_CASES)
def test_svd_reconstructs_operator_with_orthonormal_bases(factory):
    op = factory()
    x = _image(op)
    s = op.singulars()
    r = s.numel()
    assert torch.allclose(op.U(s * op.V_adjoint(x)[:, :r]), op.A(x), atol=1e-4 * op.A(x).abs().max().item())
    n = int(np.prod(op.image_shape))
    c = torch.randn(2, n)
    assert torch.allclose(op.V_adjoint(op.V(c)), c, atol=1e-4)
    assert torch.allclose(op.V(op.V_adjoint(x)), x, atol=1e-4)
    assert torch.allclose(op.U_adjoint(op.U(c[:, :r])), c[:, :r], atol=1e-4)
    dense_s = _dense_singular_values(op)[:r]
    assert torch.allclose(torch.sort(s.double(), descending=True).values, dense_s, atol=1e-4 * dense_s.max().item())


@pytest.mark.parametrize("factory", CASES)
def test_spec_round_trip_gives_the_same_forward_model(factory):
    op = factory()
    spec = op.to_spec()
    assert all(isinstance(a, np.ndarray) for a in spec.arrays.values())
    again = build_operator(spec)
    x = _image(op)
    assert type(again) is type(op) and again.meas_shape == op.meas_shape
    assert torch.allclose(again.A(x), op.A(x), atol=1e-6 * op.A(x).abs().max().item())


# ---------------------------------------------------------------------------- per kind
def test_inpaint_random_mask_hides_the_requested_fraction_and_boxes_hide_their_pixels():
    m = random_mask((3, 20, 20), 0.25, seed=4)
    assert m.shape == (20, 20) and (~m).sum() == 100
    b = box_mask((20, 20), [(2, 3, 4, 5)])
    assert (~b).sum() == 20 and not b[2:6, 3:8].any()
    with pytest.raises(InputError):
        box_mask((20, 20), [(18, 0, 4, 4)])


def test_blur_is_circular_convolution_centred_on_the_kernel():
    k = motion_kernel(5, 45.0, 4.0)
    k[0, 4] += 0.3  # break symmetry so a flipped or shifted kernel would be caught
    op = Blur((1, 16, 16), k)
    x = _image(op, 1)
    expected = scipy.ndimage.convolve(x[0, 0].numpy(), k / k.sum(), mode="wrap")
    assert np.allclose(op.A(x)[0, 0].numpy(), expected, atol=1e-5)


def test_superresolution_measures_block_means():
    op = SuperResolution((1, 8, 8), 4)
    x = _image(op, 1)
    assert torch.allclose(op.A(x)[0, 0, 1, 0], x[0, 0, 4:8, 0:4].mean(), atol=1e-6)
    with pytest.raises(InputError):
        SuperResolution((1, 8, 8), 3)


@pytest.mark.parametrize("acc", [4, 8])
@pytest.mark.parametrize("kind", ["random", "equispaced"])
def test_mri_mask_has_requested_acceleration_and_full_centre(acc, kind):
    m = cartesian_mask((64, 96), acc, kind=kind, seed=7)
    cols = m[0]
    assert (m == cols[None]).all()  # whole phase-encoding columns
    assert abs(96 / cols.sum() - acc) <= 0.1 * acc
    n_low = round(96 * 0.32 / acc)
    start = (96 - n_low + 1) // 2
    assert cols[start : start + n_low].all() and cols[48]


def test_mri_birdcage_maps_are_normalised_and_zero_filled_recon_inverts_full_sampling():
    S = birdcage_maps((16, 16), 6)
    assert np.allclose((np.abs(S) ** 2).sum(0), 1.0, atol=1e-5)
    op = MRI((1, 16, 16), np.ones((16, 16), bool), coil_maps=S)
    x = _image(op, 1)
    assert torch.allclose(op.direct(op.A(x)), x, atol=1e-5)
    k = op.A(x)
    assert torch.allclose(k[0, 0, 8, 8], (torch.from_numpy(S[0]) * x[0, 0]).sum() / 16, atol=1e-5)  # DC at centre


def _phantom(n: int) -> np.ndarray:
    from skimage.data import shepp_logan_phantom
    from skimage.transform import resize
    img = resize(shepp_logan_phantom(), (n, n), anti_aliasing=True).astype(np.float32)
    yy, xx = np.mgrid[:n, :n]
    return img * ((yy - n // 2) ** 2 + (xx - n // 2) ** 2 < (n // 2 - 2) ** 2)  # zero outside the circle


def test_ct_projection_matches_skimage_radon_within_two_percent():
    from skimage.transform import radon
    n, angles = 48, sparse_view_angles(20)
    img = _phantom(n)
    op = ParallelBeamCT((1, n, n), angles)
    y = op.A(torch.from_numpy(img)[None, None])[0, 0].numpy()
    ref = radon(img, angles, circle=True).T  # detectors centred at n // 2
    lo = op.n_det // 2 - n // 2
    assert np.abs(np.delete(y, range(lo, lo + n), axis=1)).max() < 1e-6  # nothing outside the circle
    assert np.linalg.norm(y[:, lo : lo + n] - ref) <= 0.02 * np.linalg.norm(ref)


def test_ct_fbp_matches_skimage_iradon_within_ten_percent_and_scales_with_pixel_size():
    from skimage.transform import iradon, radon
    n, angles = 48, sparse_view_angles(90)
    img = _phantom(n)
    op = ParallelBeamCT((1, n, n), angles)
    rec = op.fbp(op.A(torch.from_numpy(img)[None, None]))[0, 0].numpy()
    ref = iradon(radon(img, angles, circle=True), angles, circle=True, filter_name="ramp")
    yy, xx = np.mgrid[:n, :n]
    disk = (yy - n // 2) ** 2 + (xx - n // 2) ** 2 < (n // 2 - 2) ** 2
    assert np.linalg.norm((rec - ref)[disk]) <= 0.1 * np.linalg.norm(ref[disk])
    op_cm = ParallelBeamCT((1, n, n), angles, pixel_size=0.05)  # attenuation in 1/cm, 0.5 mm pixels
    x = torch.from_numpy(img)[None, None]
    assert torch.allclose(op_cm.A(x), 0.05 * op.A(x), rtol=1e-5, atol=1e-6)
    for name, tol in (("ramp", 0.2), ("shepp-logan", 0.25), ("hann", 0.4)):  # hann blurs most at 48 px
        rec_cm = op_cm.fbp(op_cm.A(x), filter=name)[0, 0].numpy()
        assert np.linalg.norm((rec_cm - img)[disk]) <= tol * np.linalg.norm(img[disk])
        assert abs(rec_cm[disk].mean() / img[disk].mean() - 1) <= 0.05  # units: 1/cm in, 1/cm out
    with pytest.raises(InputError):
        op.fbp(op.A(x), filter="cosine")


def test_ct_default_detector_count_is_odd_and_covers_the_diagonal():
    op = ParallelBeamCT((1, 24, 24), [0.0, 90.0])
    assert op.n_det == 35 and op.meas_shape == (1, 2, 35)


def test_rf_born_data_are_reciprocal_and_follow_the_formula():
    from scipy.special import hankel1
    op = RFBorn((1, 16, 16), [1.0e9, 2.0e9], 8, radius_m=0.2, pixel_size_m=0.01)
    x = torch.zeros(1, 1, 16, 16)
    x[0, 0, 3, 12] = 1.0
    y = op.A(x)[0]
    assert y.shape == (2, 8, 8) and torch.allclose(y, y.transpose(-1, -2), atol=1e-6 * y.abs().max().item())
    k = 2 * math.pi * 2.0e9 / 299792458.0
    p = np.array([(12 - 7.5) * 0.01, (7.5 - 3) * 0.01])
    tx, rx = 0.2 * np.array([1.0, 0.0]), 0.2 * np.array([0.0, 1.0])  # antennas 0 and 2 of 8
    G = lambda a, b: 0.25j * hankel1(0, k * np.linalg.norm(a - b))  # noqa: E731
    expected = k**2 * 0.01**2 * G(rx, p) * G(p, tx)
    assert abs(complex(y[1, 0, 2]) - expected) <= 1e-5 * abs(expected)
    with pytest.raises(InputError):
        RFBorn((1, 16, 16), [1.0e9], 8, radius_m=0.05, pixel_size_m=0.01)


def test_sparse_matrix_operator_equals_dense_and_its_gradient_is_the_adjoint():
    M = _sparse_matrix(60, 256)
    sparse, dense = MatrixOperator((1, 16, 16), M), MatrixOperator((1, 16, 16), M.to_dense())
    x = _image(sparse).requires_grad_(True)
    assert torch.allclose(sparse.A(x), dense.A(x), atol=1e-5)
    w = _meas(sparse)
    (sparse.A(x) * w).sum().backward()
    assert torch.allclose(x.grad, sparse.A_adjoint(w), atol=1e-5)
    assert not sparse.has_svd and dense.has_svd


def test_bad_settings_raise_input_error_naming_the_setting():
    with pytest.raises(InputError, match="kernel"):
        Blur((1, 8, 8), np.ones((9, 9)))
    with pytest.raises(InputError, match="mask"):
        Inpaint((1, 8, 8), np.ones((4, 4), bool))
    with pytest.raises(InputError, match="columns"):
        MatrixOperator((1, 4, 4), np.ones((3, 5)))
    with pytest.raises(InputError, match="acceleration"):
        cartesian_mask((8, 8), 0.5)


def test_reproducible_gpu_csr_product_equals_torch_csr_product_in_chunks(monkeypatch):
    import diffrecon.operators.matrix as matrix_module
    monkeypatch.setattr(matrix_module, "_CHUNK_ELEMENTS", 2000)  # force several column chunks
    op = ParallelBeamCT((1, 16, 16), sparse_view_angles(8))
    P, _ = op._matrices()
    X = torch.randn(256, 5, generator=torch.Generator().manual_seed(9))
    assert torch.allclose(matrix_module._rowwise_product(P, X), P @ X, atol=1e-5)
    M = _sparse_matrix(20, 256).to(torch.complex64)
    assert torch.allclose(matrix_module._rowwise_product(M, X.to(torch.complex64)), M @ X.to(torch.complex64), atol=1e-5)


def test_padded_row_product_equals_torch_csr_product_for_ct_and_complex_matrices_in_chunks(monkeypatch):
    import diffrecon.operators.matrix as matrix_module
    monkeypatch.setattr(matrix_module, "_CHUNK_ELEMENTS", 3000)  # force several row chunks
    op = ParallelBeamCT((1, 16, 16), limited_angle_angles(90, 9))
    X = torch.randn(256, 7, generator=torch.Generator().manual_seed(4))
    for M, Xm in zip(op._matrices(), (X, torch.randn(9 * op.n_det, 7))):
        ell = matrix_module.ell_from_csr(M)
        assert ell is not None and ell[0].shape[0] == M.shape[0]
        assert torch.allclose(matrix_module._ell_product(ell, Xm), M @ Xm, atol=1e-5)
    # a complex matrix with empty rows (a row of zeros has no entries to pad from)
    dense = (torch.randn(12, 30) + 1j * torch.randn(12, 30)) * (torch.rand(12, 30) < 0.3)
    dense[[2, 7]] = 0
    M = dense.to(torch.complex64).to_sparse_csr()
    Xc = torch.randn(30, 3, dtype=torch.complex64)
    assert torch.allclose(matrix_module._ell_product(matrix_module.ell_from_csr(M), Xc), M @ Xc, atol=1e-5)


def test_padded_rows_are_refused_for_a_matrix_with_one_long_row_and_never_built_on_the_cpu():
    import diffrecon.operators.matrix as matrix_module
    dense = torch.zeros(50, 40)
    dense[torch.arange(50), torch.arange(50) % 40] = 1.0
    dense[3] = 1.0  # one full row: padding every row to 40 would store 2000 entries for 89
    assert matrix_module.ell_from_csr(dense.to_sparse_csr()) is None
    assert matrix_module.ell_from_csr(dense[:, :1].contiguous().to_sparse_csr()) is not None
    cache = matrix_module.EllCache()
    assert cache.get("M", dense.to_sparse_csr()) is None  # CPU products use torch's kernel


def test_weighted_bag_product_equals_torch_csr_product_for_ct_and_empty_rows():
    import diffrecon.operators.matrix as matrix_module
    op = ParallelBeamCT((1, 16, 16), sparse_view_angles(7))
    for M in op._matrices():
        X = torch.randn(M.shape[1], 9, generator=torch.Generator().manual_seed(2))
        assert torch.allclose(matrix_module._bag_product(M, X), M @ X, atol=1e-5)
    dense = torch.randn(10, 12) * (torch.rand(10, 12) < 0.3)
    dense[[0, 4, 9]] = 0  # empty rows, the first and the last among them
    M = dense.to_sparse_csr()
    X = torch.randn(12, 3)
    assert torch.allclose(matrix_module._bag_product(M, X), M @ X, atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("triton", [True, False], ids=["triton", "embedding_bag"])
def test_ct_products_on_a_gpu_match_the_cpu_and_repeat_bitwise(triton, monkeypatch):
    from diffrecon.operators import _csr_triton
    if triton and not _csr_triton.AVAILABLE:
        pytest.skip("Triton is not installed")
    monkeypatch.setattr(_csr_triton, "AVAILABLE", triton)  # without Triton: the embedding_bag path
    op = ParallelBeamCT((3, 64, 64), sparse_view_angles(30))
    x = torch.rand(8, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    y_cpu, back_cpu = op.A(x), op.A_adjoint(op.A(x))
    gpu = op.to("cuda")
    xg = x.cuda().requires_grad_(True)
    runs = [gpu.A(xg) for _ in range(5)]
    assert all(torch.equal(runs[0], r) for r in runs[1:])
    assert torch.allclose(runs[0].cpu(), y_cpu, rtol=1e-5, atol=1e-4)
    assert torch.allclose(gpu.A_adjoint(runs[0]).detach().cpu(), back_cpu, rtol=1e-5, atol=1e-3)
    (runs[0] ** 2).sum().backward()  # the gradient is 2 A^T A x, through the stored A^T
    assert torch.allclose(xg.grad.cpu(), 2 * back_cpu, rtol=1e-5, atol=2e-3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_complex_sparse_matrix_products_on_a_gpu_match_the_cpu_and_repeat_bitwise():
    g = torch.Generator().manual_seed(6)
    dense = torch.complex(torch.randn(300, 256, generator=g), torch.randn(300, 256, generator=g))
    op = MatrixOperator((1, 16, 16), (dense * (torch.rand(300, 256, generator=g) < 0.05)).to_sparse_csr())
    x = torch.rand(24, 1, 16, 16, generator=g)
    y_cpu = op.A(x)
    back_cpu = op.A_adjoint(y_cpu)
    gpu = op.to("cuda")
    runs = [gpu.A(x.cuda()) for _ in range(5)]  # the padded-rows path: complex values
    assert all(torch.equal(runs[0], r) for r in runs[1:])
    assert torch.allclose(runs[0].cpu(), y_cpu, rtol=1e-5, atol=1e-4)
    assert torch.allclose(gpu.A_adjoint(runs[0]).cpu(), back_cpu, rtol=1e-5, atol=1e-3)


def test_pseudo_inverse_and_spectral_solvers_drop_the_same_small_singular_values():
    from diffrecon.linalg import PINV_RTOL
    from diffrecon.solvers._guidance import spectral_measurement

    g = torch.Generator().manual_seed(0)
    u, _ = torch.linalg.qr(torch.randn(4, 4, generator=g, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(16, 16, generator=g, dtype=torch.float64))
    s = torch.tensor([1.0, 1e-2, 100 * PINV_RTOL, 1e-3 * PINV_RTOL], dtype=torch.float64)
    op = MatrixOperator((1, 4, 4), (u @ torch.diag(s) @ v[:4]).float())
    y = u.T.float()  # row k: the measurement of singular direction k alone
    _, observed, _ = spectral_measurement(op, y)
    assert observed.tolist() == [True, True, True, False]
    norms = op.A_pinv(y).reshape(4, -1).norm(dim=1)
    assert norms[2] == pytest.approx(1 / (100 * PINV_RTOL), rel=0.05)  # kept: inverted in full
    assert norms[3] < 1.0  # dropped: not amplified by 1e9
