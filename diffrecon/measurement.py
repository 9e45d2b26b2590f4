"""Plain data that crosses between the io layer, the engine, the CLI and the GUI.

No torch tensors here: arrays are numpy, so these objects can be written, pickled-free copied
between threads and shown by any front end.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .operators.base import OperatorSpec

FORMAT_VERSION = 1


@dataclass
class Measurement:
    """A measurement ``y`` of an unknown image under a forward model, in physical units.

    ``value_range`` is the expected range of the image in physical units (low, high); the engine
    maps it onto the prior's own range. ``units`` names the image's physical unit (e.g. "1/cm",
    "a.u."), ``pixel_size`` the pixel pitch and ``pixel_unit`` its unit.
    """

    y: np.ndarray  # (*meas_shape), real or complex, no batch axis
    operator: OperatorSpec
    noise_sigma: float
    units: str = "a.u."
    value_range: tuple[float, float] | None = None
    ground_truth: np.ndarray | None = None  # (C, H, W) in physical units
    pixel_size: float = 1.0
    pixel_unit: str = "px"
    title: str = ""
    source: Path | None = None
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.operator.image_shape)


@dataclass
class Result:
    """A finished (or stopped) reconstruction, in the measurement's physical units."""

    mean: np.ndarray  # (C, H, W)
    std: np.ndarray  # (C, H, W); seed spread for deterministic solvers
    samples: np.ndarray | None  # (k, C, H, W), k <= keep_samples
    n_samples: int  # how many samples the statistics are over
    metrics: dict[str, float]
    provenance: dict[str, Any]  # solver, params, steps, samples, seed, prior, versions, device, time
    std_is_posterior: bool = True  # False: spread of a deterministic sampler over seeds
    units: str = "a.u."
    measurement: Measurement | None = None
    complete: bool = True  # False if stopped early (statistics over the finished samples)
    #: what the std is (diffrecon.solvers.labels): posterior | seed | prior | point | unknown;
    #: None: "posterior" if std_is_posterior else "seed". std_is_posterior follows it.
    spread: str | None = None

    def __post_init__(self):
        if self.spread is None:
            self.spread = "posterior" if self.std_is_posterior else "seed"
        self.std_is_posterior = self.spread == "posterior"
