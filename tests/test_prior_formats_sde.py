"""EDM networks and score-SDE NCSN++ checkpoints from state dicts, on randomly initialised
networks of their real architectures (small widths): each loads through load_prior with the
output its own preconditioning formula gives, reconstructs through the engine, and refuses a
malformed file (truncated, wrong names, a pickle) in one sentence; ``prior check`` says what
the card must still say."""
from __future__ import annotations

import dataclasses
import json
import math
import pickle

import pytest
import torch
from safetensors.torch import save_file

from diffrecon.cli import main as cli_main
from diffrecon.errors import InputError
from diffrecon.priors import load_prior
from diffrecon.priors.check import check_prior
from diffrecon.priors.edm import edm_layout
from diffrecon.priors.ncsnpp import NCSNppConfig, key_map, song_config
from diffrecon.priors.songunet import DhariwalUNet, DhariwalUNetConfig, SongUNet, SongUNetConfig

from test_prior_formats import _Payload, _one_sentence, _reconstruct

EDM_LAYOUTS = {
    # EDM's NCSN++ (VE) network: Fourier embedding, residual encoder pyramid, [1, 3, 3, 1] FIR, augment labels
    "ncsnpp": SongUNetConfig(img_resolution=16, in_channels=1, out_channels=1, augment_dim=9, model_channels=32,
                             channel_mult=(1, 2, 2), num_blocks=2, attn_resolutions=(8,)),
    # EDM's DDPM++ (VP) network: positional embedding, standard encoder, [1, 1] FIR
    "ddpmpp": SongUNetConfig(img_resolution=16, in_channels=1, out_channels=1, model_channels=32,
                             channel_mult=(1, 2, 1), num_blocks=1, attn_resolutions=(16,), embedding_type="positional",
                             channel_mult_noise=1, encoder_type="standard", resample_filter=(1, 1)),
    # EDM's ADM network, 64 channels per attention head
    "adm": DhariwalUNetConfig(img_resolution=16, in_channels=1, out_channels=1, model_channels=64,
                              channel_mult=(1, 2), num_blocks=1, attn_resolutions=(8,)),
}


def _edm_net(config, seed=0):
    net = SongUNet(config) if isinstance(config, SongUNetConfig) else DhariwalUNet(config)
    torch.manual_seed(seed)
    with torch.no_grad():  # keep the stored FIR filters and Fourier frequencies as they are
        for p in net.parameters():
            p.copy_(0.05 * torch.randn_like(p) if p.ndim > 1 else p + 0.05 * torch.randn_like(p))
    return net.eval()


def _write_edm(tmp_path, name="ncsnpp", precond="edm", suffix=".safetensors", card=True, prefix="model."):
    """An EDM network saved as ``EDMPrecond.state_dict()`` would be (keys under ``model.``)."""
    net = _edm_net(EDM_LAYOUTS[name])
    state = {prefix + k: v.contiguous() for k, v in net.state_dict().items()}
    path = tmp_path / f"edm{suffix}"
    save_file(state, str(path)) if suffix == ".safetensors" else torch.save(state, path)
    if card:
        (tmp_path / f"{path.name}.card.json").write_text(json.dumps(
            {"value_range": [-1.0, 1.0], "training_data": "random weights for a test",
             "extra": {"edm": {"precond": precond, "sigma_data": 0.5}}}))
    return path, net


def _preconditioned(net, x, sigma, precond, sd=0.5):
    """EDM's Table 1 written out: c_skip x + c_out F(c_in x, c_noise)."""
    s = sigma.reshape(-1, 1, 1, 1)
    if precond == "edm":
        c_skip, c_out, c_in = sd**2 / (s**2 + sd**2), s * sd / (s**2 + sd**2).sqrt(), 1 / (s**2 + sd**2).sqrt()
        c_noise = sigma.log() / 4
    elif precond == "ve":
        c_skip, c_out, c_in, c_noise = 1.0, s, 1.0, (sigma / 2).log()
    else:  # vp, beta_d 19.9, beta_min 0.1, M 1000
        c_skip, c_out, c_in = 1.0, -s, 1 / (s**2 + 1).sqrt()
        c_noise = 999 * ((0.1**2 + 2 * 19.9 * (1 + sigma**2).log()).sqrt() - 0.1) / 19.9
    return c_skip * x + c_out * net(c_in * x, c_noise)


# ------------------------------------------------------------------------------------ EDM
@pytest.mark.parametrize("name", sorted(EDM_LAYOUTS))
def test_edm_layout_is_read_from_the_parameter_names(name):
    config = EDM_LAYOUTS[name]
    net = SongUNet(config) if isinstance(config, SongUNetConfig) else DhariwalUNet(config)
    assert edm_layout(net.state_dict(), "x") == config


