"""The procedural training mixture, patch training and the bundled procedural priors."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from diffrecon.phantoms import phantom
from diffrecon.priors import load_prior
from diffrecon import training
from diffrecon.cli.train import add_train_parser
from diffrecon.training import TrainConfig, train
from diffrecon.training.loop import TrainResult, draw_batch, make_unet, network_gflop
from diffrecon.training.procedural import FAMILIES, make_mixture, mixture_image


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_mixture_is_a_pure_function_of_the_index_and_covers_every_family():
    seen = {}
    for i in range(80):
        img, family = mixture_image(32, i)
        assert img.shape == (32, 32) and img.dtype == np.float32
        assert 0 <= img.min() and img.max() <= 1 and img.std() > 0.01, (i, family)
        seen.setdefault(family, i)
    assert set(seen) == set(FAMILIES)
    again, family = mixture_image(32, seen["cells"])
    assert family == "cells" and np.array_equal(again, mixture_image(32, seen["cells"])[0])
    assert not np.array_equal(mixture_image(32, 0)[0], mixture_image(32, 1)[0])
    stack = make_mixture(5, 32, first=3, workers=1)
    assert stack.shape == (5, 1, 32, 32) and np.array_equal(stack[2, 0], mixture_image(32, 5)[0])


def test_phantom_images_of_the_mixture_are_training_phantoms_up_to_contrast():
    i = next(i for i in range(40) if mixture_image(32, i)[1] == "phantoms")
    img, ref = mixture_image(32, i)[0].ravel(), phantom(32, i).ravel()
    # the mixture only changes contrast (affine map, gamma, slight blur): still strongly correlated
    assert np.corrcoef(img, ref)[0, 1] > 0.9


def test_patches_are_windows_of_the_images_and_the_whole_fraction_is_resized():
    images = torch.arange(3 * 8 * 8, dtype=torch.float32).reshape(3, 1, 8, 8)
    g = torch.Generator().manual_seed(0)
    idx = torch.tensor([0, 1, 2, 1, 0, 2])
    out = draw_batch(images, idx, 4, 1 / 3, g)
    assert out.shape == (6, 1, 4, 4)
    for b in range(2):
        ref = F.interpolate(images[idx[b]][None], size=(4, 4), mode="bilinear", antialias=True, align_corners=False)
        assert torch.allclose(out[b], ref[0])
    for b in range(2, 6):
        img = images[idx[b], 0]
        oy, ox = torch.nonzero(img == out[b, 0, 0, 0])[0].tolist()  # values are distinct: the corner fixes the window
        assert torch.equal(out[b, 0], img[oy:oy + 4, ox:ox + 4])
    assert torch.equal(draw_batch(images, idx, 8, 0.5, g), images[idx])  # whole images at the network size


def test_network_without_attention_runs_at_any_multiple_of_its_levels():
    unet = make_unet(16, (8, 16), 1, attention=False)
    assert not any("attention" in type(m).__name__.lower() for m in unet.modules())
    for size in (16, 26, 40):
        with torch.no_grad():
            assert unet(torch.randn(1, 1, size, size), torch.tensor([10])).sample.shape == (1, 1, size, size)


def test_patch_run_stops_at_its_time_limit_and_resumes(tmp_path):
    cfg = dict(data="procedural", n_images=6, size=16, image_size=32, channels=(8, 16), layers_per_block=1,
               batch_size=4, attention=False, device="cpu", log_every=2, data_cache=str(tmp_path / "cache"))
    out = tmp_path / "p"
    result = train(TrainConfig(steps=10, **cfg), out, progress=False, time_limit=0)
    card = json.loads((out / "card.json").read_text())
    # the limit is checked at log points: the run stops at the first one and says how far it got
    assert result.steps == 2 and len(result.losses) == 2 and card["extra"]["training_steps"] == 2
    assert card["extra"]["any_size"] is True and card["extra"]["attention"] is False
    assert card["extra"]["patch_size"] == 16 and card["extra"]["image_size"] == 32
    assert card["training_data"].startswith("6 procedural images")
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 1
    resumed = train(TrainConfig(steps=4, **cfg), out, progress=False, resume=True)
    assert resumed.first_step == 2
    log = json.loads((out / "training_log.json").read_text())
    assert [e["step"] for e in log["log"]] == [2, 4]


def test_cli_passes_the_patch_options_to_the_trainer(tmp_path, monkeypatch):
    seen = {}

    def fake_train(config, out, **kw):
        seen.update(config=config, **kw)
        return TrainResult(Path(out), 0, config.steps, 0.0)

    monkeypatch.setattr(training, "train", fake_train)
    parser = argparse.ArgumentParser()
    add_train_parser(parser.add_subparsers())
    args = parser.parse_args(["train", "--data", "procedural", "--size", "128", "--image-size", "256",
                              "--whole-fraction", "0.5", "--no-attention", "--time-limit", "30",
                              "--data-cache", str(tmp_path), "--out", str(tmp_path / "p")])
    args.func(args)
    c = seen["config"]
    assert (c.data, c.size, c.image_size, c.whole_fraction, c.attention, c.data_cache) == \
        ("procedural", 128, 256, 0.5, False, str(tmp_path))
    assert seen["time_limit"] == 30


def test_bundled_procedural_priors_cost_a_quarter_and_a_sixteenth_per_evaluation():
    flops = {}
    for name in ("procedural", "procedural-medium", "procedural-small"):
        d = load_prior(name)
        assert d.card.extra["any_size"] is True and d.card.extra["attention"] is False
        flops[name] = network_gflop(d.unet, 32, 1)
    assert 0.2 < flops["procedural-medium"] / flops["procedural"] < 0.3
    assert 0.05 < flops["procedural-small"] / flops["procedural"] < 0.08


@pytest.mark.parametrize("size", [64, 96])
def test_small_procedural_prior_denoises_at_sizes_other_than_its_training_patches(size):
    d = load_prior("procedural-small")
    # mixture indices far beyond the 12000 used for training
    x0 = torch.from_numpy(make_mixture(4, size, first=5_000_000, workers=1)) * 2 - 1
    sigma = 0.3
    x = x0 + sigma * torch.randn(x0.shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        x0_hat = d(x, sigma)
    assert (x0_hat - x0).square().mean() < 0.5 * (x - x0).square().mean()
