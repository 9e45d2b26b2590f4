"""A batch from start to end: plan every input, run what is not finished through an executor,
report progress with an estimate of the time left, and keep the summary table current."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from ..engine import RunConfig
from ..errors import InputError
from .executors import EXECUTORS, ray_tasks, sequential
from .job import CANCELLED, FAILED, PENDING, SKIPPED, Record, Task, plan
from .manifest import Item
from .recipe import recipe_dict, recipe_hash
from .summary import counts, write_summary

SUMMARY_EVERY_SECONDS = 10.0  # the table is rewritten at most this often while the batch runs, and at its end


@dataclass
class BatchProgress:
    """Sent once after planning and after every input that ends."""

    done: int  # inputs that ended (any status, skipped ones included)
    total: int
    failed: int
    skipped: int
    elapsed: float  # seconds since the batch started
    eta: float | None  # seconds left, from the inputs run so far; None before one finished
    record: Record | None = None  # the input that just ended


@dataclass
class BatchSummary:
    records: list[Record]
    csv: Path
    h5: Path
    counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """Every input has a finished result (made now or earlier)."""
        return all(r.status in ("done", "skipped") for r in self.records)


def summary_paths(out_dir: Path, num_parts: int = 1, part_id: int = 0, name: str = "batch_summary") -> tuple[Path, Path]:
    stem = name if num_parts == 1 else f"{name}.part{part_id}-of-{num_parts}"
    return out_dir / f"{stem}.csv", out_dir / f"{stem}.h5"


def run_manifest(items: Sequence[Item], config: RunConfig, out_dir: str | Path, *, executor: str = "sequential",
                 address: str | None = None, workers: int | None = None, overwrite: bool = False,
                 stop: threading.Event | None = None, progress: Callable[[BatchProgress], None] | None = None,
                 summary: tuple[Path, Path] | None = None, ray_function: Callable | None = None) -> BatchSummary:
    """Reconstruct every item with ``config`` (plus the item's overrides) and write the summary.

    Finished outputs are skipped (see :mod:`diffrecon.batch.job`); a failed input is recorded and
    the others go on. ``stop`` ends the batch (inputs not reached are recorded as cancelled).
    ``summary``: the (csv, h5) paths, default ``out_dir/batch_summary.{csv,h5}``.
    """
    if executor not in EXECUTORS:
        raise InputError(f"executor {executor!r} is not known; use {' or '.join(EXECUTORS)}.")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, h5_path = summary or summary_paths(out_dir)
    recipe, digest = recipe_dict(config), recipe_hash(config)
    t0 = time.perf_counter()
    records: dict[int, Record] = {}
    tasks: list[Task] = []
    for item in items:
        planned = plan(item, config, overwrite=overwrite)
        if isinstance(planned, Task):
            tasks.append(planned)
        else:
            records[item.index] = planned
    last_write, ran = [time.perf_counter()], [0]

    def report(record: Record | None) -> None:
        if record is not None:
            records[record.index] = record
            ran[0] += 1
        elapsed = time.perf_counter() - t0
        eta = elapsed / ran[0] * (len(items) - len(records)) if ran[0] else None
        if progress is not None:
            progress(BatchProgress(len(records), len(items), sum(r.status == FAILED for r in records.values()),
                                   sum(r.status == SKIPPED for r in records.values()), elapsed, eta, record))
        if time.perf_counter() - last_write[0] >= SUMMARY_EVERY_SECONDS:
            write_summary(records, items, (csv_path, h5_path), recipe, digest, PENDING)
            last_write[0] = time.perf_counter()

    try:
        report(None)
        if executor == "ray":
            stream = ray_tasks(tasks, address=address, workers=workers, stop=stop,
                               **({"function": ray_function} if ray_function is not None else {}))
        else:
            stream = sequential(tasks, stop=stop)
        for record in stream:
            report(record)
    finally:
        final = write_summary(records, items, (csv_path, h5_path), recipe, digest, CANCELLED)
    return BatchSummary(final, csv_path, h5_path, counts(final), time.perf_counter() - t0)
