"""Network priors at any image size: whole-image (native, padded) and patch denoisers."""
import dataclasses

import pytest
import torch
from torch import nn

from diffrecon import engine
from diffrecon.demo import make_demo
from diffrecon.errors import InputError
from diffrecon.priors import PriorCard, StationaryGaussianPrior, load_prior, prior_for_size, prior_size_mode
from diffrecon.priors.fitted import fit_needed
from diffrecon.priors.base import Denoiser
from diffrecon.priors.diffusers_vp import VPEpsilonDenoiser, alphas_cumprod_from_schedule
from diffrecon.priors.patches import PaddedDenoiser, PatchDenoiser, size_mode, sized_denoiser

SCHEDULE = {"kind": "vp_linear", "beta_start": 1e-4, "beta_end": 0.02, "timesteps": 1000}


def _card(size: int, **extra) -> PriorCard:
    return PriorCard(name="tiny", resolution=(size, size), channels=1, value_range=(-1.0, 1.0), sigma_min=0.01,
                     sigma_max=80.0, schedule=SCHEDULE, extra=extra)


class Identity(Denoiser):
    """Returns its input: any patch layout must give the image back exactly."""

    def __init__(self, size: int):
        super().__init__()
        self.card = _card(size)

    def forward(self, x, sigma):
        return x.float()


class LocalConv(Denoiser):
    """Three 3x3 convolutions without normalisation: each output pixel sees 3 pixels around it,
    so a patch's output is exact wherever it lies 3 pixels inside the patch."""

    radius = 3

    def __init__(self, size: int):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Tanh(), nn.Conv2d(4, 4, 3, padding=1), nn.Tanh(),
                                 nn.Conv2d(4, 1, 3, padding=1))
        self.card = _card(size)

    def forward(self, x, sigma):
        s = torch.as_tensor(sigma, dtype=torch.float32).reshape(-1, 1, 1, 1)
        return x.float() - s * self.net(x.float() / (1 + s * s).sqrt())


def _unet(size: int, attention: bool) -> VPEpsilonDenoiser:
    from diffusers import UNet2DModel

    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=size, in_channels=1, out_channels=1, block_out_channels=(8, 16),
                       layers_per_block=1, norm_num_groups=4, add_attention=attention,
                       down_block_types=("DownBlock2D", "AttnDownBlock2D" if attention else "DownBlock2D"),
                       up_block_types=("AttnUpBlock2D" if attention else "UpBlock2D", "UpBlock2D")).eval()
    return VPEpsilonDenoiser(unet, alphas_cumprod_from_schedule(SCHEDULE), _card(size))


@pytest.mark.parametrize("shape", [(1, 32, 32), (1, 40, 72), (1, 17, 23), (2, 100, 33)])
def test_patches_of_the_identity_give_the_image_back_at_every_shift(shape):
    den = sized_denoiser(Identity(32), (1, *shape[1:]), how="patches", overlap=12, margin=2)
    x = torch.randn(2, 1, *shape[1:])
    for sigma in (0.05, 0.3, 1.0, 7.0, 40.0):
        assert torch.allclose(den(x, sigma), x, rtol=0, atol=1e-6)  # rounding of the blend only
    assert den.image_shape == (1, *shape[1:]) and den.mode == "patches"


def test_patches_of_a_local_network_reproduce_the_whole_image_away_from_the_border():
    inner = LocalConv(32)
    den = sized_denoiser(inner, (1, 80, 72), how="patches", overlap=12, margin=inner.radius)
    x = torch.randn(3, 1, 80, 72)
    r = inner.radius
    for sigma in (0.1, 0.5, 2.0):
        with torch.no_grad():
            whole, patched = inner(x, sigma), den(x, sigma)
        inside = (whole - patched)[..., r:-r, r:-r].abs().max()
        assert inside < 1e-5, (sigma, float(inside))
        assert (whole - patched).abs().max() > 1e-3  # at the border reflection differs from zero padding


