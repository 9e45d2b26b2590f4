"""The result file: posterior mean and standard deviation, metrics, provenance, the measurement.

Layout (documented in docs/formats.md)::

    /                     attrs diffrecon_format="result", format_version, ... (as a measurement),
                                default="posterior"
    /posterior            NXdata: attrs NX_class="NXdata", signal="mean", n_samples, complete,
                                  std_is_posterior, spread, calibration, units, diverged
                                  (bool) and, if true, diverged_step (first step a sample
                                  failed a check; the per-sample record is
                                  /provenance/divergence, JSON)
    /posterior/mean       (C, H, W) float32, attr units
    /posterior/std        (C, H, W) float32
    /posterior/mean_errors    hard link to /posterior/std (NeXus <field>_errors: silx draws error
                              bars), only where the std is a posterior std
    /posterior/samples    optional (k, C, H, W) float32, k <= 16
    /metrics              attrs: one float per metric
    /provenance           attrs: the recipe (solver, params (JSON), steps, schedule, samples, seed,
                                 prior, warm_start, ...: diffrecon.engine.Recipe.to_dict, read back
                                 by Recipe.from_provenance) and the record of the run (prior_hash,
                                 software_version, torch_version, device, batches, elapsed_seconds, ...)
    /measurement, /operator   the measurement that was reconstructed (see measurement_file)

Opening a result therefore restores both the data and the recipe that made it.
"""
from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .. import __version__
from ..calibration import status_text
from ..errors import InputError
from ..measurement import FORMAT_VERSION, Result
from ..solvers.labels import KINDS, POSTERIOR, SEED, UNKNOWN
from .h5 import (atomic_h5, attr_bool, attr_int, attr_json, attr_str, attr_text, open_readonly, read_finite,
                 require_dataset, require_group, set_attr)
from .measurement_file import _dataset, check_format, read_measurement_from, write_measurement_into

MAX_STORED_SAMPLES = 16
_JSON_KEYS_ATTR = "json_keys"  # names of provenance attributes stored as JSON text


def write_result(path: str | os.PathLike, result: Result) -> None:
    """Write ``result`` (and the measurement it came from) atomically to ``path``."""
    mean, std = _posterior_arrays(result)
    with atomic_h5(path) as f:
        _write_result(f, result, mean, std)


def write_result_into(group: h5py.Group, result: Result) -> None:
    """Write ``result`` in the result-file layout into ``group`` of a file open for writing (a
    comparison file holds one per run); ``group``'s attributes take the root attributes."""
    _write_result(group, result, *_posterior_arrays(result))


def _posterior_arrays(result: Result) -> tuple[np.ndarray, np.ndarray]:
    mean = np.asarray(result.mean, dtype=np.float32)
    std = np.asarray(result.std, dtype=np.float32)
    if mean.ndim != 3 or std.shape != mean.shape:
        raise ValueError(f"result mean {mean.shape} and std {std.shape} must both be (C, H, W)")
    return mean, std


def _write_result(f: h5py.Group, result: Result, mean: np.ndarray, std: np.ndarray) -> None:
    f.attrs["diffrecon_format"] = "result"
    if result.measurement is not None:
        write_measurement_into(f, result.measurement)
    else:
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["software_version"] = __version__
    f.attrs["default"] = "posterior"

    p = f.create_group("posterior")
    p.attrs["NX_class"] = "NXdata"
    p.attrs["signal"] = "mean"
    p.attrs["n_samples"] = int(result.n_samples)
    p.attrs["complete"] = bool(result.complete)
    p.attrs["std_is_posterior"] = bool(result.std_is_posterior)
    p.attrs["spread"] = str(result.spread)  # posterior | seed | prior | point | unknown
    p.attrs["calibration"] = status_text(result.provenance)
    p.attrs["units"] = result.units or ""
    divergence = (result.provenance or {}).get("divergence")
    p.attrs["diverged"] = bool(divergence)
    if divergence:
        p.attrs["diverged_step"] = int(divergence["first_step"])
    m = _dataset(p, "mean", mean)
    m.attrs["units"] = result.units or ""
    m.attrs["interpretation"] = "image"
    s = _dataset(p, "std", std)
    s.attrs["units"] = result.units or ""
    s.attrs["interpretation"] = "image"
    if result.std_is_posterior:  # NeXus error bars claim an uncertainty of the mean: posterior only
        p["mean_errors"] = s  # a hard link: one dataset, two names
    if result.samples is not None and len(result.samples):
        samples = np.asarray(result.samples, dtype=np.float32)[:MAX_STORED_SAMPLES]
        if samples.shape[1:] != mean.shape:
            raise ValueError(f"result samples {samples.shape} do not match mean {mean.shape}")
        _dataset(p, "samples", samples).attrs["units"] = result.units or ""

    mg = f.create_group("metrics", track_order=True)
    for key, value in (result.metrics or {}).items():
        if value is not None:
            mg.attrs[str(key)] = float(value)

    pg = f.create_group("provenance", track_order=True)
    prov = dict(result.provenance or {})
    prov.setdefault("software_version", __version__)
    prov.setdefault("python_version", platform.python_version())
    json_keys = []
    for key, value in prov.items():
        if isinstance(value, (dict, list, tuple)):
            json_keys.append(str(key))
        set_attr(pg.attrs, str(key), value)
    pg.attrs[_JSON_KEYS_ATTR] = json.dumps(json_keys)


