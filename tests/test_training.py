"""diffrecon.training: the DDPM loop learns, resumes exactly, writes a loadable prior, refuses bad input."""
from __future__ import annotations

import argparse
import json

import h5py
import numpy as np
import pytest
import torch

from diffrecon.errors import InputError
from diffrecon.priors.diffusers_vp import load_diffusers_prior
from diffrecon.cli.train import add_train_parser, run_train
from diffrecon.training import CHECKPOINT_DIR, LOG_FILE, TrainConfig, augment, load_training_data, make_unet, train

TINY = dict(data="phantoms", size=16, channels=(8, 16), batch_size=16, n_images=8, lr=2e-3,
            warmup_steps=1, log_every=5, device="cpu", seed=3)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("prior")
    return out, train(TrainConfig(steps=40, checkpoint_every=20, **TINY), out, progress=False)


def test_loss_decreases_over_forty_steps_on_phantoms(trained):
    losses = trained[1].losses
    assert len(losses) == 40
    first, last = np.mean(losses[:5]), np.mean(losses[-5:])
    assert last < 0.6 * first, (first, last)


def test_written_prior_loads_and_its_denoiser_beats_the_noisy_input(trained):
    out, result = trained
    denoiser = load_diffusers_prior(out)
    card = json.loads((out / "card.json").read_text())
    assert card["resolution"] == [16, 16] and card["value_range"] == [-1.0, 1.0]
    assert card["schedule"] == {"kind": "vp_linear", "beta_start": 1e-4, "beta_end": 0.02, "timesteps": 1000}
    assert card["extra"]["training_steps"] == 40
    assert card["extra"]["final_loss"] == pytest.approx(result.final_loss)
    x0 = load_training_data("phantoms", 16, n_images=8).images
    g = torch.Generator().manual_seed(0)
    sigma = 0.5
    x = x0 + sigma * torch.randn(x0.shape, generator=g)
    with torch.no_grad():
        x0_hat = denoiser(x, sigma)
    assert x0_hat.shape == x0.shape and torch.isfinite(x0_hat).all()
    assert (x0_hat - x0).square().mean() < 0.7 * (x - x0).square().mean()
    log = json.loads((out / LOG_FILE).read_text())
    assert log["device"] == "cpu" and [e["step"] for e in log["log"]] == list(range(5, 41, 5))


def test_resume_from_checkpoint_repeats_the_uninterrupted_losses_exactly(tmp_path):
    full = train(TrainConfig(steps=12, checkpoint_every=6, **TINY), tmp_path / "full", progress=False)
    train(TrainConfig(steps=6, **TINY), tmp_path / "split", progress=False)
    state = json.loads((tmp_path / "split" / CHECKPOINT_DIR / "trainer.json").read_text())
    assert state["step"] == 6
    resumed = train(TrainConfig(steps=12, **TINY), tmp_path / "split", resume=True, progress=False)
    assert resumed.first_step == 6
    assert resumed.losses == full.losses[6:]
    assert resumed.final_loss == full.final_loss


def test_augment_draws_all_eight_rotations_and_flips():
    img = torch.arange(16.0).reshape(1, 1, 4, 4).expand(400, 1, 4, 4)
    out = augment(img, torch.Generator().manual_seed(0))
    dihedral = {tuple(torch.rot90(m, k, (-2, -1)).flatten().tolist())
                for m in (img[0], img[0].flip(-1)) for k in range(4)}
    seen = {tuple(o.flatten().tolist()) for o in out}
    assert seen == dihedral and len(seen) == 8


def test_default_architecture_has_under_25_mb_of_fp16_weights():
    n = sum(p.numel() for p in make_unet(128).parameters())
    assert n == 8_949_761 and 2 * n < 25e6


