"""The engine tests' toy solver and problem: a minimal stochastic sampler and a 16 x 16
denoising measurement in physical units with an exact Gaussian prior. Test modules load its
fixtures with ``pytest_plugins = ["engine_toys"]`` after importing its helpers, hence
PYTEST_DONT_REWRITE (pytest could not rewrite its asserts once imported)."""
from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from diffrecon.engine import Finished
from diffrecon.measurement import Measurement
from diffrecon.operators import Denoise
from diffrecon.priors.gaussian import StationaryGaussianPrior
from diffrecon.solvers import SOLVERS, SolverInfo, Step
from diffrecon.solvers._common import param


@dataclass(frozen=True)
class _Params:
    jitter: float = param(1.0, lo=0.0, hi=2.0, help="noise re-injection factor")


def _ancestral(denoiser, op, y, sigmas, x_init, *, params, generator):
    """A minimal stochastic sampler for engine tests (no data consistency)."""
    x, n = x_init, len(sigmas) - 1
    for i in range(n):
        x0 = denoiser(x, float(sigmas[i]))
        x = x0 + params.jitter * float(sigmas[i + 1]) * generator.randn_like(x)
        yield Step(i, n, float(sigmas[i + 1]), x, x0, i + 1)


@pytest.fixture
def toy_solver(monkeypatch):
    """The toy sampler in the registry as "toy" for the test's duration."""
    info = SolverInfo("toy", _ancestral, _Params, "toy sampler", "test", posterior=True)
    monkeypatch.setitem(SOLVERS, "toy", info)
    return info


def _smooth_images(n, size, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(n, 1, size, size, generator=g)
    k = torch.fft.fftfreq(size)
    lowpass = torch.exp(-(k[:, None] ** 2 + k[None, :] ** 2) / (2 * 0.08**2))
    return 0.5 + 0.15 * torch.fft.ifft2(torch.fft.fft2(w) * lowpass).real / lowpass.square().mean().sqrt()


@pytest.fixture
def problem():
    """A 16 x 16 denoising measurement (prior range [0, 1] as [0, 40] units) and its exact prior."""
    size = 16
    prior = StationaryGaussianPrior.fit(_smooth_images(200, size))
    gt = _smooth_images(1, size, seed=99)[0].numpy()
    # physical units: the prior's [0, 1] maps onto [0, 40] "HU-like" units
    op = Denoise((1, size, size), noise_sigma=2.0)
    gen = torch.Generator().manual_seed(3)
    y = op.simulate(torch.as_tensor(40 * gt)[None], gen)[0].numpy()
    m = Measurement(y=y, operator=op.to_spec(), noise_sigma=2.0, units="u", value_range=(0.0, 40.0),
                    ground_truth=40 * gt)
    return m, prior


def _finish(events):
    events = list(events)
    assert isinstance(events[-1], Finished)
    return events, events[-1].result


def _oom_above_two(denoiser, op, y, sigmas, x_init, *, params, generator):
    """The toy sampler, out of (GPU) memory for batches of more than two samples."""
    if x_init.shape[0] > 2:
        raise torch.cuda.OutOfMemoryError("simulated: batch too large")
    yield from _ancestral(denoiser, op, y, sigmas, x_init, params=params, generator=generator)
