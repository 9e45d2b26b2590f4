"""Safe opening, validation and atomic writing of HDF5 files.

Every reader in :mod:`diffrecon.io` goes through :func:`open_readonly` and the ``require_*``
helpers here, so a bad file always ends in one :class:`~diffrecon.errors.InputError` sentence
naming the file, the dataset and what was expected, and nothing is allocated from what a header
merely claims. Writers go through :func:`atomic_h5`: the file appears under its name only once
it is complete (opening an HDF5 file with mode "w" truncates it, even while another program
reads it).
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import traceback
from pathlib import Path
from typing import Any, Iterator

import h5py
import numpy as np

from ..errors import InputError, printable as safe_name
from ..limits import check_bytes, format_bytes, nbytes
from .atomic import atomic_path, write_bytes

#: Refuse datasets that declare more elements than this even when only a part is read
#: (readers check the bytes of what they read against :mod:`diffrecon.limits`).
MAX_ELEMENTS = 2**40


# ------------------------------------------------------------------------------ opening
@contextlib.contextmanager
def open_readonly(path: str | os.PathLike, *, allow_external: bool = False) -> Iterator[h5py.File]:
    """Open ``path`` read-only after checking it is a whole HDF5 file without outside links.

    The whole ``with`` block runs under :func:`damaged_file_guard`, so an error h5py raises on
    damaged metadata anywhere in the caller's reads becomes one InputError naming the file.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"File {path} does not exist.")
    if not path.is_file():
        raise InputError(f"{path} is not a file; expected an HDF5 file (.h5).")
    if not os.access(path, os.R_OK):
        raise InputError(f"File {path} cannot be read: permission denied.")
    try:
        ok = h5py.is_hdf5(path)
    except OSError:
        ok = False
    if not ok:
        raise InputError(f"File {path} is not an HDF5 file (no HDF5 signature found).")
    with damaged_file_guard(path):
        try:
            f = h5py.File(path, "r")
        except OSError as err:
            if "unable to lock" in str(err).lower() or isinstance(err, BlockingIOError):
                raise InputError(f"File {path} is locked by another program that has it open for writing; "
                                 "open it again when that program has closed it.") from None
            raise InputError(f"File {path} cannot be opened as HDF5; it may be truncated or damaged "
                             f"({safe_name(err)}).") from None
        try:
            if not allow_external:
                check_no_external(f, path)
            yield f
        finally:
            f.close()


#: Errors h5py raises on corrupt metadata: bad heap indices (OSError), unknown symbol table
#: entries or invalid link names (RuntimeError), garbled names (UnicodeDecodeError), datatypes
#: it cannot convert (ValueError, TypeError), links that lead nowhere (KeyError).
_DAMAGE_ERRORS = (OSError, RuntimeError, KeyError, ValueError, TypeError, AttributeError)
_H5PY_DIR = os.path.realpath(os.path.dirname(h5py.__file__)) + os.sep
_OWN_DIR = os.path.realpath(Path(__file__).parents[1]) + os.sep


def _raised_inside_h5py(err: BaseException) -> bool:
    """True when the innermost h5py-or-diffrecon frame of the traceback belongs to h5py.

    Compiled h5py modules name their frames ``h5py/<module>.pyx``. An error from diffrecon's
    own code (a bug, not damage) is thereby never disguised as a damaged file.
    """
    inside = False
    for frame, _ in traceback.walk_tb(err.__traceback__):
        filename = frame.f_code.co_filename
        real = os.path.realpath(filename)
        if filename.startswith(("h5py/", "h5py\\")) or real.startswith(_H5PY_DIR):
            inside = True
        elif real.startswith(_OWN_DIR):
            inside = False
    return inside


@contextlib.contextmanager
def damaged_file_guard(path: str | os.PathLike) -> Iterator[None]:
    """Turn the errors h5py raises on a damaged file (deep inside any access) into one InputError.

    A damaged file can fail on any attribute or link lookup, not only on open; only errors raised
    inside h5py are converted, and InputError (itself a ValueError) passes through.
    """
    try:
        yield
    except InputError:
        raise
    except _DAMAGE_ERRORS as err:
        if not _raised_inside_h5py(err):
            raise
        raise InputError(f"File {path} cannot be read; it may be truncated or damaged "
                         f"({type(err).__name__}: {safe_name(err)[:200]}).") from None


