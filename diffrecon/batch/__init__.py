"""Many files with one recipe: ``diffrecon batch``.

A manifest (:mod:`.manifest`: a folder, a glob or a CSV with per-input overrides) and a recipe
(:mod:`.recipe`: run settings or a result file's provenance) become one task per input
(:mod:`.job`), run by an executor (:mod:`.executors`: sequential or Ray) under
:func:`run_manifest`, which skips finished outputs, records failures and keeps a summary table
(:mod:`.summary`). :class:`BatchQueue` (:mod:`.queue`) is the same for a window: a Qt-free queue
with per-file status, pause and cancel.
"""
from .executors import EXECUTORS
from .job import CANCELLED, DIVERGED, DONE, FAILED, PENDING, SKIPPED, Record, Task, plan, run_task
from .manifest import Item, read_manifest, split
from .recipe import recipe_dict, recipe_from_result, recipe_hash, with_overrides
from .runner import BatchProgress, BatchSummary, run_manifest, summary_paths

__all__ = ["CANCELLED", "DIVERGED", "DONE", "EXECUTORS", "FAILED", "PENDING", "SKIPPED", "BatchProgress",
           "BatchSummary", "Item", "Record", "Task", "plan", "read_manifest", "recipe_dict", "recipe_from_result",
           "recipe_hash", "run_manifest", "run_task", "split", "summary_paths", "with_overrides"]
