"""Retrospective re-simulation of a measurement with another sampling pattern. Qt-free.

A new sampling pattern can be applied honestly only to data that holds everything the new
pattern would measure:

* MRI with fully sampled k-space (every phase-encoding column measured): the new Cartesian mask
  is applied to the measured k-space itself, ``y' = M' y`` (retrospective undersampling, as the
  fastMRI challenge builds its inputs; Zbontar et al. 2018, sec. 4.2). The file's noise stays,
  measured entries keep their noise level.
* MRI, inpainting or CT with a ground truth: ``y' = A'(x_true) + noise``, white Gaussian noise at
  the file's noise level from a generator seeded with ``seed``.

Anything else (undersampled k-space without a ground truth, a CT sinogram without one) has no
data for the new pattern; :func:`options` then says why, and the GUI disables the controls.
Re-simulation always starts from the file's own measurement, which stays the way back.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
import torch

from .errors import InputError
from .measurement import Measurement
from .operators import build_operator
from .problems import Setting, forward_model
from .problems.sampling import (MASK_KINDS, MAX_CT_VIEWS, angular_range, center_fraction,  # noqa: F401 - public here
                                mask_acceleration, sampled_columns)


@dataclass(frozen=True)
class Options:
    """What can be re-simulated for a measurement: ``settings`` empty when nothing applies."""

    available: bool
    reason: str  # why not (a sentence), or what the new measurement is computed from
    settings: tuple[Setting, ...] = ()
    mask_kinds: tuple[str, ...] = ()  # how a new mask may be drawn (empty: the pattern has no such choice)


def source_name(m: Measurement) -> str:
    if m.source is not None:
        return Path(m.source).name
    return m.title or "the file"


def options(m: Measurement) -> Options:
    """The editable sampling settings of ``m``'s forward model (its registry entry's resampling
    rule), and whether they can be applied."""
    spec = m.operator
    rule = forward_model(spec.kind).resampling
    settings = rule.settings(spec) if rule is not None else ()
    if not settings:
        return Options(False, f"The {spec.kind} forward model has no sampling pattern to change.")
    if rule.from_data(spec):
        return Options(True, "from the file's fully sampled k-space", settings, rule.mask_kinds)
    if m.ground_truth is not None:
        return Options(True, "from the ground truth, noise at the file's level", settings, rule.mask_kinds)
    return Options(False, rule.refused(spec), settings, rule.mask_kinds)


# ------------------------------------------------------------------------------ checking values
def problems(m: Measurement, values: Mapping[str, float | None]) -> dict[str, str]:
    """One sentence per invalid value in ``values`` (by setting name); empty when all are valid."""
    found = {}
    for s in options(m).settings:
        v = values.get(s.name)
        if v is None:
            if not s.optional:
                found[s.name] = f"{s.label} is required: a number from {s.low:g} to {s.high:g}."
            continue
        if not np.isfinite(v) or not s.low <= v <= s.high or (s.integer and v != int(v)):
            what = "a whole number" if s.integer else "a number"
            found[s.name] = f"{s.label} must be {what} from {s.low:g} to {s.high:g} (got {v:g})."
    acc, cf = values.get("acceleration"), values.get("center_fraction")
    if "acceleration" not in found and "center_fraction" not in found and acc and cf is not None \
            and cf > 1.0 / acc + 1e-9:
        found["center_fraction"] = (f"Centre fraction must be at most 1 / acceleration = {1.0 / acc:.3g}, "
                                    "or the centre alone exceeds the sampled columns.")
    return found


# ------------------------------------------------------------------------------ re-simulating
def resimulate(m: Measurement, values: Mapping[str, float | None], *, mask_kind: str = "random",
               seed: int = 0) -> Measurement:
    """``m`` measured again with the sampling ``values`` (see :func:`options`), as a new
    measurement whose title says how it was derived; ``m`` itself is not changed."""
    opts = options(m)
    if not opts.available:
        raise InputError(opts.reason)
    bad = problems(m, values)
    if bad:
        raise InputError(next(iter(bad.values())))
    if mask_kind not in MASK_KINDS:
        raise InputError(f"Mask kind {mask_kind!r} is not known; valid kinds are {', '.join(MASK_KINDS)}.")
    spec, name = m.operator, source_name(m)
    rule = forward_model(spec.kind).resampling
    new_arrays, what = rule.apply(spec, values, mask_kind, seed)
    what = f"{what} from {name}"
    arrays = {**spec.arrays, **new_arrays}
    new_spec = dataclasses.replace(spec, arrays=arrays, noise_sigma=float(m.noise_sigma))
    op = build_operator(new_spec)
    with torch.no_grad():
        if rule.from_data(spec):
            y = rule.restrict(torch.as_tensor(np.asarray(m.y)), {k: torch.as_tensor(v) for k, v in new_arrays.items()})
        else:
            x = torch.as_tensor(np.asarray(m.ground_truth))[None].to(op.image_dtype)
            y = op.simulate(x, torch.Generator().manual_seed(int(seed)))[0]
    y = y.numpy().astype(np.asarray(m.y).dtype, copy=False)
    attrs = {**m.attrs, "derived_from": name, "derivation": what, "resimulation_seed": int(seed)}
    return dataclasses.replace(m, y=y, operator=new_spec, title=what, attrs=attrs)


def is_derived(m: Measurement | None) -> bool:
    return m is not None and "derivation" in m.attrs