def test_hdf5_stack_is_cropped_resized_and_scaled_by_its_percentiles(tmp_path):
    rng = np.random.default_rng(0)
    stack = rng.gamma(2.0, 100.0, (6, 20, 24)).astype(np.float32)
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f["images"] = stack
        f["meta"] = np.zeros(3)
    data = load_training_data(tmp_path / "d.h5", 16, n_images=100)
    assert data.images.shape == (6, 1, 16, 16)
    assert data.low == pytest.approx(np.percentile(stack, 0.1), rel=1e-5)
    assert data.high == pytest.approx(np.percentile(stack, 99.9), rel=1e-5)
    assert data.images.min() >= -1 and data.images.max() <= 1 and data.images.std() > 0.1


def test_image_folder_reads_png_and_tiff_pages(tmp_path):
    import tifffile
    from PIL import Image

    rng = np.random.default_rng(1)
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(tmp_path / f"a{i}.png")
    tifffile.imwrite(tmp_path / "b.tif", rng.random((3, 32, 16), dtype=np.float32), photometric="minisblack")
    data = load_training_data(tmp_path, 16, n_images=100)
    assert data.images.shape == (5, 1, 16, 16)


def _refused(tmp_path, **kw):
    with pytest.raises(InputError) as err:
        train(TrainConfig(**{**TINY, "steps": 2, **kw}), tmp_path / "out", progress=False)
    return str(err.value)


def test_bad_training_settings_are_refused_with_one_sentence(tmp_path):
    assert "does not exist" in _refused(tmp_path, data=str(tmp_path / "missing.h5"))
    assert "multiple of 4" in _refused(tmp_path, size=18, channels=(8, 16, 16))
    assert "--n-images" in _refused(tmp_path, n_images=2)
    assert "--lr" in _refused(tmp_path, lr=0.0)
    assert "--resume" in str(pytest.raises(InputError, train, TrainConfig(**TINY), tmp_path / "x",
                                           resume=True, progress=False).value)
    (tmp_path / "empty").mkdir()
    assert "holds no" in _refused(tmp_path, data=str(tmp_path / "empty"))
    with h5py.File(tmp_path / "few.h5", "w") as f:
        f["a"] = np.ones((2, 16, 16))
        f["b"] = np.ones((3, 16, 16))
    assert "--dataset" in _refused(tmp_path, data=str(tmp_path / "few.h5"))
    assert "at least 4" in _refused(tmp_path, data=str(tmp_path / "few.h5"), dataset="b")
    parser = argparse.ArgumentParser()
    args = add_train_parser(parser.add_subparsers()).parse_args(
        ["--data", "phantoms", "--out", str(tmp_path / "o"), "--channels", "8,x"])
    with pytest.raises(InputError, match="--channels"):
        run_train(args)


def test_existing_checkpoint_is_not_overwritten_without_resume(tmp_path):
    (tmp_path / "out" / CHECKPOINT_DIR).mkdir(parents=True)
    assert "--resume" in _refused(tmp_path)


# ------------------------------------------------------------------ --init-from
def test_init_from_starts_at_the_folders_weights_and_the_card_adds_the_steps(trained, tmp_path):
    import hashlib

    from safetensors.torch import load_file

    folder = trained[0]
    before = load_file(str(folder / "diffusion_pytorch_model.safetensors"))
    # a learning rate of 1e-12 leaves the weights where they started, up to far below fp16 resolution
    result = train(TrainConfig(**{**TINY, "steps": 1, "lr": 1e-12}), tmp_path / "next", progress=False,
                   init_from=folder)
    start = load_file(str(tmp_path / "next" / CHECKPOINT_DIR / "weights.safetensors"))
    assert set(before) == {k[6:] for k in start if k.startswith("model.")}
    for k, v in before.items():
        assert v.dtype == torch.float16
        torch.testing.assert_close(start[f"model.{k}"], v.float(), rtol=0, atol=1e-9)
        torch.testing.assert_close(start[f"ema.{k}"], v.float(), rtol=0, atol=1e-9)
    written = load_file(str(result.prior_folder / "diffusion_pytorch_model.safetensors"))
    assert all(torch.equal(written[k], before[k]) for k in before)
    extra = json.loads((result.prior_folder / "card.json").read_text())["extra"]
    assert extra["training_steps"] == 41 and extra["steps_this_run"] == 1
    digest = hashlib.sha256((folder / "diffusion_pytorch_model.safetensors").read_bytes()).hexdigest()
    assert extra["init_from"] == {"folder": folder.name, "sha256": digest, "training_steps": 40}