@pytest.mark.parametrize("name,precond,suffix", [("ncsnpp", "edm", ".safetensors"), ("ncsnpp", "ve", ".pt"),
                                                  ("ddpmpp", "vp", ".safetensors"), ("adm", "edm", ".pt")])
def test_edm_state_dict_loads_through_load_prior_with_its_preconditioning(tmp_path, name, precond, suffix):
    path, net = _write_edm(tmp_path, name, precond, suffix)
    den = load_prior(str(path))
    assert den.image_shape == (1, 16, 16) and den.card.value_range == (-1.0, 1.0)
    assert den.card.extra["edm"]["precond"] == precond and den.card.training_data == "random weights for a test"
    x = torch.randn(3, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    sigma = torch.tensor([0.01, 0.7, 30.0])
    with torch.no_grad():
        want, got = _preconditioned(net, x, sigma, precond), den(x, sigma)
    # float32 rounding of outputs up to sigma times F (VE, VP at sigma 30): tolerance relative to the largest
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5 * float(want.abs().max()))
    assert float((got - x).abs().mean()) > 1e-3  # the network contributes


def test_edm_prior_reconstructs_through_the_engine(tmp_path):
    path, _ = _write_edm(tmp_path)
    result = _reconstruct(path, 16, samples=2)
    assert result.mean.shape == (1, 16, 16) and math.isfinite(float(result.mean.sum()))
    assert result.metrics["nfe"] == 4 and float(result.std.max()) > 0


def test_edm_pickle_is_refused_with_the_conversion_and_never_unpickled(tmp_path, capsys):
    for suffix in (".pkl", ".pickle"):
        path = tmp_path / f"edm-ffhq-64x64-uncond-ve{suffix}"
        with open(path, "wb") as f:
            pickle.dump({"ema": _Payload()}, f, protocol=2)
        with pytest.raises(InputError, match="never loaded") as err:
            load_prior(str(path))
        msg = _one_sentence(err)
        assert str(path) in msg and ".state_dict()" in msg and "torch.save" in msg and "['ema']" in msg
    assert "this must never run" not in capsys.readouterr().out


