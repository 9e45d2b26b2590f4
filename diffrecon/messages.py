"""What the command line shows besides results: library warnings are held back while a command
runs, so a refusal is one sentence with nothing printed before it; after a command that worked,
they are shown once each, escaped and on one line."""
from __future__ import annotations

import contextlib
import sys
import warnings
from typing import Iterator

from .errors import printable


class HeldWarnings:
    def __init__(self) -> None:
        self.records: list[warnings.WarningMessage] = []

    def show(self, file=None) -> None:
        """Print each distinct warning once as ``diffrecon: warning: ...``."""
        file = file or sys.stderr
        seen = set()
        for w in self.records:
            text = " ".join(printable(w.message).split())
            if text and text not in seen:
                seen.add(text)
                print(f"diffrecon: warning: {text} ({w.category.__name__})", file=file)
        self.records.clear()


@contextlib.contextmanager
def held_warnings() -> Iterator[HeldWarnings]:
    """Record the Python warnings raised inside the block instead of printing them."""
    held = HeldWarnings()
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("default")
        held.records = records
        yield held
