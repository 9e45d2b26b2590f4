import math

import pytest
import torch
from safetensors.torch import save_file

from diffrecon.demo import make_demo
from diffrecon.engine import Finished, RunConfig, run
from diffrecon.errors import InputError
from diffrecon.priors.adm import ADMConfig, ADMUNet, AttentionBlock, count_flops, match_preset
from diffrecon.priors.adm_layout import load_adm_prior

TINY = ADMConfig(image_size=16, in_channels=1, model_channels=32, num_res_blocks=1,
                 attention_resolutions=(8,), channel_mult=(1, 2), num_head_channels=16)


def _tiny_state(seed=0, config=TINY):
    torch.manual_seed(seed)
    net = ADMUNet(config)
    # The released networks start with zeroed output convs; random values make outputs non-trivial.
    return {k: (0.05 * torch.randn_like(v) if v.ndim > 1 else v) for k, v in net.state_dict().items()}


def _meta_state(config):
    with torch.device("meta"):
        return ADMUNet(config).state_dict()


def test_imagenet_preset_has_guided_diffusion_parameter_names_and_shapes():
    shapes = {k: tuple(v.shape) for k, v in _meta_state(ADMConfig.imagenet_256_uncond()).items()}
    # 566 entries and these names/shapes are those of 256x256_diffusion_uncond.pt (checked against
    # deepinv 0.5.0's DiffUNet(large_model=True), a port holding the same checkpoint).
    assert len(shapes) == 566
    assert shapes["time_embed.0.weight"] == (1024, 256)
    assert shapes["input_blocks.0.0.weight"] == (256, 3, 3, 3)
    assert shapes["input_blocks.1.0.in_layers.0.weight"] == (256,)
    assert shapes["input_blocks.1.0.emb_layers.1.weight"] == (512, 1024)  # scale and shift
    assert shapes["input_blocks.1.0.out_layers.3.weight"] == (256, 256, 3, 3)
    assert shapes["input_blocks.7.0.skip_connection.weight"] == (512, 256, 1, 1)
    assert shapes["input_blocks.10.1.qkv.weight"] == (1536, 512, 1)  # attention at 32 px
    assert shapes["input_blocks.10.1.proj_out.weight"] == (512, 512, 1)
    assert shapes["middle_block.1.qkv.weight"] == (3072, 1024, 1)
    assert shapes["output_blocks.2.2.in_layers.2.weight"] == (1024, 1024, 3, 3)  # up-sampling ResBlock
    assert shapes["out.2.weight"] == (6, 256, 3, 3)  # learned sigma: 2C outputs
    assert "input_blocks.3.0.op.weight" not in shapes  # resblock_updown: no resampling conv
    assert sum(math.prod(s) for s in shapes.values()) == 552_814_086


def test_ffhq_preset_is_recognised_from_checkpoint_shapes_alone():
    state = _meta_state(ADMConfig.ffhq_256())
    assert len(state) == 362
    assert match_preset(state) == ADMConfig.ffhq_256()
    assert match_preset(_meta_state(ADMConfig.imagenet_256_uncond())) == ADMConfig.imagenet_256_uncond()
    assert match_preset(_meta_state(TINY)) is None


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_saved_checkpoint_loads_back_with_identical_outputs(tmp_path, suffix):
    state = _tiny_state()
    path = tmp_path / f"tiny{suffix}"
    if suffix == ".pt":
        torch.save(state, path)
    else:
        save_file(state, str(path))
    den = load_adm_prior(path, config=TINY)
    ref = ADMUNet(TINY).eval()
    ref.load_state_dict(state)
    x, t = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(1)), torch.tensor([3.0, 700.0])
    with torch.no_grad():
        assert torch.equal(den.network(x, t), ref(x, t))
        assert den.network(x, t).abs().max() > 1e-3  # not a trivially zero network
    assert den.card.value_range == (-1.0, 1.0)
    assert den.card.schedule == {"kind": "vp_linear", "beta_start": 1e-4, "beta_end": 0.02, "timesteps": 1000}
    assert den.card.resolution == (16, 16) and den.card.channels == 1
    assert not any(p.requires_grad for p in den.parameters())


