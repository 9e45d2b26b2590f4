"""Published prior formats on randomly initialised networks of their real architecture (small
widths): guided-diffusion checkpoints of any channel multipliers with or without learned
variances, diffusers UNet2DModel folders at 256 and 512 pixels with their value range in the
card; each loads through load_prior, reconstructs through the engine and refuses a malformed
file in one sentence; ``prior check`` says what the card must still say."""
from __future__ import annotations

import dataclasses
import json
import math
import pickle

import pytest
import torch
from safetensors.torch import save_file

from diffrecon.demo import make_demo
from diffrecon.engine import Finished, RunConfig, run
from diffrecon.errors import InputError
from diffrecon.priors import load_prior
from diffrecon.priors.adm import ADMConfig, ADMUNet
from diffrecon.priors.adm_layout import layout_from_weights
from diffrecon.priors.check import check_prior
from diffrecon.cli import main as cli_main

ADM_LAYOUTS = {
    # learned sigma, three levels with multipliers 1, 2, 3 (not a preset), BigGAN up/down blocks
    "learn_sigma_mult_123": ADMConfig(image_size=16, in_channels=1, model_channels=32, num_res_blocks=1,
                                      attention_resolutions=(8,), channel_mult=(1, 2, 3), num_head_channels=16),
    # epsilon only, strided-conv resampling, additive embedding, two blocks per level, attention at 2 levels
    "eps_conv_resample": ADMConfig(image_size=16, in_channels=1, model_channels=32, num_res_blocks=2,
                                   attention_resolutions=(16, 4), channel_mult=(1, 1, 2), num_head_channels=32,
                                   learn_sigma=False, resblock_updown=False, use_scale_shift_norm=False),
}


def _random_state(net: torch.nn.Module, seed: int = 0) -> dict:
    torch.manual_seed(seed)  # released networks zero their last convs; random values give non-trivial outputs
    return {k: (0.05 * torch.randn_like(v) if v.ndim > 1 else v).contiguous() for k, v in net.state_dict().items()}


def _card(config: ADMConfig, **extra) -> dict:
    return {"resolution": [config.image_size] * 2, "channels": config.in_channels, "value_range": [0.0, 1.0],
            "training_data": "random weights for a test",
            "extra": {"adm_config": {"num_head_channels": config.num_head_channels}}, **extra}


def _write_adm(tmp_path, config: ADMConfig, suffix=".safetensors", card=True, seed=0):
    state = _random_state(ADMUNet(config), seed)
    path = tmp_path / f"adm{suffix}"
    if suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save(state, path)
    if card:
        (tmp_path / f"{path.name}.card.json").write_text(json.dumps(_card(config) if card is True else card))
    return path, state


def _reconstruct(prior, size: int, samples: int = 1):
    m = make_demo("inpaint", size=size, seed=0)
    cfg = RunConfig(solver="dps", steps=2, samples=samples, device="cpu", precision="fp32", prior=str(prior),
                    prior_fit=False)
    return [ev for ev in run(m, cfg) if isinstance(ev, Finished)][0].result


def _one_sentence(err) -> str:
    msg = str(err.value)
    assert "\n" not in msg and len(msg) < 600 and "Traceback" not in msg, msg
    return msg


# ------------------------------------------------------------------------------ guided-diffusion
@pytest.mark.parametrize("name", sorted(ADM_LAYOUTS))
def test_adm_layout_is_read_from_the_weights(name):
    config = ADM_LAYOUTS[name]
    layout = layout_from_weights(ADMUNet(config).state_dict())
    assert layout["channel_mult"] == config.channel_mult and layout["num_res_blocks"] == config.num_res_blocks
    assert layout["learn_sigma"] == config.learn_sigma and layout["resblock_updown"] == config.resblock_updown
    assert layout["use_scale_shift_norm"] == config.use_scale_shift_norm
    assert set(layout["attention_ds"]) == set(config.attention_ds)


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
@pytest.mark.parametrize("name", sorted(ADM_LAYOUTS))
def test_adm_checkpoint_with_its_card_loads_through_load_prior_with_the_same_outputs(tmp_path, name, suffix):
    config = ADM_LAYOUTS[name]
    path, state = _write_adm(tmp_path, config, suffix)
    den = load_prior(str(path))
    assert den.network.config == config and den.card.value_range == (0.0, 1.0)
    assert den.card.training_data == "random weights for a test"
    reference = ADMUNet(config)
    reference.load_state_dict(state)
    x = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    sigma = torch.tensor([0.1, 5.0])
    with torch.no_grad():
        eps = reference(x / (1 + sigma**2).sqrt().reshape(-1, 1, 1, 1), den.timestep(sigma))
        out = den(x, sigma)
    assert eps.shape[1] == (2 if config.learn_sigma else 1)
    torch.testing.assert_close(out, x - sigma.reshape(-1, 1, 1, 1) * eps[:, :1], rtol=1e-4, atol=1e-5)


