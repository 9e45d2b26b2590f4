"""Memory read-out for the status area: GPU allocator figures on CUDA, process RSS otherwise.

Qt-free and cheap (no device synchronisation), so the window can poll it several times a second
while a run is going.
"""
from __future__ import annotations

import os
import resource
import sys

import torch

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def process_rss() -> int | None:
    """Resident set size of this process in bytes (Linux /proc; None where unavailable)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


def process_peak_rss() -> int:
    """Peak resident set size in bytes (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def memory_snapshot(device: str = "cpu") -> dict[str, int]:
    """``allocated/reserved/peak/total`` bytes for a CUDA device, else ``rss/peak``."""
    if device.startswith("cuda") and torch.cuda.is_available():
        dev = torch.device(device)
        return {
            "allocated": torch.cuda.memory_allocated(dev),
            "reserved": torch.cuda.memory_reserved(dev),
            "peak": torch.cuda.max_memory_allocated(dev),
            "total": torch.cuda.get_device_properties(dev).total_memory,
        }
    snap = {"peak": process_peak_rss()}
    rss = process_rss()
    if rss is not None:
        snap["rss"] = rss
    return snap


def format_bytes(n: float | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def format_memory(snap: dict[str, int]) -> str:
    """One line for the status bar, e.g. ``GPU 1.2 GiB alloc / 1.5 GiB reserved / ...``."""
    if "allocated" in snap:
        return (f"GPU {format_bytes(snap['allocated'])} alloc · {format_bytes(snap['reserved'])} reserved"
                f" · peak {format_bytes(snap['peak'])} / {format_bytes(snap['total'])}")
    return f"RAM {format_bytes(snap.get('rss'))} (peak {format_bytes(snap.get('peak'))})"
