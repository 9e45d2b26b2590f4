"""The inputs of a batch: a folder, a glob pattern or a CSV manifest with per-input overrides.

A CSV manifest has a header row. ``input`` (the measurement file, relative paths are read from the
manifest's folder) is required; ``output`` (the result file) is optional; every other column
overrides one recipe setting for its row: ``solver``, ``steps``, ``samples``, ``seed``, ``prior``,
``schedule``, ``warm_start``, ``sigma_start``, or a solver parameter as ``param.<name>``. An empty
cell keeps the batch's setting. Rows are kept in file order; folders and globs are sorted by name,
so every executor and every part of a job array see the same order.
"""
from __future__ import annotations

import csv
import glob
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..errors import InputError, printable

#: The recipe settings a manifest row may override, with their types.
OVERRIDES: dict[str, type] = {"solver": str, "steps": int, "samples": int, "seed": int, "prior": str,
                              "schedule": str, "warm_start": str, "sigma_start": float}
PARAM_PREFIX = "param."
INPUT_SUFFIXES = (".h5", ".hdf5", ".nxs")
RESULT_SUFFIX = ".result.h5"


@dataclass(frozen=True)
class Item:
    """One input of a batch: where it is read from and written to, and its own recipe overrides."""

    index: int  # position in the whole manifest (stable across parts of a job array)
    name: str
    input: Path
    output: Path
    overrides: Mapping[str, Any] = field(default_factory=dict)  # recipe setting -> value; params as "param.<name>"


def read_manifest(source: str | os.PathLike, out_dir: str | os.PathLike) -> list[Item]:
    """The items of ``source`` (a folder, a glob pattern or a .csv manifest), outputs in ``out_dir``."""
    text = os.fspath(source)
    path = Path(text)
    if path.suffix.lower() == ".csv":
        if not path.is_file():
            raise InputError(f"Manifest {path} does not exist.")
        return _from_csv(path, Path(out_dir))
    if path.is_dir():
        inputs = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in INPUT_SUFFIXES)
        where = f"Folder {path} holds no measurement files ({', '.join(INPUT_SUFFIXES)})"
    elif glob.has_magic(text):
        inputs = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
        where = f"The pattern {text!r} matches no files"
    else:
        what = "is a file" if path.exists() else "does not exist"
        raise InputError(f"Inputs {text!r} {what}; give a folder, a glob pattern such as 'data/*.h5', or a .csv manifest.")
    if not inputs:
        raise InputError(f"{where}; nothing to reconstruct.")
    return _check_unique([Item(i, p.stem, p, Path(out_dir) / (p.stem + RESULT_SUFFIX)) for i, p in enumerate(inputs)])


def _from_csv(path: Path, out_dir: Path) -> list[Item]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise InputError(f"Manifest {path} cannot be read as CSV ({err}).") from None
    if not rows:
        raise InputError(f"Manifest {path} has no rows; its first line names the columns (at least 'input') "
                         "and each further line is one input.")
    columns = list(rows[0].keys())
    if "input" not in columns:
        raise InputError(f"Manifest {path} has no 'input' column; its columns are {', '.join(map(str, columns))}.")
    for column in columns:
        if column not in ("input", "output") and column not in OVERRIDES and not str(column).startswith(PARAM_PREFIX):
            raise InputError(f"Manifest {path}: column {printable(column)!r} is not known; valid columns are input, "
                             f"output, {', '.join(OVERRIDES)} and param.<solver parameter>.")
    items = []
    for number, row in enumerate(rows, start=2):
        if None in row:
            raise InputError(f"Manifest {path}, line {number}: more cells than columns.")
        source = (row.get("input") or "").strip()
        if not source:
            raise InputError(f"Manifest {path}, line {number}: the input cell is empty.")
        inp = _resolve(path.parent, source)
        output = (row.get("output") or "").strip()
        out = _resolve(out_dir, output) if output else out_dir / (inp.stem + RESULT_SUFFIX)
        overrides = {key: _typed(path, number, key, value.strip()) for key, value in row.items()
                     if key not in ("input", "output") and value is not None and value.strip()}
        items.append(Item(len(items), out.name.removesuffix(RESULT_SUFFIX).removesuffix(".h5"), inp, out, overrides))
    return _check_unique(items)


def _resolve(folder: Path, text: str) -> Path:
    p = Path(text).expanduser()
    return p if p.is_absolute() else folder / p


def _typed(path: Path, line: int, key: str, value: str) -> Any:
    kind = OVERRIDES.get(key, str)
    if key.startswith(PARAM_PREFIX):
        return value  # parsed against the solver's parameter types with the recipe
    try:
        return kind(value)
    except ValueError:
        want = "an integer" if kind is int else "a number"
        raise InputError(f"Manifest {path}, line {line}: {key} is {value!r}; it must be {want}.") from None


def _check_unique(items: list[Item]) -> list[Item]:
    seen: dict[Path, Item] = {}
    for item in items:
        key = Path(os.path.abspath(item.output))
        if key in seen:
            raise InputError(f"Inputs {seen[key].input} and {item.input} would both write {item.output}; give the "
                             "manifest an 'output' column with distinct names.")
        seen[key] = item
    return items


def split(items: Iterable[Item], num_parts: int, part_id: int) -> list[Item]:
    """Part ``part_id`` (0-based) of ``num_parts``: every ``num_parts``-th item, so parts of a sorted
    manifest get similar work; together the parts hold each item exactly once."""
    if num_parts < 1:
        raise InputError(f"num_parts must be at least 1 (got {num_parts}).")
    if not 0 <= part_id < num_parts:
        raise InputError(f"part_id must be in 0 .. {num_parts - 1} for {num_parts} parts (got {part_id}).")
    return [item for item in items if item.index % num_parts == part_id]