def test_adm_prior_reconstructs_through_the_engine(tmp_path):
    path, _ = _write_adm(tmp_path, ADM_LAYOUTS["learn_sigma_mult_123"])
    result = _reconstruct(path, 16, samples=2)
    assert result.mean.shape == (1, 16, 16) and math.isfinite(float(result.mean.sum()))
    assert result.metrics["nfe"] == 4 and float(result.std.max()) > 0


def test_adm_checkpoint_without_card_is_refused_naming_the_missing_size(tmp_path):
    path, _ = _write_adm(tmp_path, ADM_LAYOUTS["learn_sigma_mult_123"], card=False)
    with pytest.raises(InputError, match="does not record its image size") as err:
        load_prior(str(path))
    assert "adm.safetensors.card.json" in _one_sentence(err)


def test_malformed_adm_checkpoints_are_refused_in_one_sentence(tmp_path):
    config = ADM_LAYOUTS["learn_sigma_mult_123"]
    _, state = _write_adm(tmp_path, config)
    cases = {
        "renamed": {("middle_block.9.weight" if k == "middle_block.0.in_layers.2.weight" else k): v
                    for k, v in state.items()},
        "reshaped": {**state, "middle_block.0.in_layers.2.weight": torch.zeros(96, 96, 1, 1)},
        "foreign": {"encoder.weight": torch.zeros(4, 4)},
    }
    for name, bad in cases.items():
        path = tmp_path / name / "adm.safetensors"
        path.parent.mkdir()
        save_file(bad, str(path))
        (path.parent / "adm.safetensors.card.json").write_text(json.dumps(_card(config)))
        with pytest.raises(InputError) as err:
            load_prior(str(path))
        assert str(path) in _one_sentence(err), name


class _Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_pickle_with_objects_is_never_unpickled(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"input_blocks.0.0.weight": _Payload()}, f, protocol=2)
    with pytest.raises(InputError, match="could run code") as err:
        load_prior(str(path))
    _one_sentence(err)
    assert "this must never run" not in capsys.readouterr().out


