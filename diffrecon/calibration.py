"""Stored calibrations of the std: one record per setting, kept in the user's cache folder.

A *setting* is one prior x forward model (the operator, its noise level and the value range) x
solver with its parameters x step budget x schedule; :func:`setting_key` hashes exactly that.
``diffrecon calibrate`` (:mod:`diffrecon.calibrate`) measures how far the solver's std is off for
a setting and stores a :class:`Calibration` here; every later run of the same setting finds it
(:func:`lookup`), multiplies its std by ``scale`` and records that in the provenance. The store
is ``calibration.json`` in :func:`~diffrecon.priors.acceleration.cache_folder`, written
atomically by :func:`diffrecon.calibrate.save` (a temporary file renamed over it), so a crash
never leaves half a store. This module only reads it: the engine and the io layer sit above it.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .priors.acceleration import cache_folder

STORE_NAME = "calibration.json"
UNCALIBRATED = "uncalibrated"


@dataclass(frozen=True)
class Calibration:
    """How far one setting's std is off, measured on ``n_images`` simulated measurements."""

    key: str
    setting: str  # the setting in words
    scale: float  # multiply the std by this
    coverage: float  # t-interval coverage of the uncorrected std (nominal ``level``)
    coverage_calibrated: float  # of the corrected std, on images the scale was not fitted on
    error_to_std: float  # RMS error / (sqrt(1 + 1/K) RMS std): 1 for an exact sampler
    n_images: int
    samples: int  # K per image
    level: float
    method: str  # how the truths were drawn and what the std was compared with
    variance_ratio: float | None = None  # solver / exact posterior variance (exact priors only)
    exact_coverage: float | None = None  # what K exact posterior draws cover on the same images
    created: str = ""
    software_version: str = ""

    def status(self) -> str:
        """One line for beside the std map."""
        return f"calibrated (coverage {self.coverage_calibrated:.2f} measured on {self.n_images} images)"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Calibration":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def store_path() -> Path:
    return cache_folder() / STORE_NAME


def _digest(h: "hashlib._Hash", value: Any) -> None:
    h.update(json.dumps(value, sort_keys=True, default=str).encode())


def operator_digest(spec) -> str:
    """sha256 of an :class:`~diffrecon.operators.base.OperatorSpec`: kind, shape, parameters, arrays."""
    h = hashlib.sha256()
    _digest(h, [spec.kind, list(spec.image_shape), spec.params])
    for name in sorted(spec.arrays):
        a = np.ascontiguousarray(spec.arrays[name])
        _digest(h, [name, str(a.dtype), list(a.shape)])
        h.update(a.tobytes())
    return h.hexdigest()


def setting_key(*, prior: str, prior_hash: str, operator, noise_sigma: float, value_range, solver: str,
                params: dict[str, Any], steps: int, schedule: str, warm_start: str = "none") -> str:
    """The store's key of one setting (hex, 24 characters); a warm start is part of the setting
    (the keys of runs from noise are those of earlier versions)."""
    h = hashlib.sha256()
    _digest(h, {"prior": prior, "prior_hash": prior_hash, "operator": operator_digest(operator),
                "noise_sigma": float(noise_sigma), "value_range": None if value_range is None else
                [float(v) for v in value_range], "solver": solver, "params": params, "steps": int(steps),
                "schedule": schedule, **({"warm_start": warm_start} if warm_start != "none" else {})})
    return h.hexdigest()[:24]


def setting_text(*, prior: str, operator, noise_sigma: float, solver: str, params: dict[str, Any], steps: int,
                 schedule: str, warm_start: str = "none") -> str:
    shown = ", ".join(f"{k}={v}" for k, v in params.items())
    warm = f", warm-started from {warm_start.upper()}" if warm_start != "none" else ""
    return (f"{solver}({shown}) {steps} steps ({schedule}{warm}), prior {prior}, {operator.kind} "
            f"{'x'.join(map(str, operator.image_shape))}, noise {noise_sigma:.4g}")


