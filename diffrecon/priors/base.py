"""The prior interface: a denoiser in the variance-exploding sigma parametrisation.

``denoiser(x, sigma)`` returns the Tweedie estimate ``E[x0 | x0 + sigma * noise = x]`` in the
prior's own value range (the engine's Normalization maps physical units to it). ``sigma`` is a
Python float or a ``(B,)`` tensor. Adapters convert epsilon- or v-prediction networks once, so
solvers never see timesteps, alphas or value ranges (Karras et al., EDM, NeurIPS 2022, Sec. 2).
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import InputError, printable

Tensor = torch.Tensor


def read_json(path: Path, what: str, max_bytes: int = 1 << 20):
    """The JSON value in ``path`` (a card, a config, a checkpoint's state); one sentence on any fault."""
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise InputError(f"{what} {path} is {size} bytes; a JSON file here is at most {max_bytes}.")
        return json.loads(path.read_text(encoding="utf-8"))
    except InputError:
        raise
    except PermissionError:
        raise InputError(f"{what} {path} cannot be read: permission denied.") from None
    except (OSError, ValueError, RecursionError) as err:  # JSONDecodeError, UnicodeDecodeError, digit limits
        raise InputError(f"{what} {path} cannot be read as JSON ({printable(str(err))[:120]}).") from None


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
        kw["resolution"] = _numbers(kw["resolution"], 2, source, "resolution", whole=True)
        kw["value_range"] = _numbers(kw["value_range"], 2, source, "value_range")
        (kw["channels"],) = _numbers([kw["channels"]], 1, source, "channels", whole=True)
        (kw["sigma_min"],) = _numbers([kw["sigma_min"]], 1, source, "sigma_min")
        (kw["sigma_max"],) = _numbers([kw["sigma_max"]], 1, source, "sigma_max")
        if min(kw["resolution"]) < 1 or not 1 <= kw["channels"] <= 16:
            raise InputError(f"Prior card {source}: resolution {kw['resolution']} and channels {kw['channels']} must "
                             "be positive (channels at most 16).")
        low, high = kw["value_range"]
        if not low < high or not 0 <= kw["sigma_min"] <= kw["sigma_max"]:
            raise InputError(f"Prior card {source}: value_range {kw['value_range']} must be low < high and "
                             f"0 <= sigma_min {kw['sigma_min']} <= sigma_max {kw['sigma_max']}.")
        for key, kind in (("schedule", dict), ("extra", dict), ("name", str), ("training_data", str),
                          ("description", str)):
            if key in kw and not isinstance(kw[key], kind):
                raise InputError(f"Prior card {source}: {key} is {type(kw[key]).__name__}; expected "
                                 f"{'an object' if kind is dict else 'text'}.")
        return cls(**kw)

    @classmethod
    def load(cls, path: str | Path) -> "PriorCard":
        path = Path(path)
        d = read_json(path, "Prior card")
        if not isinstance(d, dict):
            raise InputError(f"Prior card {path} holds {type(d).__name__}, not a JSON object.")
        return cls.from_dict(d, str(path))


def _numbers(value, count: int, source: str, key: str, whole: bool = False) -> tuple:
    """``count`` finite numbers (whole numbers when ``whole``) from a card's JSON value."""
    items = value if isinstance(value, (list, tuple)) else None
    ok = items is not None and len(items) == count and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and (not whole or v == int(v))
        for v in items)
    if not ok:
        want = f"{count} {'whole' if whole else 'finite'} number{'s' if count > 1 else ''}"
        raise InputError(f"Prior card {source}: {key} is {json.dumps(value)[:60]}; expected {want}.")
    return tuple(int(v) if whole else float(v) for v in items)


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
