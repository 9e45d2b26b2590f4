"""The summary table of a batch: one row per input (status, time, metrics, error), as CSV and
HDF5, each written atomically (a reader sees the previous table or the new one, never half).

CSV columns: index, name, input, output, status, wall_seconds, error, recipe_hash, then one column per
metric (empty where an input has none). HDF5: group ``/batch`` (attrs ``recipe`` as JSON,
``recipe_hash``, ``counts`` as JSON) with one dataset per text column (UTF-8 strings) and per
number column (float64, NaN where missing), metrics under ``/batch/metrics/<name>``.
"""
from __future__ import annotations

import csv
import json
import math
from collections import Counter
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..io.atomic import atomic_write
from .job import Record
from .manifest import Item

TEXT_COLUMNS = ("name", "input", "output", "status", "error", "recipe_hash")


def metric_names(records: Sequence[Record]) -> list[str]:
    """Every metric any record has, in first-seen order."""
    names: dict[str, None] = {}
    for record in records:
        names.update(dict.fromkeys(record.metrics))
    return list(names)


def counts(records: Sequence[Record]) -> dict[str, int]:
    return dict(Counter(r.status for r in records))


def write_csv(path: Path, records: Sequence[Record]) -> Path:
    metrics = metric_names(records)

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            out = csv.writer(fh)
            out.writerow(["index", "name", "input", "output", "status", "wall_seconds", "error", "recipe_hash", *metrics])
            for r in sorted(records, key=lambda r: r.index):
                out.writerow([r.index, r.name, r.input, r.output, r.status, f"{r.seconds:.3f}", r.error,
                              r.recipe_hash, *(_number(r.metrics.get(m)) for m in metrics)])
    return atomic_write(path, write, action="write the summary")


def _number(value: Any) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else repr(float(value))


def write_h5(path: Path, records: Sequence[Record], recipe: dict[str, Any], recipe_hash: str) -> Path:
    import h5py

    from ..io.h5 import atomic_h5

    rows = sorted(records, key=lambda r: r.index)
    with atomic_h5(path) as f:  # built in memory, then one plain write: a full disk is one sentence
        g = f.create_group("batch")
        g.attrs["diffrecon_format"] = "batch_summary"
        g.attrs["recipe"] = json.dumps(recipe, sort_keys=True)
        g.attrs["recipe_hash"] = recipe_hash
        g.attrs["counts"] = json.dumps(counts(rows))
        strings = h5py.string_dtype("utf-8")
        g.create_dataset("index", data=np.array([r.index for r in rows], dtype=np.int64))
        for column in TEXT_COLUMNS:
            g.create_dataset(column, data=[str(getattr(r, column)) for r in rows], dtype=strings)
        g.create_dataset("wall_seconds", data=np.array([r.seconds for r in rows], dtype=np.float64))
        m = g.create_group("metrics")
        for name in metric_names(rows):
            m.create_dataset(name, data=np.array([r.metrics.get(name, np.nan) for r in rows], dtype=np.float64))
    return path


def read_h5(path: Path) -> dict[str, Any]:
    """The table of a summary file as columns (for tests and scripts)."""
    from ..io.h5 import open_readonly

    with open_readonly(path) as f:
        g = f["batch"]
        out: dict[str, Any] = {c: [s.decode() if isinstance(s, bytes) else s for s in g[c][()]] for c in TEXT_COLUMNS}
        out["index"] = g["index"][()]
        out["wall_seconds"] = g["wall_seconds"][()]
        out["metrics"] = {name: ds[()] for name, ds in g["metrics"].items()}
        out["recipe"] = json.loads(g.attrs["recipe"])
        out["batch_recipe_hash"] = str(g.attrs["recipe_hash"])
    return out


def write_summary(records: Mapping[int, Record], items: Sequence[Item], paths: tuple[Path, Path],
                  recipe: dict[str, Any], recipe_hash: str, missing: str) -> list[Record]:
    """Both tables with a row per item (``records`` by item index; items without a record get the
    status ``missing``); the rows written."""
    rows = [records.get(item.index) or Record.of(item, missing) for item in items]
    write_csv(paths[0], rows)
    write_h5(paths[1], rows, recipe, recipe_hash)
    return rows
