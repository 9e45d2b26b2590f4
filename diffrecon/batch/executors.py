"""Where the tasks of a batch run: here, one after the other, or as Ray tasks.

An executor takes tasks and yields one :class:`~diffrecon.batch.job.Record` per task as each
finishes (in any order). Results do not depend on the executor: every sample draws its noise
from its own stream derived from (seed, sample index), so a file reconstructs to the same bits
in this process, in a Ray worker, or in one part of a cluster job array.

Ray (an optional extra, ``pip install diffrecon[ray]``): each input is one task asking for one
CPU, and one GPU when the cluster has GPUs. Without ``address`` a local runtime is started (and
stopped at the end) with ``workers`` CPUs; with ``address`` (``auto`` or ``host:port``) the tasks
go to that cluster, whose nodes must see the input and output paths (a shared file system). A
worker that dies (killed, out of memory, a lost node) has its task retried up to ``max_retries``
times; a task that still fails is recorded as failed and the others go on.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Callable, Iterable, Iterator

from ..errors import InputError
from .job import FAILED, Record, Task, run_task

EXECUTORS = ("sequential", "ray")
RAY_MISSING = "Ray is not installed; install the ray extra (pip install 'diffrecon[ray]') or use the sequential executor."


def sequential(tasks: Iterable[Task], *, stop: threading.Event | None = None,
               on_event: Callable | None = None) -> Iterator[Record]:
    """In this process, in order; ``stop`` ends the running input within one solver step."""
    for task in tasks:
        if stop is not None and stop.is_set():
            return
        yield run_task(task, stop, on_event)


def ray_tasks(tasks: Iterable[Task], *, address: str | None = None, workers: int | None = None,
              max_retries: int = 3, stop: threading.Event | None = None,
              function: Callable[[Task], Record] = run_task) -> Iterator[Record]:
    """As Ray tasks (see the module's docstring); ``function`` is the task body (tests wrap it)."""
    try:
        import ray
    except ImportError:
        raise InputError(RAY_MISSING) from None
    tasks = list(tasks)
    if not tasks:
        return
    started = _connect(ray, address, workers)
    try:
        gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
        remote = ray.remote(function).options(num_cpus=1, num_gpus=gpus, max_retries=max_retries,
                                              retry_exceptions=False)
        pending = {remote.remote(task): task for task in tasks}
        while pending:
            if stop is not None and stop.is_set():
                for ref in pending:
                    ray.cancel(ref, force=True)
                return
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
            for ref in ready:
                task = pending.pop(ref)
                try:
                    yield ray.get(ref)
                except ray.exceptions.RayError as err:  # the worker died more than max_retries times
                    reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
                    yield Record.of(task.item, FAILED, recipe_hash=task.recipe_hash,
                                    error=f"The Ray task failed after {max_retries} retries: {reason}")
    finally:
        if started:
            ray.shutdown()


def _connect(ray, address: str | None, workers: int | None) -> bool:
    """Start a local runtime or join ``address``; True when this call started it (and stops it)."""
    if ray.is_initialized():
        return False
    if address:
        try:
            ray.init(address=address, logging_level="warning")
        except (ConnectionError, RuntimeError, ValueError) as err:
            raise InputError(f"Cannot reach the Ray cluster at {address} ({err}).") from None
    else:  # workers import the diffrecon this process runs (a source checkout included)
        here = str(Path(__file__).resolve().parents[2])
        path = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH", "")) if p)
        ray.init(num_cpus=workers, include_dashboard=False, logging_level="warning",
                 runtime_env={"env_vars": {"PYTHONPATH": path}})
    return True