def _walk(group: h5py.Group, seen: set) -> Iterator[tuple[str, Any, Any]]:
    """(path, link, object-or-None) for every link reachable through hard links, once per object."""
    for name in group:
        link = group.get(name, getlink=True)
        child_path = f"{group.name.rstrip('/')}/{name}"
        if isinstance(link, (h5py.ExternalLink, h5py.SoftLink)):
            yield child_path, link, None
            continue
        try:
            obj = group[name]
        except (KeyError, OSError):
            yield child_path, link, None
            continue
        yield child_path, link, obj
        if isinstance(obj, h5py.Group):
            key = obj.id.__hash__()
            if key not in seen:
                seen.add(key)
                yield from _walk(obj, seen)


def check_no_external(f: h5py.File, path: Path) -> None:
    """Refuse external links, virtual datasets with outside sources and external raw storage.

    Such objects make a reader open files the user never chose (HDF5 resolves them silently).
    """
    for name, link, obj in _walk(f, set()):
        if isinstance(link, h5py.ExternalLink):
            raise InputError(
                f"File {path} has an external link {name} -> {link.filename}:{link.path}; "
                "external links are refused unless allowed explicitly (allow_external=True)."
            )
        if isinstance(obj, h5py.Dataset):
            if obj.is_virtual:
                outside = [s.file_name for s in obj.virtual_sources() if s.file_name != "."]
                if outside:
                    raise InputError(
                        f"File {path} dataset {name} is a virtual dataset reading {outside[0]}; "
                        "datasets stored outside the file are refused unless allow_external=True."
                    )
            if obj.external:
                raise InputError(
                    f"File {path} dataset {name} keeps its data in external file {obj.external[0][0]!r}; "
                    "datasets stored outside the file are refused unless allow_external=True."
                )


# ------------------------------------------------------------------------------ validation
def require_group(f: h5py.File, name: str, path: Path) -> h5py.Group:
    obj = f.get(name)
    if not isinstance(obj, h5py.Group):
        what = "is missing" if obj is None else "is not a group"
        raise InputError(f"File {path}: group {name} {what}; a diffrecon file needs it.")
    return obj


def require_dataset(f: h5py.Group, name: str, path: Path, *, ndim: int | None = None,
                    shape: tuple[int, ...] | None = None, kinds: str = "fc",
                    what: str = "a float32 or complex64 array", whole: bool = True) -> h5py.Dataset:
    """The dataset ``name`` after checking rank, shape, element kind and size (nothing read).

    ``whole``: the caller reads all of it, so its bytes are checked against the array budget;
    otherwise the caller checks the part it reads with :func:`check_read`.
    """
    obj = f.get(name)
    full = safe_name(obj.name if obj is not None else f"{f.name.rstrip('/')}/{name}")
    if not isinstance(obj, h5py.Dataset):
        state = "is missing" if obj is None else "is a group, not a dataset"
        raise InputError(f"File {path}: dataset {full} {state}; expected {what}.")
    if obj.shape is None:
        raise InputError(f"File {path}: dataset {full} has no dataspace (a null dataset); expected {what}.")
    if obj.dtype.kind not in kinds:
        raise InputError(f"File {path}: dataset {full} has dtype {obj.dtype}; expected {what}.")
    if ndim is not None and obj.ndim != ndim:
        raise InputError(f"File {path}: dataset {full} has shape {obj.shape} (rank {obj.ndim}); expected rank {ndim}, {what}.")
    if shape is not None and tuple(obj.shape) != tuple(shape):
        raise InputError(f"File {path}: dataset {full} has shape {obj.shape}; expected {tuple(shape)}.")
    check_size(obj.shape, f"File {path}: dataset {full}")
    if whole:
        check_read(obj, (), path)
    return obj


