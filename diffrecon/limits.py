"""Memory budgets: the most bytes one thing a file or a setting asks for may take.

A 20 KB HDF5 file can declare a dataset of terabytes (chunks that were never written cost nothing
on disk), and a one-word setting can ask for a billion steps. Every such size is turned into the
bytes it would take and checked here *before* anything is read or built, so a hostile or mistaken
input is refused in one sentence instead of growing the process. Each budget is stated in bytes
and can be raised with the environment variable named beside it (a number of bytes, e.g.
``DIFFRECON_MAX_ARRAY_BYTES=4e9``) for a machine and data that need it.

========================  ==========  =============================================================
budget                    default     what it bounds
========================  ==========  =============================================================
``array``                 256 MiB     one array read from a file (a dataset, or the slice of it an
                                      importer reads), in the dtype it is read as
``operator``              1 GiB       the buffers a forward model builds from its parameters
                                      (CT system matrices, the RF Born matrix, a CSR index array)
``schedule``              8 MiB       a table with one entry per step: the noise levels of
                                      ``--steps`` + 1 or of a prior card's ``timesteps`` (float64),
                                      a training run's losses (about a million entries)
``samples``               64 GiB      the sample images a run produces, ``--samples`` x image bytes
                                      (streamed, never all held; this bounds the run's length)
``network``               4 GiB       float32 weights of a network built from a config.json or from
                                      training settings (about a billion parameters)
``training``              8 GiB       the training images held in memory, N x C x size^2 float32
``calibration``           1 GiB       the images ``diffrecon calibrate --truths`` decodes (float32)
========================  ==========  =============================================================
"""
from __future__ import annotations

import math
import os

from .errors import InputError

_MIB = 1 << 20
_GIB = 1 << 30
BUDGETS: dict[str, int] = {
    "array": 256 * _MIB,
    "operator": 1 * _GIB,
    "schedule": 8 * _MIB,
    "samples": 64 * _GIB,
    "network": 4 * _GIB,
    "training": 8 * _GIB,
    "calibration": 1 * _GIB,
}


def env_name(budget: str) -> str:
    return f"DIFFRECON_MAX_{budget.upper()}_BYTES"


def budget(name: str) -> int:
    """The budget ``name`` in bytes (the environment variable wins over the default)."""
    text = os.environ.get(env_name(name), "").strip()
    if text:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and value > 0):
            raise InputError(f"{env_name(name)}={text!r} is not a positive number of bytes.")
        return int(value)
    return BUDGETS[name]


def format_bytes(n: float) -> str:
    """``n`` bytes for a person: 1.5 GiB, 256 MiB, 12 KiB, 7 B."""
    for unit, size in (("TiB", 1 << 40), ("GiB", _GIB), ("MiB", _MIB), ("KiB", 1 << 10)):
        if n >= size:
            value = n / size
            return f"{value:.3g} {unit}" if value < 1e4 else f"{value:.3e} {unit}"
    return f"{int(n)} B"


def nbytes(shape, itemsize: int) -> int:
    """Bytes of an array of ``shape`` with ``itemsize``-byte elements (exact, no overflow)."""
    return math.prod(int(s) for s in shape) * int(itemsize)


def check_bytes(n: int | float, what: str, name: str) -> None:
    """Refuse ``what`` (a phrase naming the dataset or setting) when it needs more than budget ``name``."""
    limit = budget(name)
    if n > limit:
        raise InputError(f"{what} would take {format_bytes(n)}, more than the {format_bytes(limit)} allowed "
                         f"for {_PHRASE[name]} (raise it with {env_name(name)} if this is intended).")


_PHRASE = {
    "array": "one array read from a file",
    "operator": "the buffers of a forward model",
    "schedule": "a table with one entry per step",
    "samples": "the samples of one run",
    "network": "the weights of one network",
    "training": "the training images in memory",
    "calibration": "the calibration images read",
}


#: Seeds are whole numbers 0 .. 2**32 - 1: every random stream is derived from the seed's 32 bits,
#: so a larger seed would silently repeat a smaller one's result.
MAX_SEED = 2**32 - 1


def check_seed(seed, name: str = "seed") -> int:
    """``seed`` as an int after checking it lies in 0 .. MAX_SEED (refused before any work)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise InputError(f"{name} {seed!r} is out of range; give a whole number from 0 to {MAX_SEED}.")
    return seed
