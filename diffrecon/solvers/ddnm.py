"""Denoising diffusion null-space model (DDNM / DDNM+): Wang, Yu & Zhang, ICLR 2023.

Range-null-space decomposition (Eq. 3, Alg. 1): the measurement fixes the range component of
the clean estimate, the prior fills the null space,

    x0_hat' = A^+ y + (I - A^+ A) x0_hat  =  x0_hat - A^+ (A x0_hat - y).

DDNM+ for noisy data (Sec. 3.3, Eq. 17-19) only partly corrects, ``x0_hat' = x0_hat -
Sigma_t A^+ (A x0_hat - y)``, and shrinks the fresh noise (covariance ``Phi_t``) so that the noise
carried in from ``A^+ y`` plus the fresh noise add up to the level the reverse process needs.
Where the operator has an SVD ``A = U diag(s) V^T`` both are diagonal in ``V`` (Eq. 19, general
form), per singular value ``s_i``:

    lambda_i = 1 if sigma_t >= a_t sigma_y / s_i else sigma_t s_i / (a_t sigma_y)   (Sigma_t = V diag(lambda) V^T)
    phi_i    = sigma_t^2 - (a_t lambda_i sigma_y / s_i)^2                            (Phi_t = V diag(phi) V^T)

since coefficient ``i`` of ``A^+ y`` carries noise of std ``sigma_y / s_i``. Zero singular values
are pure null space (no correction, ``phi_i = sigma_t^2``). With ``lambda_i < 1`` the carried
noise equals ``sigma_t`` exactly, so ``phi_i = 0``: small singular values, which a plain
pseudo-inverse amplifies without bound (deblurring), are trusted only as far as the current
noise level hides their noise. Without an SVD but with a closed-form pseudo-inverse (single-coil
MRI) we use the paper's simplified form, which takes the noise of ``A^+ y`` as ``sigma_y`` per
pixel (exact for masks, the identity and unitary transforms); noise-free data (``sigma_y = 0``)
is the full correction of DDNM.

Where the pseudo-inverse itself is an iterative solve (CT, multi-coil MRI, sparse matrices) that
assumption fails badly: ``A^+`` of a noisy sinogram amplifies the noise along small singular
values without bound, and the simplified form reached 7-12 dB on sparse-view and limited-angle
CT. There the per-singular-value weight is replaced by its smooth counterpart, the Tikhonov
filter ``lambda_i = s_i^2 / (s_i^2 + gamma_t)`` with ``gamma_t = (a_t sigma_y / sigma_t)^2``
(equal to Eq. 19's weight where ``s_i`` is far from ``sqrt(gamma_t)``), which needs no SVD:

    x0_hat' = argmin_x ||A x - y||^2 + gamma_t ||x - x0_hat||^2                          (CG)

The noise this carries along direction ``i``, ``a_t sigma_y s_i / (s_i^2 + gamma_t)``, is at
most ``sigma_t / 2``, so the fresh noise is kept at ``sigma_t`` (at most 25 % excess variance
in a few directions, instead of Eq. 19's per-direction shrinking, which needs the SVD). On the
64 x 64 CT demos with the Gaussian prior (50 steps, 4 samples) this took DDNM from 9.1 to 25.0 dB
(sparse view) and 8.0 to 19.9 dB (limited angle), and multi-coil MRI from 16.3 to 27.9 dB.

``a_t`` is the weight of x0_hat in the next state and ``sigma_t`` the fresh-noise std. The paper
writes them in the VP form ``x_{t-1} = a_t x0 + b_t x_t + sigma_t eps``; dividing by
``sqrt(alphabar_{t-1})`` gives the VE sigma form used here, which scales ``a_t`` and ``sigma_t`` by
the same factor and so leaves every ratio above (the only place they enter) unchanged. The VE
ancestral step ``x' = x0 + (sigma_down/sigma)(x - x0) + sigma_up eps`` then gives
``a_t = 1 - sigma_down/sigma`` and ``sigma_t = sigma_up``. Steps use DDIM with eta = 0.85 as in the
authors' released configurations (eta = 1 is the DDPM posterior of Alg. 1).

Noise re-injection, a stated departure (on by default). Every step uses the same ``A^+ y``, so the
one noise realisation in y is carried into every sample alike: observed pixels get almost no
spread across samples. ``reinject`` gives each step and sample its own draw ``y + sigma_y eps`` (the
measurement as the likelihood would have drawn it), so the spread on measured directions comes
back; ``reinject=False`` is the paper's. Measured on the exact Gaussian prior, 16x16 inpainting,
200 steps, 2 measurements x 32 samples: coverage of the 90 % t-interval 0.54 -> 0.63, variance
ratio 0.29 -> 0.36 per pixel; still far from a posterior sampler (see the validity report).

Time travel (Sec. 3.4, Alg. 3), off by default: every ``travel_length`` steps the sampler runs
``travel_length`` steps ahead, re-noises back to the current level, ``travel_repeat`` times, before
taking the step it yields. It costs extra network evaluations (counted in ``Step.nfe``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn.functional as F

from ._common import SolverInfo, Step, ancestral_step, ddim_step, param
from ._guidance import match_batch, measured_noise, range_null_space, spectral_measurement
from .labels import POSTERIOR, SpreadRule


@dataclass(frozen=True)
class Params:
    eta: float = param(0.85, lo=0.0, hi=1.0, help="Fresh-noise fraction of each DDIM step (released code: 0.85).")
    max_noise: float = param(1.0, lo=0.0, hi=1e6, help=(
        "Singular directions whose pseudo-inverse noise std (sigma_y / s_i, prior units) exceeds this "
        "are treated as null space (SVD operators with noisy data)."))
    travel_length: int = param(0, lo=0, hi=100, help="Steps per time-travel jump; 0 turns time travel off.")
    travel_repeat: int = param(1, lo=1, hi=20, help="How often each time-travel jump is repeated.")
    reinject: bool = param(True, help="Give each step its own draw of the measurement noise (y + sigma_y eps): "
                                      "spread on observed pixels; off: the paper's fixed A^+ y.")


def _step(denoiser, op, x, y, sigma, sigma_next, eta, generator, spectral=None):
    """One DDNM+ step from ``sigma`` to ``sigma_next``; returns ``(x_next, x0_hat)``.

    ``spectral`` is :func:`spectral_measurement` of ``y`` to use the per-singular-value form,
    None for the simplified one.
    """
    if spectral is not None:
        return _spectral_step(denoiser, op, x, spectral, sigma, sigma_next, eta, generator)
    if op.noise_sigma > 0 and not op.exact_pinv:
        return _regularised_step(denoiser, op, x, y, sigma, sigma_next, eta, generator)
    sigma_y = op.noise_sigma
    sigma_down, sigma_up = ancestral_step(sigma, sigma_next, eta)
    a_t = 1.0 - sigma_down / sigma
    x0_hat = denoiser(x, sigma)                                              # 1: Tweedie estimate
    if sigma_y == 0 or sigma_up >= a_t * sigma_y:                           # 2: Eq. 19, lambda_t
        lam, gamma = 1.0, (sigma_up**2 - (a_t * sigma_y) ** 2) ** 0.5
    else:
        lam, gamma = sigma_up / (a_t * sigma_y), 0.0
    x0_proj = range_null_space(op, x0_hat, y, lam)                           # 3: range-null-space fix
    x_next = ddim_step(x, x0_proj, sigma, sigma_down)                       # 4: posterior mean, a_t x0 + b_t x
    if gamma > 0:
        x_next = x_next + gamma * generator.randn_like(x)                   # 5: shrunk fresh noise
    return x_next, x0_proj


def _spectral_step(denoiser, op, x, spectral, sigma, sigma_next, eta, generator):
    """One DDNM+ step with Sigma_t and Phi_t diagonal in the SVD basis (Eq. 17-19, general form)."""
    s, observed, y_bar = spectral  # observed: directions trusted at all (see solve)
    n = x[0].numel()
    sigma_down, sigma_up = ancestral_step(sigma, sigma_next, eta)
    a_t = 1.0 - sigma_down / sigma
    x0_hat = denoiser(x, sigma)                                              # 1: Tweedie estimate
    # 2: a_t sigma_y / s_i, the std that coefficient i of A^+ y brings into x_next.
    carried = (a_t * op.noise_sigma) / s
    lam = torch.where(sigma_up >= carried, torch.ones_like(s), sigma_up / carried)
    lam = torch.where(observed, lam, torch.zeros_like(s))                    # zero s_i: null space
    # 3: x0_hat - V diag(lambda) V^T A^+ (A x0_hat - y); V^T A^+ (A x0 - y) is x0_bar - y_bar on the range.
    residual = op.V_adjoint(x0_hat)[:, : s.numel()] - y_bar
    x0_proj = x0_hat - op.V(F.pad(lam * residual, (0, n - s.numel())))
    x_next = ddim_step(x, x0_proj, sigma, sigma_down)                       # 4: a_t x0 + b_t x
    if sigma_up > 0:                                                         # 5: noise of variance phi_i
        phi = (sigma_up**2 - (lam * carried).square()).clamp_min(0).sqrt()
        eps = generator.randn_like(x)
        # sigma_up eps plus a range-only correction: exactly sigma_up eps where every phi_i = sigma_up.
        shrink = (phi - sigma_up) * op.V_adjoint(eps)[:, : s.numel()]
        x_next = x_next + sigma_up * eps + op.V(F.pad(shrink, (0, n - s.numel())))
    return x_next, x0_proj


def _regularised_step(denoiser, op, x, y, sigma, sigma_next, eta, generator):
    """One DDNM+ step with the Tikhonov-filtered correction, for operators inverted by CG."""
    sigma_down, sigma_up = ancestral_step(sigma, sigma_next, eta)
    a_t = 1.0 - sigma_down / sigma
    x0_hat = denoiser(x, sigma)                                              # 1: Tweedie estimate
    if sigma_up > 0:                                                         # 2-3: filtered correction
        x0_proj = op.solve_regularized(y, x0_hat, (a_t * op.noise_sigma / sigma_up) ** 2)
    else:
        x0_proj = x0_hat  # no fresh noise to hide the data's: no correction (lambda_t = 0)
    x_next = ddim_step(x, x0_proj, sigma, sigma_down)                       # 4: a_t x0 + b_t x
    if sigma_up > 0:
        x_next = x_next + sigma_up * generator.randn_like(x)                # 5: fresh noise
    return x_next, x0_proj


def _renoise(x, sigma_low, sigma_high, generator):
    """Forward diffusion from level ``sigma_low`` back up to ``sigma_high`` (time travel)."""
    return x + (sigma_high**2 - sigma_low**2) ** 0.5 * generator.randn_like(x)


def solve(denoiser, op, y, sigmas, x_init, *, params: Params, generator) -> Iterator[Step]:
    n = len(sigmas) - 1
    levels = [float(s) for s in sigmas]
    travel = params.travel_length
    x = x_init
    y = match_batch(y, x.shape[0])
    # Noise-free data needs no per-coefficient weights: the full correction is the same in any basis.
    spectral = spectral_measurement(op, y) if op.has_svd and op.noise_sigma > 0 else None
    if spectral is not None:
        # A direction whose y_bar is mostly noise (sigma_y / s_i above max_noise) is null space: the
        # same noise realisation re-enters every step and the prior, seeing it at ever lower noise
        # levels, keeps it as signal (deblurring diverged to -25 dB without this). DDRM's released
        # code likewise zeroes small blur singular values (3e-2 at sigma_y 0.05, i.e. 1.7).
        s_, observed, y_bar = spectral
        trusted = observed & (op.noise_sigma / s_ <= params.max_noise)
        spectral = (s_, trusted, torch.where(trusted, y_bar, torch.zeros_like(y_bar)))
    nfe = 0
    base = spectral

    def with_fresh_noise():
        """``(y, spectral)`` of the measurement with its own noise draw for this step (reinject)."""
        if not (params.reinject and op.noise_sigma > 0):
            return y, base
        y_t = y + op.noise_sigma * measured_noise(op, y, generator)
        if base is None:
            return y_t, None
        s_, trusted, _ = base
        _, _, y_bar = spectral_measurement(op, y_t)
        return y_t, (s_, trusted, torch.where(trusted, y_bar, torch.zeros_like(y_bar)))

    for i in range(n):
        if travel > 0 and i % travel == 0 and i + travel < n:
            for _ in range(params.travel_repeat):
                ahead = x
                for j in range(i, i + travel):
                    y_t, spectral = with_fresh_noise()
                    ahead, _ = _step(denoiser, op, ahead, y_t, levels[j], levels[j + 1], params.eta, generator, spectral)
                nfe += travel
                x = _renoise(ahead, levels[i + travel], levels[i], generator)
        y_t, spectral = with_fresh_noise()
        x, x0_hat = _step(denoiser, op, x, y_t, levels[i], levels[i + 1], params.eta, generator, spectral)
        nfe += 1
        yield Step(i, n, levels[i + 1], x, x0_hat, nfe)


def evaluations(params: Params, steps: int) -> int:
    """Evaluations per sample of ``steps`` steps: one per step, plus ``travel_length x travel_repeat``
    at every ``travel_length``-th step that has ``travel_length`` steps ahead (``solve``'s loop)."""
    travel = params.travel_length
    jumps = sum(1 for i in range(0, steps, travel) if i + travel < steps) if travel > 0 else 0
    return steps + jumps * travel * params.travel_repeat


INFO = SolverInfo(
    name="ddnm", solve=solve, Params=Params,
    title="DDNM+ (null-space diffusion)",
    reference="Wang, Yu & Zhang, ICLR 2023",
    # The SVD is used where the operator has one (per-singular-value DDNM+), but is not required.
    needs=frozenset({"pinv"}), uses_prior=True, noise_filtered_pinv=True, nfe_per_run=evaluations,
    spread=SpreadRule(POSTERIOR, noise=("eta", "reinject"), seed_why=(
        "ddnm with eta = 0 is deterministic given its starting noise (a seed spread, not a posterior standard "
        "deviation); with noisy data its correction lambda_t is 0 as well, so it then ignores the measurement.")),
)