def check_read(ds: h5py.Dataset, index, path: Path, dtype: Any = None, budget: str = "array") -> None:
    """Refuse reading ``ds[index]`` (as ``dtype``) when it exceeds ``budget`` (of
    :mod:`diffrecon.limits`); nothing is read.

    The selection's shape comes from a zero-stride view of the declared shape, so it costs nothing.
    """
    if ds.shape is None:
        raise InputError(f"File {path}: dataset {safe_name(ds.name)} has no dataspace (a null dataset); "
                         "expected an array.")
    try:
        view = np.lib.stride_tricks.as_strided(np.zeros(1, np.uint8), shape=ds.shape, strides=(0,) * len(ds.shape))
        shape = view[index].shape
    except ValueError:  # a declared shape beyond numpy's index range: the whole claim is checked
        shape = tuple(ds.shape)
    itemsize = max(ds.dtype.itemsize, np.dtype(dtype).itemsize if dtype is not None else 0)
    part = "" if shape == tuple(ds.shape) else f" (the part {shape} read of {tuple(ds.shape)})"
    size = nbytes(shape, itemsize)
    check_bytes(size, f"File {path}: dataset {safe_name(ds.name)}{part}", budget)
    if size > _UNWRITTEN_CHECK_ABOVE and not (ds.is_virtual or ds.external):
        # Chunks that were never written cost nothing on disk but are read as fill values: a tiny
        # file could still make a reader fill its whole budget with zeros. Real data, even
        # compressed, is never stored in a thousandth of its size.
        stored, declared = ds.id.get_storage_size(), nbytes(ds.shape, ds.dtype.itemsize)
        if stored * _MAX_STORED_RATIO < declared:
            raise InputError(f"File {path}: dataset {safe_name(ds.name)} declares {format_bytes(declared)} but "
                             f"stores only {format_bytes(stored)} (chunks never written); it holds no data to read.")


_UNWRITTEN_CHECK_ABOVE = 64 << 20
_MAX_STORED_RATIO = 1000


def check_size(shape: tuple[int, ...], where: str, limit: int = MAX_ELEMENTS) -> None:
    """Refuse shapes whose element count exceeds ``limit``, before anything is allocated."""
    if shape is None:
        raise InputError(f"{where} has no dataspace (a null dataset); expected an array.")
    n = math.prod(int(s) for s in shape)
    if n > limit or any(int(s) < 0 for s in shape):
        raise InputError(f"{where} claims shape {tuple(shape)} ({n} elements); at most {limit} are accepted.")


def read_finite(ds: h5py.Dataset, path: Path, dtype: Any = None) -> np.ndarray:
    """Read a dataset and refuse NaN or Inf values."""
    check_read(ds, (), path, dtype)
    try:
        arr = ds[()]
    except OSError as err:
        raise InputError(f"File {path}: dataset {ds.name} cannot be read; the file may be truncated ({err}).") from None
    arr = np.asarray(arr)
    if dtype is not None:
        arr = arr.astype(dtype, copy=False)
    if arr.dtype.kind in "fc" and not np.isfinite(arr).all():
        raise InputError(f"File {path}: dataset {ds.name} contains NaN or Inf values; all values must be finite.")
    return arr


_MAX_ATTR_CHARS = 100


