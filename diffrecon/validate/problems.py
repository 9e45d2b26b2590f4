"""The test problems of the validity report: exact priors and small linear forward models.

Two priors whose posteriors are known in closed form (:mod:`diffrecon.validate.exact`): a
stationary Gaussian, and a two-component Gaussian mixture (a dark and a bright texture of the
same smoothness) whose posterior can be bimodal; two forward models: inpainting with half the
pixels missing and sparse-view parallel-beam CT. Values live in [0, 1], the priors' own range,
so the engine's normalisation is the identity and the engine's numbers are the maths' numbers.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..measurement import Measurement
from ..operators import (MRI, Blur, Denoise, Inpaint, MatrixOperator, ParallelBeamCT, RFBorn, SuperResolution,
                         birdcage_maps, cartesian_mask, gaussian_kernel, random_mask, sparse_view_angles)
from ..priors.gaussian import StationaryGaussianPrior
from ..priors.gmm import GaussianMixturePrior

PRIORS = ("gaussian", "gmm")
OPERATORS = ("inpaint", "ct")
#: one forward model of every kind, for the reference sampler's check (noise 5 % of ||A||).
ALL_KINDS = ("denoise", "inpaint", "blur", "sr", "ct", "mri", "matrix", "rf")


def smooth_power(size: int, variance: float) -> torch.Tensor:
    """``(1, size, size)`` power spectrum ~ (1 + |k|^2 / 4)^-1.5 with the given per-pixel variance."""
    k = torch.fft.fftfreq(size) * size
    power = 1.0 / (1 + (k[:, None] ** 2 + k[None, :] ** 2) / 4.0) ** 1.5
    return (power / power.mean() * variance)[None]


def make_prior(kind: str, size: int):
    if kind == "gaussian":
        return StationaryGaussianPrior(0.5, smooth_power(size, 0.04))
    power = smooth_power(size, 0.01)
    means = torch.stack([torch.full((1, size, size), 0.3), torch.full((1, size, size), 0.7)])
    return GaussianMixturePrior(torch.tensor([0.5, 0.5]), means, torch.stack([power, power]))


def _sparse_matrix(size: int) -> torch.Tensor:
    """A random sparse ``(n / 2) x n`` matrix (10 % non-zeros), fixed by its seed."""
    g = torch.Generator().manual_seed(3)
    n = size * size
    return (torch.randn(n // 2, n, generator=g) * (torch.rand(n // 2, n, generator=g) < 0.1)).to_sparse_csr()


def make_operator(kind: str, size: int):
    shape = (1, size, size)
    if kind == "inpaint":
        return Inpaint(shape, random_mask(shape, 0.5, seed=0), noise_sigma=0.05)
    if kind == "ct":
        # Four views: badly underdetermined at 16x16, noise ~5 % of a ray sum.
        return ParallelBeamCT(shape, sparse_view_angles(4), noise_sigma=0.05 * size / 2)
    builders = {
        "denoise": lambda: Denoise(shape),
        "blur": lambda: Blur(shape, gaussian_kernel(5, 1.0)),
        "sr": lambda: SuperResolution(shape, 2),
        "mri": lambda: MRI(shape, cartesian_mask((size, size), 2), coil_maps=birdcage_maps((size, size), 4)),
        "matrix": lambda: MatrixOperator(shape, _sparse_matrix(size)),
        "rf": lambda: RFBorn(shape, [1.0e9, 2.0e9], 8, radius_m=0.02 * size, pixel_size_m=0.01 / (size / 8)),
    }
    op = builders[kind]()
    op.noise_sigma = 0.05 * op.norm()
    return op


@dataclass
class Problem:
    """One prior, one forward model and a way to draw (truth, measurement) pairs."""

    prior_kind: str
    operator_kind: str
    size: int

    def __post_init__(self):
        self.prior = make_prior(self.prior_kind, self.size)
        self.op = make_operator(self.operator_kind, self.size)

    @property
    def name(self) -> str:
        return f"{self.prior_kind} / {self.operator_kind}"

    def draw(self, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x_true (1, C, H, W), y (1, *meas_shape))``: a prior draw and its noisy measurement."""
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            x = self.prior.sample(1, g)
            return x, self.op.simulate(x, g)

    def measurement(self, y: torch.Tensor, truth: torch.Tensor | None = None) -> Measurement:
        """The file-level measurement the engine takes, in the prior's own range."""
        return Measurement(
            y=y[0].cpu().numpy(), operator=self.op.to_spec(), noise_sigma=self.op.noise_sigma,
            value_range=tuple(self.prior.card.value_range),
            ground_truth=None if truth is None else truth[0].cpu().numpy().astype(np.float32),
            title=f"validate {self.name}",
        )