def test_pickle_holding_a_non_tensor_object_is_refused_with_one_sentence(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"input_blocks.0.0.weight": torch.zeros(1), "payload": _Payload()}, path)
    with pytest.raises(InputError, match="evil.pt is not a plain state dict of tensors and is refused"):
        load_adm_prior(path, config=TINY)


class _Payload:  # any class outside torch's allow-list: weights_only=True must refuse it
    pass


def test_wrong_config_and_unknown_suffix_and_class_conditional_are_refused(tmp_path):
    path = tmp_path / "tiny.safetensors"
    save_file(_tiny_state(), str(path))
    with pytest.raises(InputError, match="does not fit the given ADMConfig"):
        load_adm_prior(path, config=ADMConfig(image_size=16, in_channels=1, model_channels=64,
                                              num_res_blocks=1, attention_resolutions=(8,), channel_mult=(1, 2)))
    with pytest.raises(InputError, match="matches none of the presets"):
        load_adm_prior(path)
    (tmp_path / "w.ckpt").write_bytes(b"x")
    with pytest.raises(InputError, match="valid are .safetensors, .pt and .pth"):
        load_adm_prior(tmp_path / "w.ckpt")
    cond = tmp_path / "cond.safetensors"
    save_file({**_tiny_state(), "label_emb.weight": torch.zeros(10, 128)}, str(cond))
    with pytest.raises(InputError, match="class-conditional"):
        load_adm_prior(cond, config=TINY)


def test_denoiser_is_x_minus_sigma_times_first_channels_of_eps(tmp_path):
    path = tmp_path / "tiny.safetensors"
    save_file(_tiny_state(2), str(path))
    den = load_adm_prior(path, config=TINY)
    x = torch.randn(3, 1, 16, 16, generator=torch.Generator().manual_seed(3))
    sigma = torch.tensor([0.05, 1.0, 20.0])
    with torch.no_grad():
        out = den(x, sigma)
        t = den.timestep(sigma)
        eps = den.network(x / (1 + sigma**2).sqrt().reshape(-1, 1, 1, 1), t)
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert eps.shape == (3, 2, 16, 16)  # learned variance channels are there and dropped
    torch.testing.assert_close(out, x - sigma.reshape(-1, 1, 1, 1) * eps[:, :1], rtol=1e-5, atol=1e-5)


def test_count_flops_of_a_conv_equals_twice_its_multiply_adds():
    conv = torch.nn.Conv2d(3, 8, 3, padding=1)
    assert count_flops(conv, (2, 3, 16, 16)) == 2 * (2 * 8 * 16 * 16) * (3 * 3 * 3)


def test_count_flops_of_attention_counts_projections_and_both_products():
    block = AttentionBlock(32, num_heads=1, num_head_channels=16, new_order=False)
    b, c, n = 2, 32, 8 * 8
    qkv, proj = 2 * b * n * c * 3 * c, 2 * b * n * c * c
    products = 2 * (2 * b * n * n * c)  # Q K^T and A V, all heads together
    assert count_flops(block, (b, c, 8, 8)) == qkv + proj + products


def test_adm_prior_runs_in_the_engine_with_dps_and_gives_finite_samples(tmp_path):
    path = tmp_path / "tiny.safetensors"
    save_file(_tiny_state(), str(path))
    den = load_adm_prior(path, config=TINY)
    m = make_demo("inpaint", size=16, seed=0)
    cfg = RunConfig(solver="dps", steps=2, samples=2, device="cpu", precision="fp32")
    result = [ev for ev in run(m, cfg, denoiser=den) if isinstance(ev, Finished)][0].result
    assert result.n_samples == 2 and result.mean.shape == (1, 16, 16)
    assert math.isfinite(float(result.mean.sum())) and result.metrics["nfe"] == 4
