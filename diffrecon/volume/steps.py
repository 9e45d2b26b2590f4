"""The volume solvers' steps: the 2D solver's update on a stack of slices, its data step taken over
the whole volume with a z-coupling term.

Every data step here is one regularised problem over the volume ``x`` of shape ``(Z, C, H, W)``,

    argmin_x  sum_z ||A x_z - y_z||^2 + rho (||x - x0||^2 + lam_z ||D_z x - w||^2)

with ``D_z`` the difference between neighbouring slices (``w = 0`` except in DiffPIR's posterior
path, where it is the perturbation of perturb-and-MAP), solved by conjugate gradients over the
whole volume; ``lam_z = 0`` leaves the slices independent and is the 2D solver's own data step on
each slice. What each solver takes as ``rho`` and how many CG steps:

* ``diffpir``: ``rho = lam sigma_y^2 / r_t^2``, solved to convergence (``cg_iters``); with
  ``perturb`` (the posterior path) ``y``, ``x0`` and the z term are each perturbed by their own
  Gaussian draw, so the step is a draw from the Gaussian the three terms make.
* ``dds``: the noise-aware step, ``rho = sigma_y^2 / r_t^2``, ``cg_steps`` CG steps from the
  Tweedie estimate (early stopping, as the paper's Krylov step).
* ``ddnm``: DDNM+'s Tikhonov-filtered correction for every operator,
  ``rho = (a_t sigma_y / sigma_up)^2``: the per-singular-value form is diagonal within a slice and
  cannot be coupled along z; the measurement noise is re-drawn per step (``reinject``).

The operator is applied ``batch`` slices at a time, and ``stop`` is checked before each chunk,
so Stop acts within the data step too (:class:`Stopped`).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import InputError
from ..linalg import conjugate_gradient
from ..solvers._common import SampleRNG, ancestral_step, ddim_step, prior_data_variance

#: Solvers with a volume path.
VOLUME_SOLVERS = ("diffpir", "dds", "ddnm")


class Stopped(Exception):
    """Stop was asked for inside a step; the sample in progress is dropped."""


def dtd(v: torch.Tensor) -> torch.Tensor:
    """``D_z^T D_z v`` for the forward difference along axis 0 (Neumann ends)."""
    return dt(v[1:] - v[:-1])


def dt(w: torch.Tensor) -> torch.Tensor:
    """``D_z^T w`` for ``w`` of ``Z - 1`` slice differences."""
    out = torch.zeros((w.shape[0] + 1, *w.shape[1:]), dtype=w.dtype, device=w.device)
    out[:-1] -= w
    out[1:] += w
    return out


def chunks(n: int, size: int) -> list[slice]:
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


class Volume:
    """The forward model on a stack: the operator applied ``batch`` slices at a time, and the
    z-coupled regularised solve."""

    def __init__(self, op, y: torch.Tensor, batch: int, stop: threading.Event | None):
        self.op, self.y, self.batch, self.stop = op, y, int(batch), stop
        self.n_z = int(y.shape[0])
        self.shape = (self.n_z, *op.image_shape)

    def check_stop(self) -> None:
        if self.stop is not None and self.stop.is_set():
            raise Stopped

    def map(self, f, v: torch.Tensor) -> torch.Tensor:
        parts = []
        for c in chunks(self.n_z, self.batch):
            self.check_stop()
            parts.append(f(v[c]))
        return torch.cat(parts)

    def solve(self, y, x0, rho: float, lam_z: float, iters: int, *, exact: bool = True, w=None) -> torch.Tensor:
        """The data step above, started at ``x0``; ``exact`` with ``lam_z = 0``: the operator's own
        per-slice solve (closed form through its SVD where it has one)."""
        op = self.op
        if lam_z == 0:
            if exact:
                parts = []
                for c in chunks(self.n_z, self.batch):
                    self.check_stop()
                    parts.append(op.solve_regularized(y[c], x0[c], rho, iters=iters))
                return torch.cat(parts)
            # CG per slice: the batch axis is the slice axis, inner products are per slice.
            return conjugate_gradient(lambda v: self.map(op.A_normal, v) + rho * v,
                                      self.map_y(y) + rho * x0, x0=x0, iters=iters)
        shape = self.shape
        rhs = self.map_y(y) + rho * x0
        if w is not None:
            rhs = rhs + rho * lam_z * dt(w)

        def apply(v):
            v = v.reshape(shape)
            return (self.map(op.A_normal, v) + rho * (v + lam_z * dtd(v))).reshape(1, -1)

        return conjugate_gradient(apply, rhs.reshape(1, -1), x0=x0.reshape(1, -1), iters=iters).reshape(shape)

    def map_y(self, y: torch.Tensor) -> torch.Tensor:
        """``A^T y`` slice by slice."""
        parts = []
        for c in chunks(self.n_z, self.batch):
            self.check_stop()
            parts.append(self.op.A_adjoint(y[c]))
        return torch.cat(parts)

    def measured_noise(self, rng: SampleRNG) -> torch.Tensor:
        """Standard normal noise on the measured entries of every slice's ``y``, from the sample's stream."""
        noise = rng.randn(tuple(self.y.shape), self.y.dtype)[0]
        mask = self.op.measured()
        return noise if mask is None else noise * mask.to(noise.real.dtype)


@dataclass
class Stepper:
    """One volume solver: ``step(x, x0, sigma, sigma_next)`` -> (next state, data-consistent estimate)."""

    solver: str
    params: Any
    vol: Volume
    rng: SampleRNG
    lam_z: float
    cg_iters: int
    sigma_y: float  # floored
    data_var: float | None

    def step(self, x, x0, sigma: float, sigma_next: float):
        return getattr(self, f"_{self.solver}")(x, x0, sigma, sigma_next)

    def _noise(self, shape=None) -> torch.Tensor:
        return self.rng.randn(self.vol.shape if shape is None else shape)[0]

    def _diffpir(self, x, x0, sigma, sigma_next):
        p, vol = self.params, self.vol
        r2 = sigma**2 if self.data_var is None else sigma**2 * self.data_var / (self.data_var + sigma**2)
        rho = p.lam * self.sigma_y**2 / r2
        if p.perturb:  # perturb-and-MAP of all three Gaussian terms: a draw, not the mode
            y_p = vol.y + self.sigma_y * vol.measured_noise(self.rng)
            x0_p = x0 + (self.sigma_y / rho**0.5) * self._noise()
            w = None
            if self.lam_z > 0:
                w = (self.sigma_y / (rho * self.lam_z) ** 0.5) * self._noise((vol.n_z - 1, *vol.shape[1:]))
            x0_hat = vol.solve(y_p, x0_p, rho, self.lam_z, self.cg_iters, w=w)
        else:
            x0_hat = vol.solve(vol.y, x0, rho, self.lam_z, self.cg_iters)
        if sigma_next == 0:
            return x0_hat, x0_hat
        eps = (x - x0_hat) / sigma
        return x0_hat + sigma_next * ((1 - p.zeta) ** 0.5 * eps + p.zeta**0.5 * self._noise()), x0_hat

    def _dds(self, x, x0, sigma, sigma_next):
        p, vol = self.params, self.vol
        x0_dc = x0
        if p.cg_steps > 0:
            if self.data_var is not None:
                gamma = self.sigma_y**2 * (self.data_var + sigma**2) / (sigma**2 * self.data_var)
                x0_dc = vol.solve(vol.y, x0, gamma, self.lam_z, p.cg_steps, exact=False)
            else:  # the paper's Krylov step on the normal equations, slice by slice
                x0_dc = vol.solve(vol.y, x0, 0.0, 0.0, p.cg_steps, exact=False)
        sigma_down, sigma_up = ancestral_step(sigma, sigma_next, p.eta)
        x = ddim_step(x, x0, sigma, sigma_down) + (x0_dc - x0)
        if sigma_up > 0:
            x = x + sigma_up * self._noise()
        return x, x0_dc

    def _ddnm(self, x, x0, sigma, sigma_next):
        p, vol = self.params, self.vol
        sigma_down, sigma_up = ancestral_step(sigma, sigma_next, p.eta)
        a_t = 1.0 - sigma_down / sigma
        y = vol.y
        if p.reinject and vol.op.noise_sigma > 0:
            y = y + vol.op.noise_sigma * vol.measured_noise(self.rng)
        x0_proj = x0
        if sigma_up > 0:  # no fresh noise to hide the data's: no correction (lambda_t = 0)
            x0_proj = vol.solve(y, x0, (a_t * self.sigma_y / sigma_up) ** 2, self.lam_z, self.cg_iters)
        x = ddim_step(x, x0_proj, sigma, sigma_down)
        if sigma_up > 0:
            x = x + sigma_up * self._noise()
        return x, x0_proj


def data_variance(solver: str, params, noise_sigma: float, denoiser) -> float | None:
    """The prior's per-pixel variance where the solver's data step uses it (once per run)."""
    if (solver == "diffpir" and params.r_variance == "prior") or (
            solver == "dds" and params.noise_aware and noise_sigma > 0):
        return prior_data_variance(denoiser)
    return None


def check_volume_solver(solver: str, params, lam_z: float, noise_sigma: float) -> None:
    """InputError (one sentence) for a solver or setting the volume path does not take."""
    if solver not in VOLUME_SOLVERS:
        raise InputError(f"Volume reconstruction runs the solvers {', '.join(VOLUME_SOLVERS)}; "
                         f"{solver!r} has no volume path.")
    if solver == "dds" and lam_z > 0 and not (params.noise_aware and noise_sigma > 0):
        raise InputError("dds couples slices through its noise-aware data step, which needs noisy data and "
                         "noise_aware=true; use lam_z 0 (slice by slice) or the solver diffpir.")
    if solver == "ddnm" and params.travel_length > 0:
        raise InputError("ddnm's volume path has no time travel; set travel_length=0.")
