"""Formatting of memory figures for the status area and tables (the figures come from
:func:`diffrecon.runtime.memory_snapshot`, cheap enough to poll several times a second)."""
from __future__ import annotations

from ..display import format_bytes

__all__ = ["format_bytes", "format_memory"]


def format_memory(snap: dict[str, int]) -> str:
    """One line for the status bar, e.g. ``GPU 1.2 GiB alloc / 1.5 GiB reserved / ...``."""
    if "allocated" in snap:
        return (f"GPU {format_bytes(snap['allocated'])} alloc · {format_bytes(snap['reserved'])} reserved"
                f" · peak {format_bytes(snap['peak'])} / {format_bytes(snap['total'])}")
    return f"RAM {format_bytes(snap.get('rss'))} (peak {format_bytes(snap.get('peak'))})"
