"""A mixture of stationary-covariance Gaussians with an exact, closed-form denoiser.

Component ``k`` is ``N(mu_k, C_k)`` with an image mean ``mu_k`` and ``C_k = F^H diag(p_k) F``
(``F`` the unitary 2-D DFT per channel, ``p_k`` a Hermitian-symmetric power spectrum), as in
:class:`~diffrecon.priors.gaussian.StationaryGaussianPrior`. The noisy marginal at level sigma
is the mixture of ``N(mu_k, C_k + sigma^2 I)``, and Tweedie's formula (Efron, JASA 106, 2011,
Eq. 2.8) gives

    E[x0 | x] = sum_k r_k(x) (mu_k + F^H p_k / (p_k + sigma^2) F (x - mu_k)),
    r_k(x) = w_k N(x; mu_k, C_k + sigma^2 I) / sum_j w_j N(x; mu_j, C_j + sigma^2 I),

the responsibility-weighted Wiener filters. Unlike a single Gaussian its posterior is
multi-modal, which is what checks that a solver's samples spread over several modes.
"""
from __future__ import annotations

import math

import torch

from .base import Denoiser, PriorCard, sigma_as_batch

Tensor = torch.Tensor


class GaussianMixturePrior(Denoiser):
    """``sum_k w_k N(mu_k, F^H diag(p_k) F)``: weights ``(K,)``, means and powers ``(K, C, H, W)``."""

    bounded = False  # a Gaussian puts mass outside any range

    def __init__(self, weights: Tensor, means: Tensor, powers: Tensor, card: PriorCard | None = None):
        super().__init__()
        weights = torch.as_tensor(weights, dtype=torch.float32).reshape(-1)
        powers = torch.as_tensor(powers, dtype=torch.float32)
        means = torch.as_tensor(means, dtype=torch.float32)
        if powers.ndim != 4 or means.shape != powers.shape or weights.shape[0] != powers.shape[0]:
            raise ValueError("weights must be (K,), means and powers (K, C, H, W)")
        if (weights <= 0).any():
            raise ValueError("mixture weights must be positive")
        self.register_buffer("weights", weights / weights.sum())
        self.register_buffer("means", means.clone())
        self.register_buffer("powers", powers.clamp_min(1e-12))
        # F mu_k once, so a call costs one forward and one inverse FFT of the batch.
        self.register_buffer("means_hat", torch.fft.fft2(means, norm="ortho"))
        _, c, h, w = powers.shape
        self.card = card or PriorCard(
            name="gmm", resolution=(h, w), channels=c, value_range=(0.0, 1.0),
            sigma_min=0.002, sigma_max=80.0, schedule={"kind": "ve"},
            training_data="Gaussian mixture", description="Exact Gaussian-mixture prior.",
        )

    @property
    def num_components(self) -> int:
        return self.weights.shape[0]

    def _residual_hat(self, x: Tensor) -> Tensor:
        """``F (x - mu_k)`` for every sample and component, ``(B, K, C, H, W)`` complex."""
        return torch.fft.fft2(x.float(), norm="ortho")[:, None] - self.means_hat

    def _log_likelihoods(self, r_hat: Tensor, s2: Tensor) -> Tensor:
        """``log N(x; mu_k, C_k + s^2 I)`` from the residual spectra, ``(B, K)`` float64.

        In the Fourier basis the covariance is diagonal with eigenvalues ``p_k + s^2``, so the
        quadratic form and the log-determinant are plain sums over frequencies; they are
        accumulated in float64 because their differences across components set r_k.
        """
        var = self.powers + s2  # (B, K, C, H, W)
        quad = (r_hat.real.square() + r_hat.imag.square()) / var
        dims = (2, 3, 4)
        n = self.powers[0].numel()
        return -0.5 * (quad.sum(dims, dtype=torch.float64) + var.log().sum(dims, dtype=torch.float64)
                       + n * math.log(2 * math.pi))

    def component_log_likelihoods(self, x: Tensor, sigma: Tensor | float = 0.0) -> Tensor:
        """``log N(x; mu_k, C_k + sigma^2 I)`` per sample and component, ``(B, K)`` float64."""
        s2 = sigma_as_batch(sigma, x).reshape(-1, 1, 1, 1, 1) ** 2
        return self._log_likelihoods(self._residual_hat(x), s2)

    def responsibilities(self, x: Tensor, sigma: Tensor | float) -> Tensor:
        """``r_k(x)``, the posterior component probabilities at noise level sigma, ``(B, K)``."""
        log_post = self.component_log_likelihoods(x, sigma) + self.weights.double().log()
        return torch.softmax(log_post, dim=1)

    def forward(self, x: Tensor, sigma: Tensor | float) -> Tensor:
        s2 = sigma_as_batch(sigma, x).reshape(-1, 1, 1, 1, 1) ** 2
        r_hat = self._residual_hat(x)
        log_post = self._log_likelihoods(r_hat, s2) + self.weights.double().log()
        resp = torch.softmax(log_post, dim=1).float()  # log-sum-exp normalisation, stable
        gain = self.powers / (self.powers + s2)
        shrunk = (resp[:, :, None, None, None] * gain * r_hat).sum(dim=1)
        mean = torch.einsum("bk,kchw->bchw", resp, self.means)
        return mean + torch.fft.ifft2(shrunk, norm="ortho").real

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` exact draws: a component by weight, then its coloured Gaussian."""
        device = self.powers.device
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        w = torch.randn(n, *self.powers.shape[1:], generator=generator, device=device)
        colored = torch.fft.ifft2(self.powers[k].sqrt() * torch.fft.fft2(w, norm="ortho"), norm="ortho")
        return self.means[k] + colored.real

    def data_variance(self) -> float:
        """The per-pixel variance ``tr Cov / n`` of the mixture (law of total variance)."""
        w = self.weights.double()
        within = (w * self.powers.double().mean(dim=(1, 2, 3))).sum()
        mean = torch.einsum("k,kchw->chw", w, self.means.double())
        between = (w * (self.means.double() - mean).square().mean(dim=(1, 2, 3))).sum()
        return float(within + between)

    def covariance_matrices(self) -> Tensor:
        """The dense ``(K, n, n)`` component covariances (float64); for small images in tests."""
        k, *shape = self.powers.shape
        n = self.powers[0].numel()
        eye = torch.eye(n, dtype=torch.float64).reshape(n, 1, *shape)
        cov = torch.fft.ifft2(self.powers.double() * torch.fft.fft2(eye, norm="ortho"), norm="ortho").real
        return cov.reshape(n, k, n).transpose(0, 1)

    @classmethod
    def fit(cls, images: Tensor, k: int = 4, *, iters: int = 25, seed: int = 0, floor: float = 1e-6,
            card: PriorCard | None = None) -> "GaussianMixturePrior":
        """Fit to ``(N, C, H, W)`` images: k-means (Lloyd 1982, k-means++ seeding of Arthur &
        Vassilvitskii 2007) into ``k`` groups, then per group its mean image and the power
        spectrum of the deviations from it (a stationary covariance around that mean)."""
        images = images.double()
        labels = _kmeans(images.reshape(images.shape[0], -1), k, iters, seed)
        groups = [images[labels == j] for j in range(k) if int((labels == j).sum()) >= 2]
        if not groups:
            raise ValueError("need at least two images per mixture component")
        means = torch.stack([g.mean(dim=0) for g in groups])
        powers = []
        for g, mu in zip(groups, means):
            spec = torch.fft.fft2(g - mu, norm="ortho").abs().square().mean(dim=0)
            spec = 0.5 * (spec + torch.roll(torch.flip(spec, dims=(-2, -1)), shifts=(1, 1), dims=(-2, -1)))
            powers.append(spec + floor)
        weights = torch.tensor([float(len(g)) for g in groups])
        return cls(weights, means.float(), torch.stack(powers).float(), card)


def _kmeans(points: Tensor, k: int, iters: int, seed: int) -> Tensor:
    """Cluster labels of ``(N, D)`` points; deterministic for a seed."""
    g = torch.Generator().manual_seed(seed)
    n = points.shape[0]
    centres = points[torch.randint(n, (1,), generator=g)]
    for _ in range(1, min(k, n)):  # k-means++: next centre with probability ~ squared distance
        d2 = torch.cdist(points, centres).square().min(dim=1).values
        centres = torch.cat([centres, points[torch.multinomial(d2 + 1e-30, 1, generator=g)]])
    for _ in range(iters):
        labels = torch.cdist(points, centres).argmin(dim=1)
        for j in range(centres.shape[0]):
            members = points[labels == j]
            if len(members):
                centres[j] = members.mean(dim=0)
    return torch.cdist(points, centres).argmin(dim=1)