def attr_text(value) -> str:
    """An attribute value as one short line, for messages and ``describe`` (arrays abbreviated)."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray):
        text = np.array2string(value, threshold=8, separator=", ") if value.size else "[]"
    elif isinstance(value, np.generic):
        text = repr(value.item())
    else:
        text = repr(value)
    text = " ".join(text.split())
    return text if len(text) <= _MAX_ATTR_CHARS else text[: _MAX_ATTR_CHARS - 3] + "..."


def attr_str(attrs: h5py.AttributeManager, key: str, default: str = "") -> str:
    """A string attribute whether stored as variable-length str, bytes or a 0-d array."""
    v = attrs.get(key, default)
    if isinstance(v, np.ndarray) and v.shape == ():
        v = v[()]
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    return str(v)


def attr_float(attrs: h5py.AttributeManager, key: str, path: Path, where: str, default: float | None = None) -> float:
    v = attrs.get(key, default)
    try:
        out = float(np.asarray(v).reshape(()))
    except (TypeError, ValueError):
        raise InputError(f"File {path}: attribute {key} of {where} is {attr_text(v)}; "
                         "expected a finite number.") from None
    if not math.isfinite(out):
        raise InputError(f"File {path}: attribute {key} of {where} is {out}; expected a finite number.")
    return out


def _scalar(value) -> Any:
    """A one-element attribute as a Python scalar, or None for anything else (arrays, strings)."""
    arr = np.asarray(value)
    if arr.size != 1 or arr.dtype.kind not in "biuf":
        return None
    return arr.reshape(()).item()


def attr_bool(attrs: h5py.AttributeManager, key: str, path: Path, where: str, default: bool) -> bool:
    """A flag stored as a boolean or as the integer 0 or 1 (what MATLAB and h5py write)."""
    if key not in attrs:
        return default
    v = _scalar(attrs[key])
    if v not in (0, 1):  # True == 1 and False == 0, so booleans pass
        raise InputError(f"File {path}: attribute {key} of {where} is {attr_text(attrs[key])}; "
                         "expected true or false.")
    return bool(v)


def attr_int(attrs: h5py.AttributeManager, key: str, path: Path, where: str, default: int | None = None,
             minimum: int = 0) -> int:
    """A whole number >= ``minimum`` stored as an integer (or an integral float)."""
    v = _scalar(attrs[key]) if key in attrs else default
    if not (isinstance(v, (int, float)) and math.isfinite(v) and v == int(v) and v >= minimum):
        state = f"is {attr_text(attrs[key])}" if key in attrs else "is missing"
        raise InputError(f"File {path}: attribute {key} of {where} {state}; expected an integer >= {minimum}.")
    return int(v)


def attr_json(attrs: h5py.AttributeManager, key: str, path: Path, where: str, default: Any = None) -> Any:
    if key not in attrs:
        return default
    text = attr_str(attrs, key)
    try:
        value = json.loads(text)
        _check_depth(value)
        return value
    except (ValueError, RecursionError):  # JSONDecodeError, integers past the digit limit, nesting
        raise InputError(f"File {path}: attribute {key} of {where} is not valid JSON nested at most "
                         f"{_MAX_JSON_DEPTH} deep ({safe_name(text[:60])!r}).") from None


_MAX_JSON_DEPTH = 8


def _check_depth(value, depth: int = 0) -> None:
    """Refuse JSON nested deeper than any parameter needs (operators recurse into nested lists)."""
    if depth > _MAX_JSON_DEPTH:
        raise ValueError("nested too deeply")
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        for v in value:
            _check_depth(v, depth + 1)


def set_attr(attrs: h5py.AttributeManager, key: str, value: Any) -> None:
    """Store plain values as attributes: numbers and strings as they are, containers as JSON."""
    if value is None:
        return
    if isinstance(value, (bool, np.bool_)):
        attrs[key] = np.bool_(value)
    elif isinstance(value, str):
        attrs[key] = str(value)  # np.str_ would become a fixed-width '<U' array h5py cannot store
    elif isinstance(value, (int, float, np.integer, np.floating)):
        attrs[key] = value
    else:
        attrs[key] = json.dumps(value, default=_json_default)


def _json_default(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, (np.integer, np.floating, np.bool_)):
        return v.item()
    return str(v)


# ------------------------------------------------------------------------------ writing
@contextlib.contextmanager
def atomic_h5(path: str | os.PathLike) -> Iterator[h5py.File]:
    """Write a new HDF5 file at ``path`` through :func:`~diffrecon.io.atomic.atomic_path`: readers
    see the old file or the whole new one; an exception inside the block leaves ``path`` as it was.

    The file is built in memory (HDF5's core driver) and written to disk with plain file I/O:
    an HDF5 library that meets a full disk mid-write is left in a broken state (errors while
    closing, a crash at exit), a plain write just fails with an OSError.
    """
    with atomic_path(path, suffix=".tmp") as tmp:
        f = h5py.File(f"{tmp}-in-memory", "w", driver="core", backing_store=False)
        try:
            yield f
            f.flush()
            image = f.id.get_file_image()
        finally:
            f.close()
        write_bytes(tmp, image)
