"""The bundled prior: it loads, its card is complete, a short reconstruction runs with it, and
its denoiser beats the Gaussian prior's on held-out phantoms."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from diffrecon import engine
from diffrecon.demo import make_demo
from diffrecon.phantoms import TEST_SEEDS, phantom_batch
from diffrecon.priors import default_prior_folder, load_prior

pytest.importorskip("diffusers")


@pytest.fixture(scope="module")
def prior():
    return load_prior("default", (1, 128, 128))


def test_bundled_prior_is_a_small_fp16_safetensors_folder_with_a_complete_card():
    folder = default_prior_folder()
    assert folder is not None
    weights = folder / "diffusion_pytorch_model.safetensors"
    assert weights.stat().st_size < 40e6
    card = json.loads((folder / "card.json").read_text())
    assert card["resolution"] == [128, 128] and card["channels"] == 1
    assert card["value_range"] == [-1.0, 1.0]
    assert card["schedule"]["kind"] == "vp_linear" and card["schedule"]["timesteps"] == 1000
    assert "phantom" in card["training_data"].lower()
    assert card["extra"]["training_steps"] >= 1000 and 0 < card["extra"]["final_loss"] < 0.05
    from safetensors import safe_open

    with safe_open(str(weights), "pt") as f:
        assert {f.get_tensor(k).dtype for k in list(f.keys())[:10]} == {torch.float16}


def test_bundled_prior_loads_as_the_default_prior(prior):
    assert tuple(prior.image_shape) == (1, 128, 128)
    assert prior.sigma_max > 50 and prior.sigma_min < 0.05
    assert not any(p.requires_grad for p in prior.parameters())


def test_five_step_reconstruction_with_the_bundled_prior_runs(prior):
    m = make_demo("inpaint", size=128, seed=0)
    cfg = engine.RunConfig(solver="ddnm", steps=5, samples=2, device="cpu")
    result = list(engine.run(m, cfg, denoiser=prior))[-1].result
    assert np.isfinite(result.mean).all() and np.isfinite(result.std).all()
    assert result.std.max() > 0 and result.metrics["nfe"] == 10


@pytest.mark.parametrize("sigma", [0.05, 0.2, 0.5])
def test_bundled_denoiser_beats_the_gaussian_prior_on_held_out_phantoms(prior, sigma):
    x01 = torch.from_numpy(phantom_batch(4, 128, TEST_SEEDS[100]))
    noise = torch.randn(x01.shape, generator=torch.Generator().manual_seed(0))
    gaussian = load_prior("gaussian", (1, 128, 128))
    with torch.no_grad():
        # the Gaussian prior works in [0, 1], the network in [-1, 1]: compare in [0, 1]
        mse_gauss = float((gaussian(x01 + sigma * noise, sigma) - x01).square().mean())
        net = prior(2 * x01 - 1 + 2 * sigma * noise, 2 * sigma)
        mse_net = float(((net + 1) / 2 - x01).square().mean())
    assert mse_net < 0.7 * mse_gauss, (mse_net, mse_gauss)


def test_two_threads_loading_the_bundled_prior_at_once_both_succeed():
    """The window predicts (one thread) while the first run starts (another); both load the prior,
    the first import of diffusers included, which must not race."""
    import subprocess
    import sys

    code = (
        "import threading\n"
        "from diffrecon.priors import load_prior\n"
        "out = []\n"
        "def load():\n"
        "    try:\n"
        "        out.append(type(load_prior('default', (1, 128, 128))).__name__)\n"
        "    except Exception as err:\n"
        "        out.append(repr(err))\n"
        "ts = [threading.Thread(target=load) for _ in range(3)]\n"
        "[t.start() for t in ts]\n"
        "[t.join() for t in ts]\n"
        "print(out)\n"
        "assert out == ['VPEpsilonDenoiser'] * 3, out\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)