def load_store(path: Path | None = None) -> dict[str, dict[str, Any]]:
    """Every stored record by key; an unreadable or foreign store reads as empty."""
    path = path or store_path()
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    records = data.get("calibrations") if isinstance(data, dict) else None
    return {k: v for k, v in records.items() if isinstance(v, dict)} if isinstance(records, dict) else {}


def lookup(key: str, path: Path | None = None) -> Calibration | None:
    record = load_store(path).get(key)
    if record is None:
        return None
    try:
        cal = Calibration.from_dict(record)
    except TypeError:
        return None
    return cal if np.isfinite(cal.scale) and cal.scale > 0 else None


def status_text(provenance: dict[str, Any] | None) -> str:
    """"calibrated (coverage x.xx measured on N images)" or "uncalibrated", from a result's provenance."""
    record = (provenance or {}).get("calibration")
    if isinstance(record, dict) and record.get("applied"):
        try:
            return Calibration.from_dict(record).status()
        except (TypeError, ValueError):
            pass
    return UNCALIBRATED


def provenance_record(cal: Calibration | None) -> dict[str, Any]:
    """What a result's provenance says about calibration (JSON-able)."""
    if cal is None:
        return {"applied": False, "status": UNCALIBRATED}
    return {"applied": True, "status": cal.status(), **cal.to_dict()}


def run_key(measurement, *, prior: str, prior_hash: str, solver: str, params: dict[str, Any], steps: int,
            schedule: str, warm_start: str = "none") -> tuple[str, str]:
    """``(key, setting in words)`` of a run of ``measurement`` (the file's operator and noise)."""
    common = dict(prior=prior, operator=measurement.operator, noise_sigma=float(measurement.noise_sigma),
                  solver=solver, params=params, steps=steps, schedule=schedule, warm_start=warm_start)
    return (setting_key(prior_hash=prior_hash, value_range=measurement.value_range, **common),
            setting_text(**common))


def stored_calibration(measurement, config, setup) -> Calibration | None:
    """The stored calibration of an engine run's setting (``setup``: the engine's prepared run), or
    None: switched off (``config.use_calibration``), no record, or a spread that no factor makes
    an uncertainty (prior samples, point estimates)."""
    if not config.use_calibration or setup_spread(setup).kind not in ("posterior", "seed"):
        return None
    key, _ = run_key(measurement, prior=setup.prior_name, prior_hash=setup.prior_hash, solver=setup.info.name,
                     params=dataclasses.asdict(setup.params), steps=len(setup.sigmas) - 1, schedule=config.schedule,
                     warm_start=setup_warm_start(setup))
    return lookup(key)


def setup_warm_start(setup) -> str:
    """The warm start a prepared run really takes ("none" where it has no diffusion to warm-start)."""
    return setup.recipe.warm_start if getattr(setup, "warm", None) is not None else "none"


def setup_spread(setup):
    """What a prepared run's spread is: its solver's with its params, warm start included
    (:func:`diffrecon.solvers.labels.spread_of_run`)."""
    from .solvers.labels import spread_of_run

    return spread_of_run(setup.info, setup.params, setup_warm_start(setup))


def spread_fields(setup, calibration: Calibration | None) -> dict[str, Any]:
    """The Planned event's fields that say what the std is and whether it is calibrated."""
    spread = setup_spread(setup)
    return {"std_is_posterior": spread.is_posterior, "spread": spread.kind, "spread_reason": spread.reason,
            "calibration": calibration.status() if calibration is not None else UNCALIBRATED}


def std_title(spread: str, status: str = UNCALIBRATED) -> str:
    """Title of a std map: what the spread is, and for an uncertainty whether it is calibrated."""
    from .solvers.labels import POSTERIOR, SEED, TITLE, UNKNOWN

    title = TITLE.get(spread, TITLE[UNKNOWN])
    return f"{title} · {status}" if spread in (POSTERIOR, SEED) else title
