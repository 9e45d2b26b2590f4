"""What a run needs from the machine: the device, memory read-outs, and the small pieces the
engine wraps around a solver (evaluation counting with the precision policy, running statistics,
asynchronous previews). No Qt, no files.
"""
from __future__ import annotations

import os
import resource
import sys
from typing import Any

import torch

from .errors import InputError

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then the CPU; explicit names are checked."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise InputError(f"device {name!r} is not a device name; use auto, cpu, cuda or cuda:N.") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {name!r} was asked for but this machine has no usable CUDA GPU; use auto or cpu.")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise InputError(f"device {name!r} does not exist; this machine has {torch.cuda.device_count()} CUDA device(s).")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()):
        raise InputError(f"device {name!r} was asked for but Apple MPS is not available here; use auto or cpu.")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise InputError(f"device {name!r} is not supported; use auto, cpu, cuda or mps.")
    return dev


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


def memory_snapshot(device: torch.device | str = "cpu") -> dict[str, int]:
    """``allocated/reserved/peak/total`` bytes on a CUDA device (no synchronisation), else the
    process's ``rss`` and ``peak`` resident set size."""
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available():
        return {
            "allocated": torch.cuda.memory_allocated(device),
            "reserved": torch.cuda.memory_reserved(device),
            "peak": torch.cuda.max_memory_allocated(device),
            "total": torch.cuda.get_device_properties(device).total_memory,
        }
    snap = {"peak": process_peak_rss()}
    rss = process_rss()
    if rss is not None:
        snap["rss"] = rss
    return snap


