import hashlib
import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from diffrecon.errors import InputError
from diffrecon.phantoms import TEST_SEEDS, phantom_batch
from diffrecon.priors import (GaussianMixturePrior, PriorCard, StationaryGaussianPrior,
                              VPEpsilonDenoiser, load_diffusers_prior, load_prior,
                              prior_weight_hash, save_diffusers_prior)
from diffrecon.priors.diffusers_vp import alphas_cumprod_from_schedule

LINEAR = {"kind": "vp_linear", "beta_start": 1e-4, "beta_end": 0.02, "timesteps": 1000}


def _hermitian_power(shape, generator, scale=1.0):
    """A random positive power spectrum with the symmetry of a real image's spectrum."""
    w = torch.randn(*shape, generator=generator, dtype=torch.float64)
    return (scale * torch.fft.fft2(w, norm="ortho").abs().square() + 0.05).float()


def _small_gmm(c=1, h=4, w=4, k=3):
    g = torch.Generator().manual_seed(0)
    means = 0.4 * torch.randn(k, c, h, w, generator=g)
    powers = torch.stack([_hermitian_power((c, h, w), g, 0.3) for _ in range(k)])
    return GaussianMixturePrior(torch.tensor([0.5, 0.3, 0.2][:k]), means, powers)


# ------------------------------------------------------------------------------ GMM prior
def _dense_tweedie(prior, x, sigma):
    """E[x0|x] by dense float64 linear algebra: responsibilities and Wiener filters per component."""
    covs = prior.covariance_matrices()
    n = covs.shape[-1]
    mus = prior.means.double().reshape(prior.num_components, n)
    xs = x.double().reshape(x.shape[0], n)
    out, logliks = [], []
    for xi in xs:
        logp, est = [], []
        for ck, mk, wk in zip(covs, mus, prior.weights.double()):
            cs = ck + sigma**2 * torch.eye(n, dtype=torch.float64)
            mvn = torch.distributions.MultivariateNormal(mk, covariance_matrix=cs)
            logp.append(mvn.log_prob(xi))
            est.append(mk + ck @ torch.linalg.solve(cs, xi - mk))
        logp = torch.stack(logp)
        logliks.append(logp)
        r = torch.softmax(logp + prior.weights.double().log(), dim=0)
        out.append((r[:, None] * torch.stack(est)).sum(0))
    return torch.stack(out).reshape(x.shape), torch.stack(logliks)


@pytest.mark.parametrize("c", [1, 2])
@pytest.mark.parametrize("sigma", [0.05, 0.4, 1.5])
def test_gmm_denoiser_equals_dense_float64_reference(c, sigma):
    prior = _small_gmm(c=c)
    x = prior.sample(5, torch.Generator().manual_seed(1)) + sigma * torch.randn(5, c, 4, 4, generator=torch.Generator().manual_seed(2))
    ref, ref_loglik = _dense_tweedie(prior, x, sigma)
    torch.testing.assert_close(prior(x, sigma).double(), ref, atol=2e-5, rtol=1e-5)
    torch.testing.assert_close(prior.component_log_likelihoods(x, sigma), ref_loglik, atol=1e-3, rtol=1e-5)


def test_gmm_responsibilities_mix_components_at_high_noise_and_separate_at_low():
    prior = _small_gmm()
    x0 = prior.sample(64, torch.Generator().manual_seed(3))
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(4))
    soft = prior.responsibilities(x0 + 3.0 * noise, 3.0)
    sharp = prior.responsibilities(x0 + 0.01 * noise, 0.01)
    assert soft.max(dim=1).values.mean() < 0.9  # the test above exercises real mixing
    assert sharp.max(dim=1).values.mean() > 0.9
    torch.testing.assert_close(soft.sum(1), torch.ones(64, dtype=torch.float64))


def test_gmm_per_sample_sigma_matches_scalar_sigma_calls():
    prior = _small_gmm()
    x = torch.randn(3, 1, 4, 4, generator=torch.Generator().manual_seed(5))
    sig = torch.tensor([0.1, 0.5, 2.0])
    batched = prior(x, sig)
    for i in range(3):
        torch.testing.assert_close(batched[i:i + 1], prior(x[i:i + 1], float(sig[i])), atol=1e-6, rtol=1e-5)


def test_gmm_samples_have_the_mixture_mean_and_variance():
    prior = _small_gmm()
    xs = prior.sample(20000, torch.Generator().manual_seed(6)).double().reshape(20000, -1)
    covs = prior.covariance_matrices()
    w = prior.weights.double()
    mus = prior.means.double().reshape(3, -1)
    mean = (w[:, None] * mus).sum(0)
    var = (w[:, None] * (covs.diagonal(dim1=1, dim2=2) + mus**2)).sum(0) - mean**2
    assert (xs.mean(0) - mean).abs().max() < 0.03
    assert ((xs.var(0) / var) - 1).abs().max() < 0.06


