"""Atomic file writes: a temporary file in the target's folder, renamed over the target when
complete.

``os.replace`` is atomic within one file system, so a reader sees the old file or the whole new
one, never a half-written one (opening an HDF5 file with mode "w" truncates it at once, even
while another program reads it). The temporary file lives in the target's folder because a
rename across file systems is a copy. Every writer in :mod:`diffrecon.io` and the comparison
files go through :func:`atomic_path`.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Callable, Iterator

from ..errors import InputError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, action: str = "write", suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block ends without an exception the file
    written there is flushed to disk and renamed over ``path``, otherwise it is removed.

    ``action`` words the error for a missing folder ("Cannot <action> <path>: ..."); ``suffix``
    of the temporary file defaults to ``path``'s, for writers that choose the format by suffix.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise InputError(f"Cannot {action} {path}: folder {folder} does not exist.")
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=path.suffix if suffix is None else suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None], *, action: str = "write") -> Path:
    """Call ``write(tmp)`` inside :func:`atomic_path` and return ``path`` once it is in place."""
    path = Path(path)
    with atomic_path(path, action=action) as tmp:
        write(tmp)
    return path