def test_malformed_edm_files_are_refused_in_one_sentence(tmp_path):
    path, net = _write_edm(tmp_path)
    state = {k: v.contiguous() for k, v in net.state_dict().items()}
    data = path.read_bytes()
    cases = {
        "truncated": None,
        "renamed": {("dec.16x16_block0.conv0.wait" if k == "dec.16x16_block0.conv0.weight" else k): v
                    for k, v in state.items()},
        "reshaped": {**state, "dec.16x16_block0.conv0.weight": torch.zeros(32, 7, 3, 3)},
        "conditional": {**state, "map_label.weight": torch.zeros(64, 10)},
    }
    for name, bad in cases.items():
        bad_path = tmp_path / name / "edm.safetensors"
        bad_path.parent.mkdir()
        if bad is None:
            bad_path.write_bytes(data[: len(data) // 2])
        else:
            save_file(bad, str(bad_path))
        with pytest.raises(InputError) as err:
            load_prior(str(bad_path))
        assert str(bad_path) in _one_sentence(err), name
    assert "class-conditional" in str(err.value)


# ------------------------------------------------------------------------------------ NCSN++
#: score-SDE's configs/ve/ffhq_256_ncsnpp_continuous.py model fields (output and input pyramids)
FFHQ_256 = NCSNppConfig(ch_mult=(1, 1, 2, 2, 2, 2, 2), num_res_blocks=2, progressive="output_skip",
                        progressive_input="input_skip")


@pytest.mark.parametrize("config,size,modules,parameters", [
    # counted on score_sde_pytorch's NCSNpp (first release) built from these configs with 3 channels
    (NCSNppConfig(), 32, 59, 62_758_915), (FFHQ_256, 256, 77, 65_574_549)])
def test_ncsnpp_key_map_walks_the_published_configurations(config, size, modules, parameters):
    rows = key_map(config, size)
    assert len({src.split(".")[1] for src, _, _ in rows}) == modules
    with torch.device("meta"):
        song = SongUNet(song_config(config, size, 3))
    assert sum(v.numel() for k, v in song.state_dict().items() if not k.endswith("resample_filter")) == parameters
    assert ("all_modules.4.Conv_0.weight", f"enc.{size}x{size}_block0.conv0.weight", "copy") in rows


SMALL = NCSNppConfig(nf=32, ch_mult=(1, 2, 2), num_res_blocks=2, attn_resolutions=(8,))


def _score_sde_state(net: SongUNet, config: NCSNppConfig, size: int) -> dict:
    """The network's parameters under score-SDE's names (the inverse of the loader's renaming)."""
    song = net.state_dict()
    out = {}
    for src, dst, how in key_map(config, size):
        if dst not in song:
            continue  # a shortcut convolution this block does not have
        v = song[dst]
        if how == "copy":
            out[src] = v.clone()
        elif how == "t":
            out[src] = v[:, :, 0, 0].t().contiguous()
        else:
            j = "qkv".index(how)
            out[src] = (v.reshape(-1, 3, v.shape[1])[:, j, :].t().contiguous() if v.ndim == 4
                        else v.reshape(-1, 3)[:, j].contiguous())
    return out


def _card_ncsnpp(config=SMALL, size=16) -> dict:
    return {"resolution": [size, size], "sigma_min": 0.01, "sigma_max": 50.0, "value_range": [0.0, 1.0],
            "training_data": "random weights for a test",
            "extra": {"ncsnpp": {k: list(v) if isinstance(v, tuple) else v
                                 for k, v in dataclasses.asdict(config).items()}}}


def _write_ncsnpp(tmp_path, card=True, ema=True):
    """A score-SDE training checkpoint (``checkpoint_N.pth``): raw weights under ``model`` with
    DataParallel's ``module.`` names, the EMA weights as ``ema.shadow_params`` in parameter order."""
    ema_net, raw_net = _edm_net(song_config(SMALL, 16, 1)), _edm_net(song_config(SMALL, 16, 1), seed=5)
    raw_net.map_noise.freqs.copy_(ema_net.map_noise.freqs)  # not trained: the same in both
    shadow_state = _score_sde_state(ema_net, SMALL, 16)
    model = {"module.sigmas": torch.linspace(50, 0.01, 10),
             **{f"module.{k}": v for k, v in _score_sde_state(raw_net, SMALL, 16).items()}}
    names = [k for k in model if k not in ("module.sigmas", "module.all_modules.0.W")]
    ckpt = {"model": model, "step": 1000, "optimizer": {"state": {}, "param_groups": [{"lr": 2e-4, "params": []}]}}
    if ema:
        ckpt["ema"] = {"decay": 0.999, "num_updates": 1000,
                       "shadow_params": [shadow_state[k.removeprefix("module.")] for k in names]}
    path = tmp_path / "checkpoint_24.pth"
    torch.save(ckpt, path)
    if card:
        (tmp_path / f"{path.name}.card.json").write_text(json.dumps(_card_ncsnpp() if card is True else card))
    return path, ema_net, raw_net


def test_ncsnpp_checkpoint_loads_its_ema_weights_as_the_tweedie_denoiser(tmp_path):
    path, net, raw = _write_ncsnpp(tmp_path)
    den = load_prior(str(path))
    assert den.card.value_range == (0.0, 1.0) and (den.card.sigma_min, den.card.sigma_max) == (0.01, 50.0)
    x = torch.rand(3, 1, 16, 16, generator=torch.Generator().manual_seed(3))
    sigma = torch.tensor([0.02, 1.0, 40.0])
    s4 = sigma.reshape(-1, 1, 1, 1)
    with torch.no_grad():  # score-SDE: s = h(2x - 1, log sigma) / sigma; Tweedie: D = x + sigma^2 s
        score = net(2 * x - 1, sigma.log()) / s4
        want, got = x + s4**2 * score, den(x, sigma)
        raw_out = x + s4 * raw(2 * x - 1, sigma.log())
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    assert float((got - raw_out).abs().max()) > 1e-2  # the EMA weights, not the raw ones


def test_ncsnpp_prior_reconstructs_through_the_engine(tmp_path):
    path, _, _ = _write_ncsnpp(tmp_path)
    result = _reconstruct(path, 16, samples=2)
    assert result.mean.shape == (1, 16, 16) and math.isfinite(float(result.mean.sum()))
    assert float(result.std.max()) > 0


def test_malformed_ncsnpp_checkpoints_are_refused_in_one_sentence(tmp_path):
    (tmp_path / "bare").mkdir()
    bare, _, _ = _write_ncsnpp(tmp_path / "bare", card=False)
    with pytest.raises(InputError, match="does not record its image size") as err:
        load_prior(str(bare))
    assert "checkpoint_24.pth.card.json" in _one_sentence(err)
    (tmp_path / "wrong").mkdir()
    wrong, _, _ = _write_ncsnpp(tmp_path / "wrong", card=_card_ncsnpp(dataclasses.replace(SMALL, num_res_blocks=1)))
    with pytest.raises(InputError, match="extra.ncsnpp") as err:
        load_prior(str(wrong))
    assert str(wrong) in _one_sentence(err)
    other = _card_ncsnpp()
    other["extra"]["ncsnpp"]["resblock_type"] = "ddpm"
    (tmp_path / "wrong" / "checkpoint_24.pth.card.json").write_text(json.dumps(other))
    with pytest.raises(InputError, match="resblock_type is 'ddpm'; only 'biggan'") as err:
        load_prior(str(wrong))
    _one_sentence(err)
    (tmp_path / "cut").mkdir()
    path, _, _ = _write_ncsnpp(tmp_path / "cut")
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(InputError, match="truncated or damaged") as err:
        load_prior(str(path))
    assert str(path) in _one_sentence(err)
    obj = torch.load(bare, weights_only=True)
    obj["ema"]["shadow_params"] = obj["ema"]["shadow_params"][:-1]
    torch.save(obj, path)
    with pytest.raises(InputError, match="shadow_params") as err:
        load_prior(str(path))
    _one_sentence(err)


def _score_ve_folder(tmp_path):
    """A diffusers UNet2DModel with the Fourier noise embedding (the form of diffusers' score-SDE
    VE networks), its card declaring the SDE's sigma range and no beta schedule."""
    from diffusers import UNet2DModel

    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=16, in_channels=1, out_channels=1, time_embedding_type="fourier",
                       center_input_sample=True, layers_per_block=1, block_out_channels=(16, 32), norm_num_groups=8,
                       down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"))
    with torch.no_grad():
        for p in unet.parameters():
            p.add_(0.05 * torch.randn_like(p))
    folder = tmp_path / "score_ve"
    unet.save_config(folder)
    save_file({k: v.contiguous() for k, v in unet.state_dict().items()},
              str(folder / "diffusion_pytorch_model.safetensors"))
    (folder / "card.json").write_text(json.dumps(
        {"name": "ve", "resolution": [16, 16], "channels": 1, "value_range": [0.0, 1.0], "sigma_min": 0.01,
         "sigma_max": 50.0, "schedule": {"kind": "ve"}, "training_data": "random weights for a test"}))
    return folder, unet.eval()


def test_diffusers_score_ve_folder_is_the_tweedie_denoiser_of_its_score(tmp_path):
    folder, unet = _score_ve_folder(tmp_path)
    den = load_prior(str(folder))
    x = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(4))
    sigma = torch.tensor([0.05, 20.0])
    with torch.no_grad():  # the model returns the score (it divides by sigma itself)
        want, got = x + sigma.reshape(-1, 1, 1, 1) ** 2 * unet(x, sigma).sample, den(x, sigma)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5 * float(want.abs().max()))
    report = check_prior(folder)
    assert report.loads and report.card_needs == [] and "VE score network" in report.found[-1]
    result = _reconstruct(folder, 16)
    assert result.mean.shape == (1, 16, 16) and math.isfinite(float(result.mean.sum()))


