"""Atomic file writes: a temporary file in the target's folder, renamed over the target when
complete.

``os.replace`` is atomic within one file system, so a reader sees the old file or the whole new
one, never a half-written one (opening an HDF5 file with mode "w" truncates it at once, even
while another program reads it). The temporary file lives in the target's folder because a
rename across file systems is a copy. Every writer in :mod:`diffrecon.io` and the comparison
files go through :func:`atomic_path`.

A failed write (a full disk, a size limit, a lost permission) is one :class:`OutputError`
sentence; the target keeps its earlier content and the temporary file is removed. A new file
gets the permissions the umask allows (``0o666 & ~umask``, like any program's new file, not the
``0o600`` of :func:`tempfile.mkstemp`); a rewritten file keeps its mode. Temporary files are
named ``.<target>.diffrecon-<host>-<pid>-<random><suffix>``, so a write that was killed leaves
a file the next write to the same folder recognises and removes once its process is gone.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import secrets
import shutil
import socket
import stat
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator

from ..errors import InputError, OutputError

_TAG = ".diffrecon-"
_HOST = hashlib.sha1(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:6]
_TEMP = re.compile(r"^\..+\.diffrecon-(?P<host>[0-9a-f]{6})-(?P<pid>\d+)-[0-9a-f]{8}(\.[A-Za-z0-9]+)?$")
#: Temporary files of earlier versions: ``.<target>.<8 characters of tempfile's alphabet><suffix>``.
_KINDS = r"(h5|hdf5|nxs|tif|tiff|png|json|md|csv)"
_LEGACY = re.compile(rf"^\..+\.{_KINDS}\.[a-z0-9_]{{8}}\.({_KINDS}|tmp)$", re.IGNORECASE)
#: A temporary file of another host, or of an earlier version, is stray once this old.
STALE_SECONDS = 24 * 3600
LEGACY_STALE_SECONDS = 600

_REASONS = {errno.ENOSPC: "the disk is full", getattr(errno, "EDQUOT", -1): "the disk quota is exhausted",
            errno.EFBIG: "the file would exceed the size limit", errno.EROFS: "the file system is read-only",
            errno.EACCES: "permission denied", errno.EPERM: "permission denied"}


def output_error(path: Path, err: OSError, action: str, existed: bool) -> OutputError:
    """One sentence for a write that failed with ``err``, saying what became of ``path``."""
    reason = _REASONS.get(err.errno) or (err.strerror or str(err) or type(err).__name__).rstrip(".")
    if err.errno is None and _nearly_full(path.parent if str(path.parent) else Path(".")):
        reason = "the disk is full"  # a library's own short-write error ("4096 requested and 892 written")
    kept = "the earlier file is unchanged" if existed else "nothing was written"
    return OutputError(f"Cannot {action} {path}: {reason}; {kept}.")


def _nearly_full(folder: Path) -> bool:
    try:
        return shutil.disk_usage(folder).free < 2**20
    except OSError:
        return False


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, action: str = "write", suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block ends without an exception the file
    written there is flushed to disk and renamed over ``path``, otherwise it is removed.

    ``action`` words the errors ("Cannot <action> <path>: ..."); ``suffix`` of the temporary file
    defaults to ``path``'s, for writers that choose the format by suffix. An OSError inside the
    block or while finishing becomes an :class:`OutputError`.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise InputError(f"Cannot {action} {path}: folder {folder} does not exist.")
    if path.is_dir():
        raise InputError(f"Cannot {action} {path}: it is a folder; give a file name.")
    remove_stray_temporaries(folder)
    existed = path.is_file()
    mode = stat.S_IMODE(path.stat().st_mode) if existed else None
    try:
        tmp = _create_temporary(folder, path.name, path.suffix if suffix is None else suffix, mode)
    except OSError as err:
        raise output_error(path, err, action, existed) from None
    try:
        try:
            yield tmp
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            if mode is not None:
                os.chmod(tmp, mode)  # the umask may have dropped bits the old file had
            os.replace(tmp, path)
        except OutputError:
            raise
        except OSError as err:
            raise output_error(path, err, action, existed) from None
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


def write_bytes(path: Path, data: bytes | memoryview) -> None:
    """Write ``data`` to ``path`` (an existing temporary file) with plain file I/O, so a full disk
    is an ordinary OSError rather than a library's broken state."""
    with open(path, "wb") as fh:
        fh.write(data)


def _create_temporary(folder: Path, name: str, suffix: str, mode: int | None) -> Path:
    # O_EXCL with mode 0o666: the kernel applies the umask, as for any new file.
    for _ in range(100):
        tmp = folder / f".{name}{_TAG}{_HOST}-{os.getpid()}-{secrets.token_hex(4)}{suffix}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0),
                         0o666 if mode is None else mode)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(errno.EEXIST, "no free temporary file name", str(folder))


def remove_stray_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files that killed writes left in ``folder``; the removed paths.

    A temporary file of this host is stray when the process named in it is gone; one of another
    host, when it is older than :data:`STALE_SECONDS`; one of an earlier version (no process in
    its name), when older than :data:`LEGACY_STALE_SECONDS`. Nothing here ever fails a write.
    """
    removed = []
    try:
        names = [n for n in os.listdir(folder) if n.startswith(".")]
    except OSError:
        return removed
    now = time.time()
    for name in names:
        match = _TEMP.match(name)
        if match is None and not _LEGACY.match(name):
            continue
        path = Path(folder) / name
        try:
            info = path.lstat()
        except OSError:
            continue
        if not stat.S_ISREG(info.st_mode):
            continue
        age = now - info.st_mtime
        if match is not None:
            mine = match["host"] == _HOST
            stray = not _pid_alive(int(match["pid"])) if mine and os.name == "posix" else age > STALE_SECONDS
        else:
            stray = age > LEGACY_STALE_SECONDS
        if stray:
            with contextlib.suppress(OSError):
                path.unlink()
                removed.append(path)
    return removed


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process
        return True
    return True


# ------------------------------------------------------------------------------ before a long run
def check_output(out: str | os.PathLike, *, inputs: Iterable[str | os.PathLike] = (), flag: str = "--out") -> Path:
    """Refuse an output path that cannot be written or would destroy something, before any work:
    a folder, a missing or unwritable folder, a write-protected file, or one of ``inputs``."""
    out = Path(out)
    folder = out.parent if str(out.parent) else Path(".")
    if out.is_dir():
        raise InputError(f"{flag} {out} is a folder; give a file name inside it, e.g. {out / 'result.h5'}.")
    if not folder.is_dir():
        raise InputError(f"{flag} {out}: folder {folder} does not exist.")
    for source in inputs:
        if source is not None and _same_file(out, Path(source)):
            raise InputError(f"{flag} {out} is the input file {source}; writing it would replace the input, "
                             "so choose another name.")
    if out.is_file() and not out.stat().st_mode & 0o222:
        raise InputError(f"{flag} {out} is write-protected; choose another name or make it writable first.")
    try:
        probe = _create_temporary(folder, out.name, ".probe", None)
    except OSError as err:
        reason = _REASONS.get(err.errno) or err.strerror or str(err)
        raise InputError(f"{flag} {out}: folder {folder} is not writable ({reason}).") from None
    with contextlib.suppress(OSError):
        probe.unlink()
    return out


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False