def test_gmm_fit_finds_groups_and_weights():
    # Two well separated clusters of 8x8 images: k-means with k=2 must split them 30/10.
    g = torch.Generator().manual_seed(7)
    a = 0.2 + 0.02 * torch.randn(30, 1, 8, 8, generator=g)
    b = 0.8 + 0.02 * torch.randn(10, 1, 8, 8, generator=g)
    prior = GaussianMixturePrior.fit(torch.cat([a, b]), 2)
    order = prior.means.mean(dim=(1, 2, 3)).argsort()
    torch.testing.assert_close(prior.weights[order], torch.tensor([0.75, 0.25]))
    assert abs(float(prior.means[order[1]].mean()) - 0.8) < 0.01


# ------------------------------------------------------------------------------ VP adapter
class ExactGaussianEps(torch.nn.Module):
    """Stands in for UNet2DModel: the exact E[n | x_t] for x0 ~ N(mu, F^H diag(p) F) in VP
    coordinates, with a continuous time t whose log sigma is linear between table entries."""

    def __init__(self, mean, power, alphas_cumprod, extra_channels=0):
        super().__init__()
        self.mean, self.power = mean.double(), power.double()
        self.log_sigma_table = (0.5 * np.log((1 - alphas_cumprod.numpy()) / alphas_cumprod.numpy()))
        self.extra_channels = extra_channels
        self.seen_t = []

    def forward(self, x_t, t):
        self.seen_t.append(t.clone())
        sig = np.exp(np.interp(t.double().numpy(), np.arange(len(self.log_sigma_table)), self.log_sigma_table))
        abar = torch.from_numpy(1 / (1 + sig**2)).reshape(-1, 1, 1, 1)
        a, b = abar.sqrt(), (1 - abar).sqrt()
        r = torch.fft.fft2(x_t.double() - a * self.mean, norm="ortho")
        eps = torch.fft.ifft2(b / (a**2 * self.power + b**2) * r, norm="ortho").real.float()
        learned_variance = torch.full_like(eps[:, :1], 123.0).expand(-1, self.extra_channels, -1, -1)
        return SimpleNamespace(sample=torch.cat([eps, learned_variance], dim=1))


def _vp_gaussian(extra_channels=0):
    g = torch.Generator().manual_seed(8)
    power = _hermitian_power((1, 8, 8), g, 0.5)
    mean = 0.1 * torch.randn(1, 8, 8, generator=g)
    abar = alphas_cumprod_from_schedule(LINEAR)
    card = PriorCard("vp-test", (8, 8), 1, (-1.0, 1.0), 0.0, 0.0, schedule=LINEAR)
    net = ExactGaussianEps(mean, power, abar, extra_channels)
    return VPEpsilonDenoiser(net, abar, card), StationaryGaussianPrior(mean, power), net


@pytest.mark.parametrize("extra_channels", [0, 1])
def test_vp_adapter_reproduces_gaussian_tweedie_denoiser(extra_channels):
    denoiser, gaussian, _ = _vp_gaussian(extra_channels)
    table = denoiser.discrete_sigmas()
    sigmas = [float(table[0]), 0.05, 0.37, float(table[500]), 2.0, 15.0, float(table[-1])]
    g = torch.Generator().manual_seed(9)
    x0 = gaussian.sample(4, g)
    for sigma in sigmas:
        x = x0 + sigma * torch.randn(x0.shape, generator=g)
        out = denoiser(x, sigma)
        assert out.dtype == torch.float32
        torch.testing.assert_close(out, gaussian(x, sigma), atol=1e-4, rtol=0)


def test_vp_adapter_uses_integer_timesteps_on_the_table_and_interpolates_between():
    denoiser, _, net = _vp_gaussian()
    table = denoiser.discrete_sigmas()
    assert bool((table[1:] > table[:-1]).all())
    assert denoiser.sigma_min == pytest.approx(float(table[0])) and denoiser.sigma_max == pytest.approx(float(table[-1]))
    mid = math.sqrt(float(table[10]) * float(table[11]))  # geometric midpoint: t = 10.5
    x = torch.zeros(3, 1, 8, 8, dtype=torch.float64)
    out = denoiser(x, torch.tensor([float(table[10]), mid, 0.0]))
    assert out.dtype == torch.float32
    torch.testing.assert_close(net.seen_t[-1], torch.tensor([10.0, 10.5, 0.0]), atol=2e-3, rtol=0)