class RunMemory:
    """Peak memory of one run: CUDA's peak counter (the engine resets it per run); on the CPU the
    largest resident set sampled during the run, since the process's own peak also covers every
    earlier run (a comparison's table would otherwise show a running maximum, not each run's)."""

    def __init__(self, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.peak_rss = process_rss() or 0

    def snapshot(self) -> dict[str, int]:
        snap = memory_snapshot(self.device)
        self.peak_rss = max(self.peak_rss, snap.get("rss", 0))
        return snap

    def peak(self) -> int:
        snap = self.snapshot()
        return int(snap["peak"]) if self.device.type == "cuda" else int(self.peak_rss or snap.get("peak", 0))


def device_name(device: torch.device) -> str:
    """``cuda:0 (NVIDIA H100 80GB HBM3)``, ``cpu``, ``mps``: for provenance and logs."""
    if device.type == "cuda":
        return f"cuda:{device.index or 0} ({torch.cuda.get_device_name(device)})"
    return device.type


class Counter:
    def __init__(self) -> None:
        self.nfe = 0  # network evaluations, summed over samples (a cheap level's call counts as one)
        self.equivalent = 0.0  # the same in full evaluations: each call weighted by its cost
        self.grad = 0  # of which with a graph for backpropagation
        self.op_calls = 0
        self.nfe_finished = 0  # evaluations spent on samples that completed
        self.equivalent_finished = 0.0

    def finish(self) -> None:
        """Every evaluation so far was spent on samples that completed."""
        self.nfe_finished, self.equivalent_finished = self.nfe, self.equivalent


class CountingDenoiser:
    """Counts evaluations and applies the precision policy: network in autocast, output float32.

    Each call also counts its cost in full evaluations (:attr:`Counter.equivalent`): the fraction of
    the image's pixels it denoises (a reduced-resolution level of one network, e.g. mlem's, costs
    1/4 at half the size), or a level's declared cost where the prior carries cheaper levels of its
    own (:class:`~diffrecon.solvers.mlem.Multilevel`: those are counted through :attr:`levels`)."""

    def __init__(self, denoiser, counter: Counter, autocast: torch.dtype | None, device: torch.device,
                 cost: float | None = None):
        self.denoiser, self.counter, self.autocast, self.device = denoiser, counter, autocast, device
        self.cost = cost  # None: by the pixels of the call
        shape = getattr(denoiser, "image_shape", None)
        self._pixels = int(torch.Size(shape).numel()) if shape else 0

    def __getattr__(self, name):
        return getattr(self.denoiser, name)

    @property
    def levels(self):
        """The prior's own levels (``(denoiser, cost)``, cheapest first), each counted at its cost; None without."""
        own = getattr(self.denoiser, "levels", None)
        if not own:
            return own
        return [(CountingDenoiser(level, self.counter, self.autocast, self.device, cost), cost) for level, cost in own]

    def __call__(self, x: torch.Tensor, sigma) -> torch.Tensor:
        b = x.shape[0]
        self.counter.nfe += b
        if self.cost is not None:
            self.counter.equivalent += b * self.cost
        else:
            self.counter.equivalent += b * (x[0].numel() / self._pixels if self._pixels else 1.0)
        if torch.is_grad_enabled() and x.requires_grad:
            self.counter.grad += b
        if self.autocast is not None:
            with torch.autocast(self.device.type, dtype=self.autocast):
                return self.denoiser(x, sigma).float()
        return self.denoiser(x, sigma)


class CountingOperator:
    """Forwards to the operator and counts top-level applications by the solver."""

    _counted = ("A", "A_adjoint", "A_pinv", "solve_regularized", "U", "U_adjoint", "direct")

    def __init__(self, op, counter: Counter):
        self._op, self._counter = op, counter

    def __getattr__(self, name):
        attr = getattr(self._op, name)
        if name in self._counted:
            def counted(*args, **kwargs):
                self._counter.op_calls += 1
                return attr(*args, **kwargs)
            return counted
        return attr


class Welford:
    """Running per-pixel mean and variance on the device (Chan et al. 1979, batch merge)."""

    def __init__(self) -> None:
        self.n = 0
        self.mean: torch.Tensor | None = None
        self.m2: torch.Tensor | None = None

    def add(self, batch: torch.Tensor) -> None:
        b = batch.double()
        nb = b.shape[0]
        mb = b.mean(dim=0)
        m2b = ((b - mb) ** 2).sum(dim=0)
        if self.mean is None:
            self.n, self.mean, self.m2 = nb, mb, m2b
            return
        delta = mb - self.mean
        n = self.n + nb
        self.mean = self.mean + delta * (nb / n)
        self.m2 = self.m2 + m2b + delta**2 * (self.n * nb / n)
        self.n = n

    def std(self) -> torch.Tensor:
        if self.n < 2:
            return torch.zeros_like(self.mean)
        return (self.m2 / (self.n - 1)).clamp_min(0).sqrt()


class AsyncPreview:
    """Copies a preview to pinned host memory without blocking; hands it over once landed."""

    def __init__(self, device: torch.device):
        self.device = device
        self.pending: tuple[torch.Tensor, Any, int, int] | None = None

    def start(self, x0: torch.Tensor, step: int, sample: int) -> None:
        if self.device.type == "cuda":
            host = torch.empty(x0.shape, dtype=torch.float32, pin_memory=True)
            host.copy_(x0.float(), non_blocking=True)
            event = torch.cuda.Event()
            event.record()
            self.pending = (host, event, step, sample)
        else:
            self.pending = (x0.float().cpu().clone(), None, step, sample)

    def ready(self, wait: bool = False):
        if self.pending is None:
            return None
        host, event, step, sample = self.pending
        if event is not None and not event.query():
            if not wait:
                return None
            event.synchronize()
        self.pending = None
        return host.numpy(), step, sample


def out_of_memory(err: BaseException, device: torch.device) -> str | None:
    """"GPU" or "CPU" when ``err`` is an allocation failure there, else None (any other error)."""
    if isinstance(err, torch.cuda.OutOfMemoryError):
        return "GPU"
    if isinstance(err, MemoryError):
        return "CPU"
    text = str(err)
    if "DefaultCPUAllocator" in text or "can't allocate memory" in text:
        return "CPU"
    return "GPU" if device.type == "cuda" and "out of memory" in text.lower() else None
