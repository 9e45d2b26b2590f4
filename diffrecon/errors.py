"""The error types users see.

Anything a user can cause (a bad file, an impossible setting) raises :class:`DiffreconError`
with one sentence naming the file, dataset or setting and what would be valid. The CLI prints
that sentence and exits non-zero; the GUI shows it in the window. Everything else is a bug.
"""


class DiffreconError(Exception):
    """A problem the user can fix; ``str(err)`` is one sentence meant for them."""


class InputError(DiffreconError, ValueError):
    """A file, dataset or setting is not acceptable."""


class RunError(DiffreconError, RuntimeError):
    """A reconstruction could not go on (divergence, out of memory at batch size 1)."""


class OutputError(DiffreconError, OSError):
    """A file could not be written (a full disk, a size limit, no permission); the sentence says
    whether the earlier file is unchanged."""


def printable(text: object) -> str:
    """``text`` with control characters escaped (``\\x1b`` for ESC), so names read from a file
    cannot move the cursor, recolour or clear a terminal when a message shows them."""
    return "".join(ch if ch.isprintable() or ch == " " else ch.encode("unicode_escape").decode("ascii")
                   for ch in str(text))
