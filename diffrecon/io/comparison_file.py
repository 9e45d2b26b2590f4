"""Comparison files: the runs of a solver comparison and their results in one HDF5 file, and the
metrics table as CSV. The records they hold, :class:`RunSpec` and
:class:`Comparison`, live here with the format; :mod:`diffrecon.compare` runs the queue."""
from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..errors import InputError
from ..measurement import Measurement, Result
from .atomic import atomic_write

FORMAT = "comparison"
FORMAT_VERSION = 1
#: The columns of the metrics table after the run description, in order (Result.metrics keys).
METRIC_KEYS = ("psnr", "ssim", "residual_ratio", "coverage90", "std_error_corr", "nfe", "equivalent_nfe", "nfe_per_sample",
               "grad_evals", "seconds", "peak_memory_bytes")
RUN_KEYS = ("run", "solver", "steps", "samples", "seed", "status", "std_is_posterior")


@dataclass(frozen=True)
class RunSpec:
    """One run of the queue; ``params`` overrides the solver's defaults (as RunConfig.params)."""

    solver: str
    steps: int
    samples: int = 4
    seed: int = 0
    params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.solver} · {self.steps} steps · seed {self.seed}"

    def config(self, base):
        """``base`` (the engine's RunConfig: prior, device, precision, schedule ...) with this run's choices."""
        return dataclasses.replace(base, solver=self.solver, steps=int(self.steps), samples=int(self.samples),
                                   seed=int(self.seed), params=dict(self.params))

    def to_json(self) -> dict:
        return {"solver": self.solver, "steps": int(self.steps), "samples": int(self.samples),
                "seed": int(self.seed), "params": dict(self.params)}


@dataclass
class Comparison:
    """The queue and what became of each run: ``status`` is done, stopped (partial samples),
    diverged (a sample failed the divergence guard), cancelled, failed (``messages`` says why) or
    pending."""

    measurement: Measurement
    runs: list[RunSpec]
    results: list[Result | None]
    status: list[str]
    messages: list[str]

    @classmethod
    def empty(cls, measurement: Measurement, runs) -> "Comparison":
        n = len(runs)
        return cls(measurement, list(runs), [None] * n, ["pending"] * n, [""] * n)

    def finished(self) -> list[int]:
        """Indices of the runs that have a result."""
        return [i for i, r in enumerate(self.results) if r is not None]


# ------------------------------------------------------------------------------ table
def metrics_rows(comparison: Comparison) -> list[dict[str, Any]]:
    """One row per run: RUN_KEYS then METRIC_KEYS (NaN where a metric does not apply)."""
    rows = []
    for i, spec in enumerate(comparison.runs):
        r = comparison.results[i]
        row: dict[str, Any] = {"run": spec.label, "solver": spec.solver, "steps": spec.steps,
                               "samples": spec.samples, "seed": spec.seed, "status": comparison.status[i],
                               "std_is_posterior": "" if r is None else bool(r.std_is_posterior)}
        for key in METRIC_KEYS:
            row[key] = float(r.metrics.get(key, math.nan)) if r is not None else math.nan
        rows.append(row)
    return rows


def write_table(path: str | os.PathLike, comparison: Comparison) -> Path:
    """The metrics table as CSV (a header of RUN_KEYS + METRIC_KEYS; empty cells where NaN)."""
    import csv

    rows = metrics_rows(comparison)
    columns = list(RUN_KEYS) + list(METRIC_KEYS)

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=columns)
            w.writeheader()
            for row in rows:
                w.writerow({k: ("" if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()})

    return atomic_write(path, write, action="export to")


# ------------------------------------------------------------------------------ HDF5
def write_comparison(path: str | os.PathLike, comparison: Comparison) -> Path:
    """All runs in one HDF5 file, atomically. Root: ``diffrecon_format="comparison"``, the runs,
    their status and messages (JSON attributes) and the measurement (/measurement, /operator);
    ``/runs/NNN`` holds run NNN in the result-file layout (written by
    :func:`diffrecon.io.result_file.write_result_into`), absent for runs without a result."""
    from .h5 import atomic_h5
    from .measurement_file import write_measurement_into
    from .result_file import write_result_into

    path = Path(path)
    with atomic_h5(path) as f:
        write_measurement_into(f, comparison.measurement)
        f.attrs["diffrecon_format"] = FORMAT
        f.attrs["comparison_version"] = FORMAT_VERSION
        f.attrs["runs"] = json.dumps([s.to_json() for s in comparison.runs])
        f.attrs["status"] = json.dumps(comparison.status)
        f.attrs["messages"] = json.dumps(comparison.messages)
        group = f.create_group("runs", track_order=True)
        for i in comparison.finished():
            write_result_into(group.create_group(f"{i:03d}"), comparison.results[i])
    return path


def read_comparison(path: str | os.PathLike) -> Comparison:
    """A comparison written by :func:`write_comparison`, every run validated by
    :func:`diffrecon.io.result_file.read_result_from`."""
    from .h5 import attr_json, attr_str, open_readonly, require_group
    from .measurement_file import read_measurement_from
    from .result_file import read_result_from

    path = Path(path)
    with open_readonly(path) as f:
        kind = attr_str(f.attrs, "diffrecon_format")
        if kind != FORMAT:
            raise InputError(f"File {path} has diffrecon_format={kind!r}; expected 'comparison' "
                             "(written by diffrecon compare or the comparison window).")
        raw = attr_json(f.attrs, "runs", path, "/", default=None)
        if not isinstance(raw, list):
            raise InputError(f"File {path}: root attribute runs is missing or not a JSON list of runs.")
        try:
            runs = [RunSpec(str(d["solver"]), int(d["steps"]), int(d["samples"]), int(d["seed"]),
                            dict(d.get("params", {}))) for d in raw]
        except (KeyError, TypeError, ValueError):
            raise InputError(f"File {path}: root attribute runs does not describe runs "
                             "(each needs solver, steps, samples, seed).") from None
        status = list(attr_json(f.attrs, "status", path, "/", default=["done"] * len(runs)))
        messages = list(attr_json(f.attrs, "messages", path, "/", default=[""] * len(runs)))
        if len(status) != len(runs) or len(messages) != len(runs):
            raise InputError(f"File {path}: root attributes status and messages need one entry per run ({len(runs)}).")
        measurement = read_measurement_from(f, path)
        comparison = Comparison(measurement, runs, [None] * len(runs), [str(s) for s in status],
                                [str(m) for m in messages])
        group = require_group(f, "runs", path)
        for name in group:
            if not (name.isdigit() and int(name) < len(runs)):
                raise InputError(f"File {path}: group /runs/{name} is not a run number below {len(runs)}.")
            result = read_result_from(require_group(group, name, path), path)
            result.measurement = result.measurement or measurement
            comparison.results[int(name)] = result
    return comparison
