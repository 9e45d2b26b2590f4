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


@contextlib.contextmanager
def quiet_libraries(*loggers: str) -> Iterator[None]:
    """Silence the named libraries' loggers (their error records too) and Python warnings inside
    the block: a file a library cannot parse must end in our one sentence, not in its notes
    printed before it."""
    import logging

    saved = [(logging.getLogger(name), logging.getLogger(name).level) for name in loggers]
    for logger, _ in saved:
        logger.setLevel(logging.CRITICAL + 1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in saved:
            logger.setLevel(level)