def test_patches_of_a_white_gaussian_prior_equal_its_closed_form_everywhere():
    power = torch.full((1, 16, 16), 0.2)
    inner = StationaryGaussianPrior(0.3, power)
    den = sized_denoiser(inner, (1, 50, 37))
    assert den.mode == "patches"  # an analytic prior has no network config: patches
    x = torch.randn(4, 1, 50, 37)
    for sigma in (0.1, 1.0):
        exact = 0.3 + 0.2 / (0.2 + sigma ** 2) * (x - 0.3)
        assert torch.allclose(den(x, sigma), exact, atol=1e-6)


def test_patch_results_do_not_depend_on_how_samples_are_batched():
    den = sized_denoiser(LocalConv(32), (1, 70, 70), how="patches", max_patches=5)
    x = torch.randn(4, 1, 70, 70)
    sigma = torch.tensor([0.3, 0.3, 1.5, 0.3])
    with torch.no_grad():
        together = den(x, sigma)
        apart = torch.cat([den(x[i:i + 1], sigma[i:i + 1]) for i in range(4)])
        pairs = torch.cat([den(x[:2], sigma[:2]), den(x[2:], sigma[2:])])
    assert torch.allclose(together, apart, atol=1e-6) and torch.allclose(together, pairs, atol=1e-6)


def test_the_grid_offset_is_a_function_of_seed_and_noise_level():
    den = sized_denoiser(Identity(32), (1, 96, 96), how="patches")
    levels = torch.logspace(-2, 1.5, 40)
    dy, dx = den.shifts(levels)
    again = sized_denoiser(Identity(32), (1, 96, 96), how="patches").shifts(levels)
    assert torch.equal(dy, again[0]) and torch.equal(dx, again[1])
    assert int(dy.min()) >= 0 and int(dy.max()) < den.rows.shifts
    assert len(set(zip(dy.tolist(), dx.tolist()))) >= 20  # a fresh grid at (nearly) every level
    other = sized_denoiser(Identity(32), (1, 96, 96), how="patches", shift_seed=1).shifts(levels)
    assert not torch.equal(dy, other[0])


def test_patch_denoiser_passes_gradients_to_the_image():
    den = sized_denoiser(Identity(32), (1, 45, 45), how="patches")
    x = torch.randn(2, 1, 45, 45, requires_grad=True)
    den(x, 0.4).sum().backward()
    assert torch.allclose(x.grad, torch.ones_like(x))


def test_a_network_without_attention_runs_on_the_whole_image_padded_to_its_factor():
    inner = _unet(16, attention=False)
    assert isinstance(sized_denoiser(inner, (1, 24, 40)), PaddedDenoiser)
    inner = _unet(16, attention=False)
    den = sized_denoiser(inner, (1, 21, 30))
    assert den.mode == "padded" and den.image_shape == (1, 21, 30) and den.size_info["size_multiple"] == 2
    x = torch.randn(2, 1, 21, 30, dtype=torch.float64)
    with torch.no_grad():
        out = den(x, 0.5)
        ref = inner(torch.nn.functional.pad(x, (0, 0, 0, 1), mode="reflect"), 0.5)[..., :21, :]  # factor 2
    assert out.shape == x.shape and out.dtype == torch.float32
    assert torch.allclose(out, ref, atol=1e-6)


def test_a_network_with_attention_runs_on_patches_unless_its_card_says_any_size():
    assert isinstance(sized_denoiser(_unet(16, attention=True), (1, 40, 40)), PatchDenoiser)
    inner = _unet(16, attention=True)
    inner.card = dataclasses.replace(inner.card, extra={"any_size": True})
    assert isinstance(sized_denoiser(inner, (1, 40, 40)), PaddedDenoiser)
    same = _unet(16, attention=True)
    assert sized_denoiser(same, (1, 16, 16)) is same and same.size_info["mode"] == "native"