def test_init_from_run_learns_from_a_lower_first_loss_and_resume_keeps_its_record(trained, tmp_path):
    fresh = train(TrainConfig(**{**TINY, "steps": 3}), tmp_path / "fresh", progress=False)
    cont = train(TrainConfig(**{**TINY, "steps": 3}), tmp_path / "cont", progress=False, init_from=trained[0])
    assert cont.first_step == 0 and len(cont.losses) == 3
    assert np.mean(cont.losses) < 0.6 * np.mean(fresh.losses), (cont.losses, fresh.losses)
    train(TrainConfig(**{**TINY, "steps": 5}), tmp_path / "cont", resume=True, progress=False)
    extra = json.loads((tmp_path / "cont" / "card.json").read_text())["extra"]
    assert extra["training_steps"] == 45 and extra["init_from"]["training_steps"] == 40


def test_init_from_refuses_another_architecture_and_resume(trained, tmp_path):
    msg = str(pytest.raises(
        InputError, train, TrainConfig(**{**TINY, "steps": 2, "channels": (8, 32)}), tmp_path / "a",
        progress=False, init_from=trained[0]).value)
    assert "block_out_channels 8,16 (requested 8,32)" in msg and msg.count(". ") == 0
    msg = str(pytest.raises(InputError, train, TrainConfig(**{**TINY, "steps": 2, "layers_per_block": 1}),
                            tmp_path / "b", progress=False, init_from=trained[0]).value)
    assert "layers_per_block 2 (requested 1)" in msg
    msg = str(pytest.raises(InputError, train, TrainConfig(**{**TINY, "steps": 2}), tmp_path / "c",
                            resume=True, progress=False, init_from=trained[0]).value)
    assert "--init-from cannot be combined with --resume" in msg
    assert "not a folder" in str(pytest.raises(InputError, train, TrainConfig(**{**TINY, "steps": 2}),
                                               tmp_path / "d", progress=False, init_from=tmp_path / "nope").value)


def test_cli_init_from_takes_the_folders_architecture_unless_given(trained, tmp_path, capsys):
    parser = add_train_parser(argparse.ArgumentParser().add_subparsers())
    base = ["--data", "phantoms", "--steps", "2", "--batch-size", "4", "--n-images", "8", "--device", "cpu",
            "--no-progress", "--init-from", str(trained[0])]
    assert run_train(parser.parse_args(base + ["--out", str(tmp_path / "o")])) == 0
    assert "size, channels, layers_per_block from" in capsys.readouterr().out
    card = json.loads((tmp_path / "o" / "card.json").read_text())
    assert card["resolution"] == [16, 16] and card["extra"]["block_out_channels"] == [8, 16]
    with pytest.raises(InputError, match="sample_size 16 \\(requested 32\\)"):
        run_train(parser.parse_args(base + ["--out", str(tmp_path / "p"), "--size", "32"]))


def test_cli_init_from_a_fully_convolutional_folder_keeps_it_without_attention(tmp_path):
    folder = tmp_path / "noattn"
    train(TrainConfig(**{**TINY, "steps": 2, "attention": False}), folder, progress=False)
    parser = add_train_parser(argparse.ArgumentParser().add_subparsers())
    args = ["--data", "phantoms", "--steps", "2", "--batch-size", "4", "--n-images", "8", "--device", "cpu",
            "--no-progress", "--init-from", str(folder), "--out", str(tmp_path / "o")]
    assert run_train(parser.parse_args(args)) == 0  # without --no-attention: the folder's weights fit
    card = json.loads((tmp_path / "o" / "card.json").read_text())
    assert card["extra"]["attention"] is False and card["extra"]["init_from"]["training_steps"] == 2