def _tiny_unet():
    from diffusers import UNet2DModel
    torch.manual_seed(0)
    return UNet2DModel(sample_size=16, in_channels=1, out_channels=1, block_out_channels=(8, 16),
                       layers_per_block=1, norm_num_groups=4,
                       down_block_types=("DownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "UpBlock2D")).eval()


def _card16():
    return PriorCard("tiny", (16, 16), 1, (-1.0, 1.0), 0.0, 0.0, schedule=LINEAR, training_data="none")


def test_saved_tiny_unet_loads_back_in_float32_with_the_same_output(tmp_path):
    unet = _tiny_unet()
    folder = save_diffusers_prior(unet, _card16(), tmp_path / "prior", fp16=True)
    loaded = load_diffusers_prior(folder)
    params = list(loaded.parameters())
    assert params and all(p.dtype == torch.float32 and not p.requires_grad for p in params)
    assert not loaded.training and not loaded.unet.training
    # the reference: the same network with its weights rounded through fp16 as on disk
    unet.load_state_dict({k: v.half().float() for k, v in unet.state_dict().items()})
    reference = VPEpsilonDenoiser(unet, alphas_cumprod_from_schedule(LINEAR), _card16())
    x = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(10))
    sigma = torch.tensor([0.3, 4.0])
    with torch.no_grad():
        expected, got = reference(x, sigma), loaded(x, sigma)
    assert float((expected - x).abs().max()) > 1e-3  # the network does contribute
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert prior_weight_hash(loaded) == hashlib.sha256((folder / "diffusion_pytorch_model.safetensors").read_bytes()).hexdigest()
    assert load_prior(str(folder)).card.name == "tiny"


def test_gradient_flows_to_x_through_loaded_prior(tmp_path):
    folder = save_diffusers_prior(_tiny_unet(), _card16(), tmp_path / "prior")
    loaded = load_diffusers_prior(folder)
    x = torch.randn(1, 1, 16, 16, requires_grad=True)
    loaded(x, 1.0).square().sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0


def test_pickled_weights_are_refused(tmp_path):
    folder = save_diffusers_prior(_tiny_unet(), _card16(), tmp_path / "prior")
    (folder / "diffusion_pytorch_model.safetensors").unlink()
    (folder / "diffusion_pytorch_model.bin").write_bytes(b"\x80\x04not really a pickle")
    with pytest.raises(InputError, match="pickled"):
        load_diffusers_prior(folder)


def test_card_disagreeing_with_config_is_refused(tmp_path):
    folder = save_diffusers_prior(_tiny_unet(), _card16(), tmp_path / "prior")
    card = json.loads((folder / "card.json").read_text())
    card["resolution"] = [32, 32]
    (folder / "card.json").write_text(json.dumps(card))
    with pytest.raises(InputError, match="resolution"):
        load_diffusers_prior(folder)


def test_unknown_prior_name_is_refused_listing_valid_names():
    with pytest.raises(InputError, match="gaussian"):
        load_prior("no-such-prior")


# ------------------------------------------------------------------------------ load_prior
def test_fitted_gaussian_prior_beats_identity_on_held_out_phantoms():
    prior = load_prior("gaussian", (1, 32, 32))
    assert prior.card.value_range == (0.0, 1.0) and "phantoms" in prior.card.training_data
    x0 = torch.from_numpy(phantom_batch(8, 32, TEST_SEEDS[0]))
    x = x0 + 0.1 * torch.randn(x0.shape, generator=torch.Generator().manual_seed(11))
    mse_identity = float((x - x0).square().mean())
    mse_prior = float((prior(x, 0.1) - x0).square().mean())
    assert 0.009 < mse_identity < 0.011
    assert mse_prior < 0.6 * mse_identity


def test_fitted_gmm_prior_beats_identity_and_caches_per_shape():
    prior = load_prior("gmm", (2, 16, 16))
    assert 2 <= prior.num_components <= 4 and prior.image_shape == (2, 16, 16)
    x0 = torch.from_numpy(phantom_batch(8, 16, TEST_SEEDS[0])).expand(-1, 2, -1, -1)
    x = x0 + 0.1 * torch.randn(x0.shape, generator=torch.Generator().manual_seed(12))
    assert float((prior(x, 0.1) - x0).square().mean()) < 0.6 * float((x - x0).square().mean())
    again = load_prior("gmm", (2, 16, 16))
    assert again is not prior and prior_weight_hash(again) == prior_weight_hash(prior)
    assert prior_weight_hash(load_prior("gaussian", (2, 16, 16))) != prior_weight_hash(prior)


def test_default_prior_falls_back_to_gaussian_without_bundled_weights():
    from diffrecon.priors import default_prior_folder
    if default_prior_folder() is None:
        prior = load_prior("default", (1, 16, 16))
        assert isinstance(prior, StationaryGaussianPrior) and prior.image_shape == (1, 16, 16)
    else:  # the network at its trained size (smaller than half of it is refused: test_priors_any_size)
        assert isinstance(load_prior("default", (1, 128, 128)), VPEpsilonDenoiser)
