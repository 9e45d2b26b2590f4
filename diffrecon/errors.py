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
