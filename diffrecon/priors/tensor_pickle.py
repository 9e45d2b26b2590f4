"""Reading ``torch.save`` files that may only hold tensors, numbers, lists and dicts.

``torch.load(weights_only=True)`` refuses any other pickled object (which could run code when
loaded). Its own message then recommends loading again with the protection switched off; that
advice never reaches a user here: a refusal says what the file holds and what to do instead.
"""
from __future__ import annotations

import pickle
import re
from pathlib import Path

import torch

from ..errors import InputError, printable

_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


def load_tensors_only(path: str | Path, what: str, instead: str):
    """The object in ``path`` if it holds only plain data and tensors; ``what`` names the file for
    the message ("Checkpoint optimizer state"), ``instead`` says what to do ("train without --resume")."""
    path = Path(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:  # an object besides tensors, or bytes that are no pickle
        found = _GLOBAL.search(str(err))
        held = f" (it holds {printable(found.group(1))[:80]})" if found else ""
        raise InputError(f"{what} {path} is not a plain state dict of tensors and is refused, since loading it "
                         f"could run code{held}; {instead}.") from None
    except PermissionError:
        raise InputError(f"{what} {path} cannot be read: permission denied.") from None
    except (RuntimeError, OSError, EOFError, ValueError, TypeError, KeyError, IndexError, AttributeError,
            MemoryError, OverflowError, UnicodeDecodeError):
        raise InputError(f"{what} {path} cannot be read; it may be truncated or damaged; {instead}.") from None