# ------------------------------------------------------------------------------ diffusers folders
def _diffusers_folder(tmp_path, size: int, out_channels: int = 1, value_range=(-1024.0, 3071.0)):
    from diffusers import UNet2DModel

    from diffrecon.priors import PriorCard, save_diffusers_prior

    torch.manual_seed(0)  # the layout of published 256-pixel CT/MR folders, at small widths
    unet = UNet2DModel(sample_size=size, in_channels=1, out_channels=out_channels, layers_per_block=1,
                       block_out_channels=(8, 8, 16, 16, 16, 16), norm_num_groups=8,
                       down_block_types=("DownBlock2D",) * 4 + ("AttnDownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "AttnUpBlock2D") + ("UpBlock2D",) * 4)
    with torch.no_grad():
        for p in unet.parameters():
            p.add_(0.02 * torch.randn_like(p))
    card = PriorCard(name=f"ct-{size}", resolution=(size, size), channels=1, value_range=value_range,
                     sigma_min=0.01, sigma_max=150.0,
                     schedule={"kind": "vp_linear", "beta_start": 1e-4, "beta_end": 0.02, "timesteps": 1000},
                     training_data="random weights for a test", description="CT prior in Hounsfield units")
    return save_diffusers_prior(unet, card, tmp_path / f"prior{size}", fp16=False), unet


def test_diffusers_folder_at_256_keeps_its_declared_value_range_and_reconstructs(tmp_path):
    folder, _ = _diffusers_folder(tmp_path, 256)
    den = load_prior(str(folder))
    assert den.card.value_range == (-1024.0, 3071.0) and den.image_shape == (1, 256, 256)
    result = _reconstruct(folder, 256)
    assert result.mean.shape == (1, 256, 256) and math.isfinite(float(result.mean.sum()))


def test_diffusers_folder_at_512_with_learned_variances_uses_the_first_half(tmp_path):
    folder, unet = _diffusers_folder(tmp_path, 512, out_channels=2)
    den = load_prior(str(folder))
    x = torch.randn(1, 1, 512, 512, generator=torch.Generator().manual_seed(2))
    sigma = torch.tensor([3.0])
    with torch.no_grad():
        out = den(x, sigma)
        eps = unet.eval()(x / (1 + sigma**2).sqrt().reshape(-1, 1, 1, 1), den.timestep(sigma)).sample
    assert eps.shape[1] == 2
    torch.testing.assert_close(out, x - 3.0 * eps[:, :1], rtol=1e-4, atol=1e-4)


def test_malformed_diffusers_folders_are_refused_in_one_sentence(tmp_path):
    from safetensors.torch import load_file

    folder, _ = _diffusers_folder(tmp_path, 256)
    weights = folder / "diffusion_pytorch_model.safetensors"
    state = load_file(str(weights))
    key = next(k for k in state if k.endswith("conv_in.weight"))
    save_file({**state, key: torch.zeros(3, 3)}, str(weights))
    with pytest.raises(InputError, match="do not fit config.json") as err:
        load_prior(str(folder))
    _one_sentence(err)
    save_file({("x" + k if k == key else k): v for k, v in state.items()}, str(weights))
    with pytest.raises(InputError, match="do not fit config.json"):
        load_prior(str(folder))
    weights.unlink()
    torch.save(state, folder / "diffusion_pytorch_model.bin")
    with pytest.raises(InputError, match="only pickled weights") as err:
        load_prior(str(folder))
    _one_sentence(err)


# ------------------------------------------------------------------------------ prior check
def test_prior_check_says_what_the_card_must_still_say(tmp_path):
    config = ADM_LAYOUTS["learn_sigma_mult_123"]
    (tmp_path / "bare").mkdir()
    bare, _ = _write_adm(tmp_path / "bare", config, card=False)
    report = check_prior(bare)
    assert not report.loads and "does not record its image size" in report.error
    assert "channel_mult [1, 2, 3]" in " ".join(report.found) and "learn_sigma True" in " ".join(report.found)
    needs = " ".join(report.card_needs)
    for field in ("resolution", "value_range", "schedule", "training_data", "num_head_channels"):
        assert field in needs
    (tmp_path / "carded").mkdir()
    carded, _ = _write_adm(tmp_path / "carded", config)
    report = check_prior(carded)
    assert report.loads and report.error is None and [n for n in report.card_needs if "schedule" not in n] == []


def test_prior_check_of_a_folder_and_of_a_pickle_and_the_command(tmp_path, capsys):
    folder, _ = _diffusers_folder(tmp_path, 256)
    report = check_prior(folder)
    assert report.loads and "sample_size 256" in " ".join(report.found) and report.card_needs == []
    evil = tmp_path / "evil.pt"
    with open(evil, "wb") as f:
        pickle.dump({"w": _Payload()}, f, protocol=2)
    report = check_prior(evil)
    assert not report.loads and "could run code" in report.error
    assert cli_main(["prior", "check", str(folder)]) == 0
    assert "loads: yes" in capsys.readouterr().out
    assert cli_main(["prior", "check", str(evil), "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["loads"] is False
    assert cli_main(["prior", "check", str(tmp_path / "nothing")]) == 1


def test_check_report_is_plain_data():
    report = check_prior("/nonexistent/prior")
    assert dataclasses.asdict(report)["loads"] is False and "neither a prior folder" in report.error