def test_a_patch_unet_denoises_every_batch_size_and_records_its_mode():
    den = sized_denoiser(_unet(16, attention=True), (1, 30, 44), max_patches=3)
    x = torch.randn(3, 1, 30, 44)
    with torch.no_grad():
        out = den(x, torch.tensor([0.2, 1.0, 5.0]))
        one = den(x[1:2], 1.0)
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert torch.allclose(out[1:2], one, atol=1e-5)
    size = den.card.extra["size"]
    assert size["mode"] == "patches" and size["trained_resolution"] == [16, 16]
    assert den.card.resolution == (30, 44) and den.weights_path is None


@pytest.mark.parametrize("how, shape, words", [
    ("auto", (1, 7, 40), "too small"),  # patches of 16 need at least 8 x 8
    ("whole", (1, 40, 1), "too small"),  # two levels halve once: at least 2 x 2
    ("auto", (3, 40, 40), "channel"),
])
def test_impossible_sizes_are_refused_in_one_sentence(how, shape, words):
    card = _card(16)
    config = {"down_block_types": ["DownBlock2D", "AttnDownBlock2D"], "add_attention": True}
    with pytest.raises(InputError) as err:
        size_mode(card, config, shape, how=how, name="tiny")
    text = str(err.value)
    assert words in text and "'tiny'" in text and text.endswith(".") and text.count(". ") == 0


def test_bundled_priors_choose_their_mode_from_card_and_config():
    assert prior_size_mode("procedural", (1, 256, 256)) == "native"
    assert prior_size_mode("procedural", (1, 100, 100)) == "padded"
    assert prior_size_mode("procedural", (1, 8, 8)) == "native"
    assert prior_size_mode("default", (1, 128, 128)) == "native"
    assert prior_size_mode("default", (1, 512, 512)) == "patches"
    assert prior_size_mode("gaussian", (1, 20, 20)) == "native"
    with pytest.raises(InputError, match="at least 64x64"):
        prior_size_mode("default", (1, 32, 32))
    den = load_prior("procedural-small", (1, 44, 48))
    assert den.image_shape == (1, 44, 48) and den.size_info["mode"] == "padded"
    assert den.weights_path is not None  # provenance hashes the weights file


def test_engine_runs_a_patch_prior_and_batching_does_not_change_the_result(one_torch_thread):
    m = make_demo("inpaint", size=72, seed=0)
    den = load_prior("procedural-small", tuple(m.image_shape), how="patches")
    means = []
    for batch in (1, 2):
        cfg = engine.RunConfig(solver="diffpir", steps=3, samples=2, batch_size=batch, keep_samples=0,
                               preview_interval=1e9, prior_fit=False)
        result = next(e.result for e in engine.run(m, cfg, denoiser=den) if isinstance(e, engine.Finished))
        means.append(result.mean)
    assert means[0].shape == tuple(m.image_shape)
    assert abs(means[0] - means[1]).max() < 1e-4 * abs(means[0]).max()
    assert '"mode": "patches"' in result.provenance["prior_card"]


def test_the_default_prior_falls_back_to_gaussian_only_where_its_network_cannot_run():
    assert prior_for_size("default", (1, 256, 256)) == ("default", None)
    assert prior_for_size("procedural", (1, 16, 16)) == ("procedural", None)
    name, why = prior_for_size("default", (1, 32, 32))
    assert name == "gaussian" and "at least 64x64" in why and why.endswith("instead.")
    assert fit_needed("default", (1, 200, 200)) is None  # patches: nothing to fit


def test_filling_the_last_patch_chunk_up_changes_nothing():
    den = sized_denoiser(LocalConv(32), (1, 70, 70), how="patches", max_patches=7)
    x = torch.randn(2, 1, 70, 70)
    with torch.no_grad():
        plain = den(x, 0.7)
        den.fill_chunks = True  # what CUDA does, so that one recorded graph serves every chunk
        filled = den(x, 0.7)
    assert den.size_info["patches"] * 2 % 7 != 0 and torch.allclose(plain, filled, atol=1e-6)
