"""A tiny trained prior and a folder of small images, for the priors list's model and panel tests."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from diffrecon.training import TrainConfig, train

TINY = dict(data="phantoms", size=16, channels=(8, 16), batch_size=8, n_images=8, lr=2e-3, warmup_steps=1,
            log_every=5, device="cpu", seed=3, attention=False)


@pytest.fixture(scope="module")
def tiny_prior(tmp_path_factory):
    """A 16x16 DDPM prior trained 30 steps on phantoms (the tiny network of tests/test_training.py)."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("tiny_prior")
    train(TrainConfig(steps=30, **TINY), out, progress=False)
    return out


def write_image_folder(folder, n: int = 8, size: int = 16, seed: int = 0):
    """``n`` smooth 8-bit grayscale PNGs (blurred noise plus a disc): images unlike phantoms."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    for i in range(n):
        a = rng.normal(size=(size, size))
        a = (a + np.roll(a, 1, 0) + np.roll(a, 1, 1) + np.roll(a, (1, 1), (0, 1))) / 4
        a += 2.0 * (((yy - size / 2) ** 2 + (xx - size / 2) ** 2) < (size / 4 + i % 3) ** 2)
        a = (255 * (a - a.min()) / (a.max() - a.min())).astype(np.uint8)
        Image.fromarray(a).save(folder / f"img{i:02d}.png")
    return folder
