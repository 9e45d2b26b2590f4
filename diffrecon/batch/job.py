"""One input of a batch: plan it (skip it if finished), reconstruct it, write its result.

The functions here run wherever an executor puts them (this process, a Ray worker on another
machine), so they take and return plain picklable values: a :class:`Task` in, a :class:`Record`
out. Nothing here raises for a bad input: the record says what went wrong and the batch goes on.

A result counts as finished, and is skipped on resume, when it reads back as a valid result
file, says it is complete, and records in its provenance (``batch``) the same recipe hash and
the same SHA-256 of the input file. One of the same recipe and input that says it is incomplete
is reconstructed again. Any other file at the output's path (another recipe's result, one from
another input, one made outside a batch, a file that is no result) is left alone and reported
as failed unless ``overwrite`` is given, so nothing is silently replaced. Results are written
atomically, so a killed worker leaves no half-written file under the output's name.
"""
from __future__ import annotations

import hashlib
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..engine import RunConfig
from ..errors import DiffreconError, printable
from .manifest import Item
from .recipe import recipe_hash, with_overrides

DONE, SKIPPED, FAILED, DIVERGED, CANCELLED, PENDING = "done", "skipped", "failed", "diverged", "cancelled", "pending"


@dataclass(frozen=True)
class Task:
    """What a worker needs to reconstruct one input."""

    item: Item
    config: RunConfig  # the batch's recipe with the item's overrides
    recipe_hash: str
    input_sha256: str


@dataclass
class Record:
    """What became of one input: one row of the summary table."""

    index: int
    name: str
    input: str
    output: str
    status: str  # done | skipped | failed | diverged | cancelled | pending
    seconds: float = 0.0  # wall time of this input (read, reconstruct, write); a skipped one: its run's time
    metrics: dict[str, float] = field(default_factory=dict)
    error: str = ""
    recipe_hash: str = ""

    @classmethod
    def of(cls, item: Item, status: str, **kw) -> "Record":
        return cls(item.index, item.name, str(item.input), str(item.output), status, **kw)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def plan(item: Item, config: RunConfig, *, overwrite: bool = False) -> Task | Record:
    """The task for ``item``, or its record when there is nothing to run (finished, or refused);
    ``overwrite``: reconstruct it even when its output exists."""
    try:
        cfg = with_overrides(config, item.overrides, f"The manifest row of {item.input}")
        digest = recipe_hash(cfg)
        if not item.input.is_file():
            return Record.of(item, FAILED, error=f"Input {item.input} does not exist.", recipe_hash=digest)
        task = Task(item, cfg, digest, file_sha256(item.input))
    except DiffreconError as err:
        return Record.of(item, FAILED, error=printable(err))
    except OSError as err:
        return Record.of(item, FAILED, error=printable(f"Cannot read {item.input}: {err.strerror or err}."))
    if not item.output.exists() or overwrite:
        return task
    return _existing(task)


def _existing(task: Task) -> Task | Record:
    """What to do with an output that exists already (see the module's docstring)."""
    from ..io import read_result

    item = task.item
    try:
        result = read_result(item.output)
    except (DiffreconError, OSError) as err:
        return Record.of(item, FAILED, recipe_hash=task.recipe_hash, error=printable(
            f"Output {item.output} exists but is no readable result file ({err}); it is kept. Use overwrite "
            "to replace it or choose another output folder."))
    mark = result.provenance.get("batch") if isinstance(result.provenance.get("batch"), dict) else {}
    same = mark.get("recipe_hash") == task.recipe_hash and mark.get("input_sha256") == task.input_sha256
    if same and result.complete:
        return Record.of(item, SKIPPED, seconds=float(result.provenance.get("elapsed_seconds", 0.0)),
                         metrics=dict(result.metrics), recipe_hash=task.recipe_hash)
    if same:
        return task  # stopped early: made again
    why = "by another recipe or from another input" if mark else "outside a batch"
    return Record.of(item, FAILED, recipe_hash=task.recipe_hash,
                     error=f"Output {item.output} exists, made {why}; it is kept. Use overwrite to replace it "
                           "or choose another output folder.")


def run_task(task: Task, stop: threading.Event | None = None,
             on_event: Callable[[Any], None] | None = None) -> Record:
    """Reconstruct ``task``'s input and write its result atomically; never raises for the input's
    problems. ``stop`` ends the run within one solver step (then nothing is written);
    ``on_event`` sees every engine event (in-process executors: per-file progress)."""
    from ..engine import Finished, run
    from ..guard import divergence_of
    from ..io import read_measurement, write_result

    item, t0 = task.item, time.perf_counter()
    try:
        measurement = read_measurement(item.input)
        result = None
        for event in run(measurement, task.config, stop=stop):
            if on_event is not None:
                on_event(event)
            if isinstance(event, Finished):
                result = event.result
        if stop is not None and stop.is_set():
            return Record.of(item, CANCELLED, seconds=time.perf_counter() - t0, recipe_hash=task.recipe_hash)
        if result is None:
            raise DiffreconError("The run ended before any sample finished.")
        if result.measurement is None:
            result.measurement = measurement
        result.provenance["batch"] = {"recipe_hash": task.recipe_hash, "input_sha256": task.input_sha256,
                                      "input": str(item.input), "name": item.name}
        write_result(item.output, result)
        status = DIVERGED if divergence_of(result) else DONE
        return Record.of(item, status, seconds=time.perf_counter() - t0, metrics=dict(result.metrics),
                         recipe_hash=task.recipe_hash)
    except DiffreconError as err:
        error = printable(err)
    except MemoryError:
        error = "Out of memory; use fewer samples, a smaller batch size or free memory."
    except Exception as err:  # a bug must not stop the other inputs; the record keeps where it happened
        where = traceback.extract_tb(err.__traceback__)[-1]
        error = printable(f"{type(err).__name__}: {err} (at {Path(where.filename).name}:{where.lineno})")
    return Record.of(item, FAILED, seconds=time.perf_counter() - t0, error=error, recipe_hash=task.recipe_hash)