# ------------------------------------------------------------------------------------ prior check
def test_prior_check_reports_edm_and_ncsnpp_and_what_their_cards_must_say(tmp_path, capsys):
    (tmp_path / "e").mkdir()
    edm, _ = _write_edm(tmp_path / "e", card=False)
    report = check_prior(edm)
    assert report.format.startswith("an EDM network") and report.loads
    assert "SongUNet (NCSN++), 1 channel(s) at 16x16" in " ".join(report.found)
    assert "EDM preconditioning (sigma_data 0.5)" in report.found[-1]
    assert any(n.startswith("extra.edm.precond") for n in report.card_needs)
    (tmp_path / "n").mkdir()
    bare, _, _ = _write_ncsnpp(tmp_path / "n", card=False)
    report = check_prior(bare)
    assert not report.loads and "does not record its image size" in report.error
    assert "EMA weights (ema.shadow_params) used" in report.found
    needs = " ".join(report.card_needs)
    for field in ("resolution", "extra.ncsnpp", "sigma_min", "value_range", "training_data"):
        assert field in needs
    (tmp_path / "c").mkdir()
    carded, _, _ = _write_ncsnpp(tmp_path / "c")
    report = check_prior(carded)
    assert report.loads and report.card_needs == [], report.card_needs
    assert "value range [0.0, 1.0], sigma 0.01..50, VE score network: D = x + sigma^2 s" in report.found[-1]
    pkl = tmp_path / "net.pkl"
    pkl.write_bytes(b"\x80\x02}q\x00.")
    assert cli_main(["prior", "check", str(pkl)]) == 1
    out = capsys.readouterr().out
    assert "a Python pickle" in out and "never loaded" in out
    assert cli_main(["prior", "check", str(edm)]) == 0
    assert "loads: yes" in capsys.readouterr().out
