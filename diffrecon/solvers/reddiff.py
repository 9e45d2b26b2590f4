"""RED-diff, variational diffusion sampling: Mardani, Song, Kautz & Vahdat, ICLR 2024.

The posterior is approximated by ``q(x0 | y) = N(mu, sigma^2 I)`` with sigma -> 0, and ``mu``
minimises (Eq. 13, score-matching regulariser as in "regularisation by denoising")

    l(mu) = ||y - A mu||^2 / (2 sigma_y^2) + lambda_t (sg[eps_hat(x_t, t) - eps])^T mu,
    x_t = mu + sigma_t eps,  eps ~ N(0, I),

by Adam over the noise levels in descending order (Algorithm 1: one random eps, one network
evaluation and one Adam step per level; ``sg`` stops the gradient, so nothing backpropagates
through the network). The weight is the paper's SNR weighting ``lambda_t = lambda sigma_t``
(``sqrt((1 - abar)/abar) = 1/sqrt(SNR)``). With the VE noise estimate
``eps_hat = (x_t - D(x_t, sigma_t)) / sigma_t`` the regulariser's gradient is
``lambda (mu - D(x_t, sigma_t))``: RED with a denoiser at level sigma_t.

VP -> VE translation. ``eps`` and ``mu`` are the same in both forms (``x_vp = sqrt(abar) x_ve``),
so only the weight's ``sqrt((1-abar)/abar)`` becomes sigma_t.

Defaults: lambda = 0.25 (the paper's setting for most tasks) and Adam with lr = 0.1 and
betas (0.9, 0.99) on images in [-1, 1]; mu starts at ``A^+ y`` (seed-independent). sigma_y is
floored at 1e-3 (as DiffPIR's authors do) so noise-free data keeps a finite data weight.
Output: ``mu``, a point estimate; the seed only changes the eps draws, so the spread over seeds
is a seed spread, not a posterior std (``posterior=False``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch

from ..operators.base import measured_residual
from ._common import SolverInfo, Step, floored_noise_sigma, param
from ._guidance import match_batch
from .labels import SEED, SpreadRule

BETAS = (0.9, 0.99)


@dataclass(frozen=True)
class Params:
    lam: float = param(0.25, lo=0.0, hi=100.0, help="lambda: weight of the denoising regulariser (paper: 0.25).")
    lr: float = param(0.1, lo=1e-5, hi=10.0, help="Adam learning rate on the image (images in [-1, 1]).")


def solve(denoiser, op, y, sigmas, x_init, *, params: Params, generator) -> Iterator[Step]:
    n = len(sigmas) - 1
    y = match_batch(y, x_init.shape[0])
    sigma_y2 = floored_noise_sigma(op) ** 2
    mu = op.A_pinv(y).to(x_init.dtype)
    # Adam's moments by hand (Kingma & Ba, ICLR 2015, Alg. 1): per sample and per pixel, so a
    # sample's trajectory never depends on the others in its batch.
    m, v = torch.zeros_like(mu), torch.zeros_like(mu)
    b1, b2 = BETAS
    x0_hat = mu
    for i in range(n):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        eps = generator.randn_like(mu)
        x_t = mu + sigma * eps                                               # 3: diffuse the mean
        x0_hat = denoiser(x_t, sigma)                                        # 4: eps_hat as D
        # 5: gradient of Eq. 13: data term plus lambda sigma (eps_hat - eps) = lambda (mu - D).
        grad = -op.A_adjoint(measured_residual(op, mu, y)).to(mu.dtype) / sigma_y2
        grad = grad + params.lam * (mu - x0_hat)
        m = b1 * m + (1 - b1) * grad                                         # 6: Adam step on mu
        v = b2 * v + (1 - b2) * grad * grad
        m_hat, v_hat = m / (1 - b1 ** (i + 1)), v / (1 - b2 ** (i + 1))
        mu = mu - params.lr * m_hat / (v_hat.sqrt() + 1e-8)
        yield Step(i, n, sigma_next, mu, x0_hat, i + 1)


INFO = SolverInfo(
    name="reddiff", solve=solve, Params=Params,
    title="RED-diff (variational, point estimate)",
    reference="Mardani, Song, Kautz & Vahdat, ICLR 2024",
    needs=frozenset(), uses_prior=True,
    spread=SpreadRule(SEED, why="RED-diff optimises one image; the spread over samples comes from its random noise "
                                "draws (a seed spread), not from the posterior."),
)
