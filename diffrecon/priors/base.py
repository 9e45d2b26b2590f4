"""The prior interface: a denoiser in the variance-exploding sigma parametrisation.

``denoiser(x, sigma)`` returns the Tweedie estimate ``E[x0 | x0 + sigma * noise = x]`` in the
prior's own value range (the engine's Normalization maps physical units to it). ``sigma`` is a
Python float or a ``(B,)`` tensor. Adapters convert epsilon- or v-prediction networks once, so
solvers never see timesteps, alphas or value ranges (Karras et al., EDM, NeurIPS 2022, Sec. 2).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import InputError

Tensor = torch.Tensor


@dataclass(frozen=True)
class PriorCard:
    """What a prior declares about itself (stored as ``card.json`` beside the weights)."""

    name: str
    resolution: tuple[int, int]
    channels: int
    value_range: tuple[float, float]
    sigma_min: float
    sigma_max: float
    #: e.g. {"kind": "vp_linear", "beta_start": 1e-4, "beta_end": 0.02, "timesteps": 1000}
    schedule: dict[str, Any] = field(default_factory=dict)
    training_data: str = ""
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "card.json") -> "PriorCard":
        required = ("name", "resolution", "channels", "value_range", "sigma_min", "sigma_max")
        missing = [k for k in required if k not in d]
        if missing:
            raise InputError(f"Prior card {source} lacks {', '.join(missing)}; a card needs {', '.join(required)}.")
        known = {f for f in cls.__dataclass_fields__}
        kw = {k: v for k, v in d.items() if k in known}
        kw["resolution"] = tuple(int(v) for v in kw["resolution"])
        kw["value_range"] = tuple(float(v) for v in kw["value_range"])
        kw["channels"] = int(kw["channels"])
        kw["sigma_min"], kw["sigma_max"] = float(kw["sigma_min"]), float(kw["sigma_max"])
        return cls(**kw)

    @classmethod
    def load(cls, path: str | Path) -> "PriorCard":
        path = Path(path)
        try:
            d = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise InputError(f"Prior card {path} cannot be read as JSON ({err}).") from None
        return cls.from_dict(d, str(path))


class Denoiser(nn.Module):
    """Base class of priors. Subclasses implement ``forward(x, sigma) -> x0_hat``."""

    card: PriorCard
    #: whether the prior's images lie in ``card.value_range`` (a network trained on data scaled
    #: into it); solvers may then clip their clean estimates to it. Analytic priors are unbounded.
    bounded: bool = True

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.card.channels, *self.card.resolution)

    @property
    def sigma_min(self) -> float:
        return self.card.sigma_min

    @property
    def sigma_max(self) -> float:
        return self.card.sigma_max

    def discrete_sigmas(self) -> Tensor | None:
        """The noise levels a discrete-time network was trained on (ascending), if any."""
        return None

    def forward(self, x: Tensor, sigma: Tensor | float) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


def sigma_as_batch(sigma: Tensor | float, x: Tensor) -> Tensor:
    """``sigma`` as a ``(B,)`` float32 tensor on ``x``'s device. A Python number becomes a fill
    on the device: copying it from the host would wait for the GPU at every evaluation."""
    if isinstance(sigma, (int, float)):
        return torch.full((x.shape[0],), float(sigma), dtype=torch.float32, device=x.device)
    s = torch.as_tensor(sigma, dtype=torch.float32, device=x.device)
    return s.expand(x.shape[0]) if s.ndim == 0 else s.reshape(x.shape[0])