def read_result(path: str | os.PathLike, *, allow_external: bool = False) -> Result:
    """The result in ``path`` with ``result.measurement`` filled, validated before use."""
    path = Path(path)
    with open_readonly(path, allow_external=allow_external) as f:
        return read_result_from(f, path)


def read_result_from(f: h5py.Group, path: Path) -> Result:
    """The result stored in ``f`` (a file's root, or a comparison file's run group) of the open
    file ``path``, validated before use; errors name ``path``."""
    check_format(f, path, ("result",))
    p = require_group(f, "posterior", path)
    mean_ds = require_dataset(f, "posterior/mean", path, ndim=3, kinds="f", what="a (C, H, W) float32 image")
    std_ds = require_dataset(f, "posterior/std", path, shape=mean_ds.shape, kinds="f",
                             what=f"a {mean_ds.shape} float32 image")
    samples = None
    if "samples" in p:
        s_ds = require_dataset(f, "posterior/samples", path, ndim=4, kinds="f",
                               what=f"a (k, {', '.join(map(str, mean_ds.shape))}) float32 array")
        if tuple(s_ds.shape[1:]) != tuple(mean_ds.shape):
            raise InputError(f"File {path}: dataset /posterior/samples has shape {s_ds.shape}; "
                             f"expected (k, {', '.join(map(str, mean_ds.shape))}).")
        samples = read_finite(s_ds, path, np.float32)
    mean = read_finite(mean_ds, path, np.float32)
    std = read_finite(std_ds, path, np.float32)
    if (std < 0).any():
        raise InputError(f"File {path}: dataset /posterior/std has negative values; a standard deviation is >= 0.")

    measurement = None
    if "measurement" in f or "operator" in f:
        measurement = read_measurement_from(f, path)
        if tuple(measurement.image_shape) != tuple(mean.shape):
            raise InputError(f"File {path}: dataset /posterior/mean has shape {mean.shape}, but the "
                             f"measurement's image shape is {tuple(measurement.image_shape)}.")

    metrics: dict[str, float] = {}
    if "metrics" in f:
        for key, value in require_group(f, "metrics", path).attrs.items():
            try:
                metrics[key] = float(np.asarray(value).reshape(()))
            except (TypeError, ValueError):
                raise InputError(f"File {path}: attribute {key} of /metrics is {attr_text(value)}; "
                                 "expected a number.") from None

    provenance = _read_provenance(f, path) if "provenance" in f else {}
    stored = 0 if samples is None else len(samples)
    n_samples = attr_int(p.attrs, "n_samples", path, "/posterior", default=stored)
    return Result(
        mean=mean, std=std, samples=samples, n_samples=n_samples, metrics=metrics, provenance=provenance,
        spread=_read_spread(p, path),
        units=attr_str(mean_ds.attrs, "units", "a.u."), measurement=measurement,
        complete=attr_bool(p.attrs, "complete", path, "/posterior", default=True),
    )


def _read_spread(p: h5py.Group, path: Path) -> str:
    """What the file's std is; a file that does not say reads as "not a posterior" (unknown)."""
    flag = attr_bool(p.attrs, "std_is_posterior", path, "/posterior", default=False)
    if "spread" in p.attrs:
        kind = attr_str(p.attrs, "spread")
        if kind not in KINDS:
            raise InputError(f"File {path}: attribute spread of /posterior is {kind!r}; valid values are "
                             f"{', '.join(KINDS)}.")
        return kind
    if flag:
        return POSTERIOR
    return SEED if "std_is_posterior" in p.attrs else UNKNOWN


def _read_provenance(f: h5py.File, path: Path) -> dict[str, Any]:
    pg = require_group(f, "provenance", path)
    json_keys = attr_json(pg.attrs, _JSON_KEYS_ATTR, path, "/provenance", default=[])
    if not (isinstance(json_keys, list) and all(isinstance(k, str) for k in json_keys)):
        raise InputError(f"File {path}: attribute {_JSON_KEYS_ATTR} of /provenance is not a JSON list of names.")
    out: dict[str, Any] = {}
    for key in pg.attrs:
        if key == _JSON_KEYS_ATTR:
            continue
        if key in json_keys:
            out[key] = attr_json(pg.attrs, key, path, "/provenance")
            continue
        value = pg.attrs[key]
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        elif isinstance(value, np.generic):
            value = value.item()
        elif isinstance(value, np.ndarray):
            value = value.tolist()
        out[key] = value
    return out
