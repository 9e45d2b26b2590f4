"""What all solvers share: the Step they yield, per-sample random streams, parameter metadata,
the registry entry, and the few pieces of maths several algorithms use.

A solver is a generator function

    solve(denoiser, op, y, sigmas, x_init, *, params, generator) -> Iterator[Step]

whose batch dimension holds independent posterior samples. ``sigmas`` is a decreasing 1-D CPU
float64 tensor ending in 0 (built by :mod:`diffrecon.schedule`); the step budget is
``len(sigmas) - 1``; ``x_init = sigmas[0] * noise``. The noise level of ``y`` is
``op.noise_sigma``. A solver yields once per step, never seeds globals, prints, writes files or
computes metrics; the caller may stop iterating at any time. The last Step's ``x``
is the solver's output (the sample at sigma = 0).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from ..errors import InputError

Tensor = torch.Tensor

#: Floor on the data's noise level in the data weights of DiffPIR, DAPS, PnP-ADMM and RED-diff, as
#: the DiffPIR authors floor it (Zhu et al., CVPRW 2023): noise-free data keep a finite weight.
SIGMA_Y_FLOOR = 1e-3


def floored_noise_sigma(op) -> float:
    """``max(sigma_y, SIGMA_Y_FLOOR)``: the noise level a data weight may divide by."""
    return max(op.noise_sigma, SIGMA_Y_FLOOR)


@dataclass
class Step:
    """One solver step: ``i`` of ``n``, current state ``x`` and clean estimate ``x0_hat``.

    ``nfe`` counts network evaluations per sample so far (a gradient through the network counts
    as one evaluation here; the engine counts gradients separately).
    """

    i: int
    n: int
    sigma: float
    x: Tensor
    x0_hat: Tensor
    nfe: int
    #: extra results of the step (the reference sampler's chain diagnostics on its last step).
    info: dict | None = None


class SampleRNG:
    """One random stream per posterior sample, seeded from ``(seed, sample index)``.

    A sample's noise is therefore the same whichever batch the engine puts it in.
    """

    def __init__(self, seed: int, sample_indices: Sequence[int], device: torch.device | str = "cpu"):
        self.seed = int(seed)
        self.indices = [int(k) for k in sample_indices]
        self.device = torch.device(device)
        self.generators = []
        for k in self.indices:
            state = np.random.SeedSequence([self.seed & 0xFFFFFFFF, k]).generate_state(2, np.uint32)
            g = torch.Generator(device=self.device)
            g.manual_seed(int(state[0]) << 32 | int(state[1]))
            self.generators.append(g)

    def __len__(self) -> int:
        return len(self.generators)

    def randn(self, shape: Sequence[int], dtype: torch.dtype = torch.float32) -> Tensor:
        """``(B, *shape)`` standard normal; complex dtypes get N(0, 1) in each real part."""
        real = dtype.to_real() if dtype.is_complex else dtype
        parts = 2 if dtype.is_complex else 1
        draws = [torch.randn((parts, *shape), generator=g, device=self.device, dtype=real)
                 for g in self.generators]
        out = torch.stack(draws, dim=1)
        return torch.complex(out[0], out[1]) if dtype.is_complex else out[0]

    def randn_like(self, x: Tensor) -> Tensor:
        if x.shape[0] != len(self):
            raise ValueError(f"batch {x.shape[0]} != {len(self)} random streams")
        return self.randn(x.shape[1:], x.dtype)

    def rand(self, shape: Sequence[int]) -> Tensor:
        draws = [torch.rand(tuple(shape), generator=g, device=self.device) for g in self.generators]
        return torch.stack(draws)


def param(default: Any, *, lo: float | None = None, hi: float | None = None, help: str = "",
          choices: Sequence[Any] | None = None) -> Any:
    """A solver parameter with its valid range and one line of help, for forms and checks."""
    return field(default=default, metadata={"range": (lo, hi), "help": help,
                                            "choices": tuple(choices) if choices else None})


def validate_params(params: Any, solver: str = "") -> None:
    """Refuse parameters outside their declared range with one sentence naming the setting."""
    for f in dataclasses.fields(params):
        value = getattr(params, f.name)
        lo, hi = f.metadata.get("range", (None, None))
        choices = f.metadata.get("choices")
        where = f"{solver} parameter {f.name}" if solver else f"parameter {f.name}"
        if choices and value not in choices:
            raise InputError(f"{where} is {value!r}; valid values are {', '.join(map(str, choices))}.")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise InputError(f"{where} is {value}; it must be a finite number.")
            if lo is not None and value < lo or hi is not None and value > hi:
                raise InputError(f"{where} is {value}; valid values lie in [{lo}, {hi}].")


def parse_params(Params: type, overrides: dict[str, str] | None, solver: str = "") -> Any:
    """Build ``Params`` from ``key=value`` strings (the CLI's --param), typed by the dataclass."""
    kw: dict[str, Any] = {}
    fields = {f.name: f for f in dataclasses.fields(Params)}
    for key, raw in (overrides or {}).items():
        if key not in fields:
            raise InputError(f"{solver} has no parameter {key!r}; its parameters are {', '.join(fields) or 'none'}.")
        kind = type(fields[key].default)
        try:
            if kind is bool:
                value: Any = str(raw).lower() in ("1", "true", "yes", "on")
            elif isinstance(raw, str):
                value = kind(raw)
            else:
                value = raw
        except ValueError:
            raise InputError(f"{solver} parameter {key} must be a {kind.__name__} (got {raw!r}).") from None
        kw[key] = value
    params = Params(**kw)
    validate_params(params, solver)
    return params


@dataclass(frozen=True)
class SolverInfo:
    """A registry entry: the algorithm, its parameters and what it needs from the operator."""

    name: str
    solve: Callable[..., Iterator[Step]]
    Params: type
    title: str
    reference: str
    #: subset of {"svd", "pinv", "grad"}; "grad" means backpropagation through the network.
    needs: frozenset = frozenset()
    #: True if the batch holds posterior samples; a callable decides from the params (DDIM eta).
    #: Superseded by ``spread`` where an entry declares one (see :mod:`.labels`).
    posterior: bool | Callable[[Any], bool] = True
    #: False for classical baselines that ignore the denoiser and the schedule.
    uses_prior: bool = True
    #: network evaluations per step and sample (for planning before a run): a number, or
    #: ``params -> number`` where params decide it
    nfe_per_step: Any = 1
    #: ``(params, steps) -> evaluations per sample`` of a whole run, where that is not
    #: ``steps x nfe_per_step`` (DDNM+'s time travel); None: that product
    nfe_per_run: Any = None
    #: fewer steps than this are known to fail (e.g. diverge); 0 when there is no such bound.
    min_steps: int = 0
    #: the data step filters an iterative pseudo-inverse by the noise level (noise_sigma > 0), so
    #: noisy data are not amplified (DDNM+'s Tikhonov-filtered correction).
    noise_filtered_pinv: bool = False
    #: what the spread over samples is, from the params (:class:`~.labels.SpreadRule`); None: ``posterior``.
    spread: Any = None
    #: parameter overrides that make the solver a posterior sampler where its paper's defaults are
    #: not (the validity report runs these; users pass them with --param)
    posterior_mode: Any = ()

    def evaluations_per_step(self, params: Any = None) -> int:
        """Network evaluations per step and sample with ``params`` (None: the defaults)."""
        if callable(self.nfe_per_step):
            return int(self.nfe_per_step(self.Params() if params is None else params))
        return int(self.nfe_per_step)

    def evaluations(self, params: Any = None, steps: int = 1) -> int:
        """Network evaluations per sample of a run of ``steps`` steps with ``params`` (None: the
        defaults), as the solver's last ``Step.nfe`` counts them; 0 for the classical baselines."""
        if not self.uses_prior:
            return 0
        if self.nfe_per_run is not None:
            return int(self.nfe_per_run(self.Params() if params is None else params, int(steps)))
        return int(steps) * self.evaluations_per_step(params)

    def is_posterior(self, params: Any) -> bool:
        return self.spread_of(params).is_posterior

    def spread_of(self, params: Any = None):
        """:func:`~.labels.spread_of` for this solver: posterior std, seed spread, prior samples or none."""
        from .labels import spread_of

        return spread_of(self, params)

    def caveat(self, op, steps: int | None = None) -> str | None:
        """A warning worth showing before a run of ``steps`` steps on ``op``, or None."""
        if steps is not None and steps < self.min_steps:
            return (f"{self.name} with {steps} steps is likely to diverge; it needs at least about "
                    f"{self.min_steps} steps (its paper uses 1000).")
        if "pinv" in self.needs and not getattr(op, "exact_pinv", False):
            if self.noise_filtered_pinv:
                if getattr(op, "noise_sigma", 0.0) > 0:
                    return None
                return (f"{self.name} filters its pseudo-inverse for {op.kind} by the noise level, which is 0 "
                        "here: if the data are noisy, set Noise σ, or the noise is amplified.")
            return (f"{self.name} relies on a pseudo-inverse, which for {op.kind} is an iterative "
                    "least-squares solve that amplifies measurement noise; expect poor results on noisy data.")
        return None

    def unmet_need(self, op) -> str | None:
        """Why ``op`` cannot serve this solver, or None."""
        if "svd" in self.needs and not op.has_svd:
            return f"{self.name} needs an SVD of the forward model, which {op.kind} does not provide"
        return None


# ---------------------------------------------------------------------------- shared maths
def ancestral_step(sigma_from: float, sigma_to: float, eta: float = 1.0) -> tuple[float, float]:
    """Deterministic and stochastic parts of a VE ancestral step (DDIM Eq. 16 in sigma form)."""
    if sigma_to == 0 or eta == 0:
        return sigma_to, 0.0
    up = min(sigma_to, eta * math.sqrt(sigma_to**2 * (sigma_from**2 - sigma_to**2) / sigma_from**2))
    down = math.sqrt(sigma_to**2 - up**2)
    return down, up


def ddim_step(x: Tensor, x0_hat: Tensor, sigma: float, sigma_down: float) -> Tensor:
    """Move ``x`` from noise level ``sigma`` to ``sigma_down`` along the estimated noise direction."""
    return x0_hat + (sigma_down / sigma) * (x - x0_hat)


def ancestral_ddim_step(x: Tensor, x0_hat: Tensor, sigma: float, sigma_next: float, eta: float,
                        generator: SampleRNG) -> Tensor:
    """DDIM's step from ``sigma`` to ``sigma_next`` with fresh-noise fraction ``eta`` (Song et al.,
    ICLR 2021, Eq. 12 with Eq. 16 in sigma form): ``x0_hat + sigma_down eps_hat + sigma_up eps``,
    each sample's ``eps`` from its own stream; ``eta = 1`` is DDPM's ancestral step."""
    sigma_down, sigma_up = ancestral_step(sigma, sigma_next, eta)
    x = ddim_step(x, x0_hat, sigma, sigma_down)
    if sigma_up > 0:
        x = x + sigma_up * generator.randn_like(x)
    return x


def variance_corrected_step(denoiser, x: Tensor, x0_hat: Tensor, sigma: float, sigma_next: float,
                            generator: SampleRNG, center: Tensor | None = None) -> Tensor:
    """DDPM's ancestral step from ``sigma`` to ``sigma_next`` with the transition variance it drops
    at finite steps restored to first order; one more denoiser evaluation.

    For a Gaussian prior the exact ``p(x' | x)`` has the ancestral step's mean and covariance
    ``(sigma^2 - sigma'^2)(r^2 I + (1 - r^2) J)`` (``r = sigma'/sigma``, ``J`` the denoiser's Jacobian,
    ``sigma^2 J = Cov(x0 | x)`` by Tweedie's second moment); the ancestral step keeps only
    ``(sigma^2 - sigma'^2) r^2 I``. The noise here is ``sigma sqrt(1 - r^2) (r I + (1 - r) J) xi`` with
    ``J xi`` a finite difference of the denoiser along ``xi``: exact where ``J`` is 0 or I, a few
    per cent short in between. Unconditional sampling of a Gaussian prior at 20 Karras steps keeps
    about 93 % of the prior variance this way against 54 % with the plain step (50 steps: 99 %
    against 77 %). ``center`` (default ``x0_hat``) is the estimate the step moves towards, e.g. a
    guided one; the Jacobian probe is always the unconditional denoiser's.
    """
    xi = generator.randn_like(x)
    j_xi = jacobian_probe(denoiser, x, x0_hat, sigma, xi)
    return corrected_noise_step(x, x0_hat if center is None else center, sigma, sigma_next, xi, j_xi)


def jacobian_probe(denoiser, x: Tensor, x0_hat: Tensor, sigma: float, direction: Tensor,
                   length: float = 0.5) -> Tensor:
    """``J direction``, the denoiser's Jacobian at ``x`` along ``direction``, by a finite difference
    of length ``length * sigma`` (per sample, relative to the direction's rms); one denoiser evaluation."""
    rms = direction.abs().square().mean(dim=tuple(range(1, x.ndim)), keepdim=True).sqrt().clamp_min(1e-30)
    probe = length * sigma
    return (denoiser(x + probe * direction / rms, sigma) - x0_hat) * (rms / probe)


def corrected_noise_step(x: Tensor, center: Tensor, sigma: float, sigma_next: float, xi: Tensor, j_xi: Tensor) -> Tensor:
    """The step of :func:`variance_corrected_step` from its noise ``xi`` and ``J xi``."""
    r = sigma_next / sigma
    return center + r * r * (x - center) + sigma * math.sqrt(1 - r * r) * (r * xi + (1 - r) * j_xi)


def local_posterior_variance(denoiser, x: Tensor, x0_hat: Tensor, sigma: float, generator: "SampleRNG",
                             probe: float = 0.1) -> float:
    """``tr Cov(x0 | x_t) / n`` at the current states, read off the denoiser: Tweedie's second moment
    ``Cov(x0 | x) = sigma^2 J`` (``J`` the denoiser's Jacobian) with Hutchinson's trace estimator,
    ``<xi, J xi>`` for a Rademacher ``xi`` per sample, ``J xi`` a finite difference of length
    ``probe * sigma``; averaged over the batch (a scalar: the data step stays one solve) and floored
    at a millionth of ``sigma^2``. One denoiser evaluation. Unlike a variance read off the prior
    once, it follows the prior's non-Gaussian shape: for a mixture the conditional variance is
    smaller than a Gaussian with the same covariance implies (the MMSE is below the LMMSE)."""
    xi = torch.sign(generator.randn_like(x))
    xi = torch.where(xi == 0, torch.ones_like(xi), xi)
    return trace_variance(sigma, xi, jacobian_probe(denoiser, x, x0_hat, sigma, xi, length=probe))


def trace_variance(sigma: float, xi: Tensor, j_xi: Tensor) -> float:
    """``sigma^2 <xi, J xi> / n`` averaged over the batch (Hutchinson's estimate of ``tr Cov(x0 | x) / n``
    from a probe ``xi`` of mean square 1 and ``J xi``), floored at a millionth of ``sigma^2``."""
    return sigma * sigma * max(float((xi * j_xi).real.mean()), 1e-6)


def _denoiser_device(denoiser) -> torch.device:
    """Where ``denoiser`` runs: its ``device`` (the engine's counting wrapper has one, and is no
    module), else its first buffer's or parameter's, else the CPU."""
    device = getattr(denoiser, "device", None)
    if isinstance(device, (torch.device, str)):
        return torch.device(device)
    if isinstance(denoiser, torch.nn.Module):
        return next((b.device for b in (*denoiser.buffers(), *denoiser.parameters())), torch.device("cpu"))
    return torch.device("cpu")


def prior_data_variance(denoiser, probes: int = 16, batch: int = 4) -> float:
    """The prior's per-pixel data variance ``v = tr Cov(x0) / n``, read off the denoiser.

    Tweedie: ``D(x, s) = E[x0 | x]`` has Jacobian ``Cov(x0 | x) / s^2``, so at a level ``s`` well
    above the data's spread ``<xi, D(m + s xi) - D(m)> / (s n) = g ~ v / (v + s^2)`` (``m = D(0, s)``,
    ``xi`` Rademacher, Hutchinson's trace estimator), and ``v = s^2 g / (1 - g)``. A few denoiser
    evaluations once (not counted in a solver's ``Step.nfe``), fixed probes: deterministic. A prior
    with a ``data_variance()`` method (the exact Gaussian and mixture priors) gives its own.
    """
    exact = getattr(denoiser, "data_variance", None)
    if callable(exact):  # the exact priors know theirs
        return float(exact())
    cached = getattr(denoiser, "_data_variance", None)
    if cached is not None:
        return cached
    card = getattr(denoiser, "card", None)
    lo, hi = (float(v) for v in card.value_range) if card is not None else (-1.0, 1.0)
    s = min(float(getattr(denoiser, "sigma_max", 80.0)), 10.0 * max(hi - lo, 1e-6) / 2)
    shape = tuple(getattr(denoiser, "image_shape", None) or (1, *card.resolution))
    device = _denoiser_device(denoiser)
    gen = torch.Generator().manual_seed(0)
    total = 0.0
    with torch.no_grad():
        m = denoiser(torch.zeros(1, *shape, device=device), s)
        for _ in range(max(1, probes // batch)):
            xi = (2.0 * torch.randint(0, 2, (batch, *shape), generator=gen) - 1.0).to(device)
            total += float((xi * (denoiser(m + s * xi, s) - m)).mean()) / s
    g = total / max(1, probes // batch)
    g = min(max(g, 1e-12), 1 - 1e-6)
    value = s * s * g / (1 - g)
    try:  # once per denoiser object (the engine's counting wrapper: once per run)
        denoiser._data_variance = value
    except (AttributeError, TypeError):
        pass
    return value


def mean_gain(op, probes: int = 16) -> float:
    """``tr(A^T A) / m``: the mean squared singular value over the ``m`` measured degrees of freedom
    (Hutchinson's estimator with fixed Rademacher probes; deterministic), the scalar that stands in
    for ``A A^T`` in an isotropic approximation of the likelihood's covariance."""
    gen = torch.Generator().manual_seed(1)
    shape = (probes, *op.image_shape)
    xi = (2.0 * torch.randint(0, 2, shape, generator=gen) - 1.0).to(op.device).to(op.image_dtype)
    with torch.no_grad():
        a = op.A(xi)
        total = float((a.abs() ** 2).sum()) / probes  # E ||A xi||^2 = tr(A^T A) (real parts: complex A counts both)
    return total / max(op.measurement_dof, 1)
