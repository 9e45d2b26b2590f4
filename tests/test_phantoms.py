import time

import numpy as np
import pytest

from diffrecon.errors import InputError
from diffrecon.phantoms import TEST_SEEDS, TRAIN_SEEDS, VALIDATION_SEEDS, phantom, phantom_batch


def test_phantom_is_deterministic_per_seed_and_float32_in_unit_range():
    a, b = phantom(64, 7), phantom(64, 7)
    assert a.dtype == np.float32 and a.shape == (64, 64)
    np.testing.assert_array_equal(a, b)
    assert a.min() >= 0.0 and a.max() <= 1.0
    assert a.max() > 0.3  # not blank


def test_phantoms_differ_across_seeds():
    ims = [phantom(48, s) for s in (0, 1, 2, TEST_SEEDS[0])]
    for i in range(len(ims)):
        for j in range(i + 1, len(ims)):
            assert np.abs(ims[i] - ims[j]).mean() > 0.02


def test_seed_ranges_are_disjoint():
    ranges = [TRAIN_SEEDS, VALIDATION_SEEDS, TEST_SEEDS]
    for i in range(3):
        for j in range(i + 1, 3):
            lo_i, hi_i = ranges[i][0], ranges[i][-1]
            lo_j, hi_j = ranges[j][0], ranges[j][-1]
            assert hi_i < lo_j or hi_j < lo_i


def test_phantom_batch_stacks_consecutive_seeds():
    batch = phantom_batch(3, 32, 10)
    assert batch.shape == (3, 1, 32, 32) and batch.dtype == np.float32
    np.testing.assert_array_equal(batch[2, 0], phantom(32, 12))


def test_phantoms_have_a_body_outline_with_empty_corners():
    for seed in range(5):
        im = phantom(64, seed)
        assert im[:3, :3].max() == 0.0 and im[-3:, -3:].max() == 0.0
        assert (im[24:40, 24:40] > 0).mean() > 0.9  # the centre is inside the body


def test_phantoms_have_fine_structure_and_are_not_piecewise_constant():
    for seed in range(4):
        im = phantom(128, seed)
        gy, gx = np.gradient(im.astype(np.float64))
        g = np.hypot(gx, gy)
        inside = im > 0
        # edges, vessels and dots: a few percent of the body pixels are steep
        steep = (g[inside] > 0.05).mean()
        assert 0.02 < steep < 0.5
        # smooth variation and texture: most body pixels change a little, not exactly zero
        gentle = ((g[inside] > 1e-4) & (g[inside] < 0.02)).mean()
        assert gentle > 0.4
        assert len(np.unique(im[inside])) > 0.5 * inside.sum()


def test_thin_vessels_reach_single_pixel_width():
    # Laplacian peaks (ridges one to two pixels wide) exist: second differences larger than
    # first differences happen only on thin lines and dots.
    im = phantom(128, 3).astype(np.float64)
    lap = np.abs(4 * im[1:-1, 1:-1] - im[:-2, 1:-1] - im[2:, 1:-1] - im[1:-1, :-2] - im[1:-1, 2:])
    assert (lap > 0.3).sum() >= 10


def test_phantom_128_is_fast():
    phantom(128, 0)
    start = time.perf_counter()
    for s in range(5):
        phantom(128, s)
    assert (time.perf_counter() - start) / 5 < 0.05


@pytest.mark.parametrize("size, seed", [(4, 0), (32, -1), (32.5, 0)])
def test_invalid_size_or_seed_is_refused(size, seed):
    with pytest.raises(InputError):
        phantom(size, seed)
