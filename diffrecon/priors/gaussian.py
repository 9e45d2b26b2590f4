"""Exact priors with closed-form denoisers, for tests and for checking posterior correctness.

A stationary Gaussian ``x ~ N(mu, C)`` with ``C = F^H diag(p) F`` (``F`` the unitary 2-D DFT per
channel, ``p`` the power spectrum) has the Tweedie denoiser

    E[x0 | x] = mu + F^H (p / (p + sigma^2)) F (x - mu),

the Wiener filter. With a linear forward model and Gaussian noise its posterior is Gaussian and
known in closed form, which is what the solver tests compare against.
"""
from __future__ import annotations

import torch

from .base import Denoiser, PriorCard, sigma_as_batch

Tensor = torch.Tensor


class StationaryGaussianPrior(Denoiser):
    """``N(mean, F^H diag(power) F)``; ``power`` has shape ``(C, H, W)`` and Hermitian symmetry."""

    bounded = False  # a Gaussian puts mass outside any range

    def __init__(self, mean: Tensor | float, power: Tensor, card: PriorCard | None = None):
        super().__init__()
        power = torch.as_tensor(power, dtype=torch.float32)
        if power.ndim != 3:
            raise ValueError("power must have shape (C, H, W)")
        mean_t = torch.as_tensor(mean, dtype=torch.float32)
        self.register_buffer("mean", mean_t.expand(power.shape).clone())
        self.register_buffer("power", power.clamp_min(0))
        c, h, w = power.shape
        self.card = card or PriorCard(
            name="gaussian", resolution=(h, w), channels=c, value_range=(0.0, 1.0),
            sigma_min=0.002, sigma_max=80.0, schedule={"kind": "ve"},
            training_data="stationary Gaussian", description="Exact stationary Gaussian prior.",
        )

    def forward(self, x: Tensor, sigma: Tensor | float) -> Tensor:
        s2 = sigma_as_batch(sigma, x).reshape(-1, 1, 1, 1) ** 2
        gain = self.power / (self.power + s2)
        r = torch.fft.fft2(x - self.mean, norm="ortho")
        return self.mean + torch.fft.ifft2(gain * r, norm="ortho").real

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` exact draws from the prior."""
        w = torch.randn(n, *self.power.shape, generator=generator, device=self.power.device)
        colored = torch.fft.ifft2(self.power.sqrt() * torch.fft.fft2(w, norm="ortho"), norm="ortho")
        return self.mean + colored.real

    def data_variance(self) -> float:
        """The per-pixel variance ``tr C / n`` (the mean of the power spectrum, unitary DFT)."""
        return float(self.power.double().mean())

    def apply_covariance(self, v: Tensor) -> Tensor:
        """``C v`` for a batch of images."""
        return torch.fft.ifft2(self.power * torch.fft.fft2(v, norm="ortho"), norm="ortho").real

    def covariance_matrix(self) -> Tensor:
        """The dense ``n x n`` covariance (float64); for small images in tests."""
        n = self.power.numel()
        eye = torch.eye(n, dtype=torch.float64).reshape(n, *self.power.shape)
        cov = torch.fft.ifft2(self.power.double() * torch.fft.fft2(eye, norm="ortho"), norm="ortho").real
        return cov.reshape(n, n)

    @classmethod
    def fit(cls, images: Tensor, card: PriorCard | None = None, floor: float = 1e-6) -> "StationaryGaussianPrior":
        """Maximum-likelihood stationary fit to ``(N, C, H, W)`` images: scalar mean per channel,
        power spectrum averaged over the images (and made Hermitian-symmetric)."""
        images = images.double()
        mean = images.mean(dim=(0, 2, 3), keepdim=True)[0]
        spec = torch.fft.fft2(images - mean, norm="ortho").abs().square().mean(dim=0)
        spec = 0.5 * (spec + torch.roll(torch.flip(spec, dims=(-2, -1)), shifts=(1, 1), dims=(-2, -1)))
        return cls(mean.float(), (spec + floor).float(), card)
