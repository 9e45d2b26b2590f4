"""How a network prior evaluates its network: eagerly, replayed from CUDA graphs, or compiled.

A small UNet at a few samples per batch spends most of a solver step launching kernels: a DPS
step on the bundled prior at batch 4 issued ~1600 launches and kept the GPU busy for 15 % of the
wall time. A CUDA graph records one evaluation's kernels once per input shape and replays them
with one launch (``torch.cuda.CUDAGraph``); ``torch.compile`` fuses them instead, at a compile
cost of tens of seconds per shape (cached on disk by inductor across processes).

Graphs are recorded per (shape, gradient or not, autocast dtype). An evaluation with a gradient
(DPS-type solvers backpropagate through the network) records a forward and a backward graph
and replays them inside an autograd Function, as ``torch.cuda.make_graphed_callables`` does,
but captured in ``thread_local`` mode so that a second thread using the GPU (the window's run
predictor) cannot break a capture. The four newest variants are kept: the memory of a
graph stays reserved while it lives, so the engine drops them all when an out-of-memory error
halves the batch.

Gradient checkpointing recomputes each block's activations in the backward pass instead of
storing them (Chen et al. 2016), trading about one more forward per step for the memory of a
larger batch of DPS samples. It acts only where a gradient is taken.
"""
from __future__ import annotations

import contextlib
import threading
import time
from typing import Callable

import torch

Tensor = torch.Tensor

#: ``auto`` is ``graphs`` on CUDA and ``none`` elsewhere.
MODES = ("auto", "none", "graphs", "compile")
_CAPTURE_LOCK = threading.Lock()


def resolve_mode(mode: str, device: torch.device) -> str:
    if mode not in MODES:
        from ..errors import InputError

        raise InputError(f"compile mode {mode!r} is not one of {', '.join(MODES)}.")
    if device.type != "cuda":
        return "none"  # graphs are CUDA-only; inductor on the CPU costs more than it saves here
    return "graphs" if mode == "auto" else mode


def set_checkpointing(net: torch.nn.Module, on: bool) -> bool:
    """Switch gradient checkpointing of a diffusers model or an ADM UNet; False if it has none."""
    inner = getattr(net, "model", net)  # DiffusersCall(ADMUNet) or UNet2DModel
    if getattr(inner, "_supports_gradient_checkpointing", False):
        if on:
            inner.enable_gradient_checkpointing()
        else:
            inner.disable_gradient_checkpointing()
        return True
    if hasattr(inner, "gradient_checkpointing"):
        inner.gradient_checkpointing = on
        return True
    return False


def _autocast_now() -> contextlib.AbstractContextManager:
    """The caller's CUDA autocast, re-entered without the weight-cast cache (a cached cast made
    while recording would be freed, and reused, after the recording ends)."""
    if torch.is_autocast_enabled("cuda"):
        return torch.autocast("cuda", dtype=torch.get_autocast_dtype("cuda"), cache_enabled=False)
    return contextlib.nullcontext()


class _Recorded:
    """One shape's graphs: forward only, or forward and backward with respect to ``x``."""

    def __init__(self, fn: Callable[[Tensor, Tensor], Tensor], x: Tensor, t: Tensor, grad: bool):
        self.grad = grad
        self.x = x.detach().clone().requires_grad_(grad)
        self.t = t.detach().clone()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), torch.enable_grad() if grad else torch.no_grad(), _autocast_now():
            for _ in range(2):  # warm-up outside the recording: cuDNN/cuBLAS choose their kernels
                warm = x.detach().clone().requires_grad_(grad)  # not self.x: its autograd node stays
                out = fn(warm, self.t)                          # on the recording's stream
                if grad:
                    torch.autograd.grad(out, warm, torch.ones_like(out))
            del warm, out
        torch.cuda.current_stream().wait_stream(side)
        self.forward = torch.cuda.CUDAGraph()
        with torch.enable_grad() if grad else torch.no_grad():
            with torch.cuda.graph(self.forward, capture_error_mode="thread_local"), _autocast_now():
                self.out = fn(self.x, self.t)
            if grad:
                self.grad_out = torch.empty_like(self.out)
                self.backward = torch.cuda.CUDAGraph()
                with torch.cuda.graph(self.backward, pool=self.forward.pool(), capture_error_mode="thread_local"):
                    (self.grad_x,) = torch.autograd.grad(self.out, self.x, self.grad_out)

    def run_forward(self, x: Tensor, t: Tensor) -> Tensor:
        self.x.detach().copy_(x)
        self.t.copy_(t)
        self.forward.replay()
        return self.out.detach().clone()

    def run_backward(self, grad_out: Tensor) -> Tensor:
        self.grad_out.copy_(grad_out)
        self.backward.replay()
        return self.grad_x.clone()


class _Replay(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, t: Tensor, rec: _Recorded) -> Tensor:
        ctx.rec = rec
        return rec.run_forward(x, t)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        return ctx.rec.run_backward(grad_out.contiguous()), None, None


class NetworkCall:
    """``eps = call(x_t, t)`` for a diffusers-style ``net(x_t, t).sample``, in one of the modes."""

    #: recorded (shape, gradient) variants kept; a solver alternating between a few shapes (a
    #: gradient and a plain evaluation per step, say) must not re-record every step
    keep = 4

    def __init__(self, net: torch.nn.Module, mode: str = "none", channels_last: bool = False):
        self.net, self.mode, self.channels_last = net, mode, channels_last
        self._recorded: dict[tuple, _Recorded] = {}
        self._compiled: torch.nn.Module | None = None
        self._seen: set[tuple] = set()
        #: seconds spent recording graphs or compiling (first call per shape), and how often
        self.setup_seconds = 0.0
        self.setups = 0
        if channels_last:
            net.to(memory_format=torch.channels_last)

    def eager(self, x: Tensor, t: Tensor) -> Tensor:
        return self.net(x, t).sample

    def __call__(self, x: Tensor, t: Tensor) -> Tensor:
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.mode == "none" or not x.is_cuda:
            return self.eager(x, t)
        grad = torch.is_grad_enabled() and x.requires_grad
        amp = torch.get_autocast_dtype("cuda") if torch.is_autocast_enabled("cuda") else None
        key = (tuple(x.shape), x.dtype, x.device, tuple(t.shape), grad, amp)
        if self.mode == "compile":
            return self._compiled_call(key, x, t)
        rec = self._recorded.get(key)
        if rec is None:
            rec = self._record(key, x, t, grad)
        return _Replay.apply(x, t, rec) if grad else rec.run_forward(x, t)

    def _record(self, key: tuple, x: Tensor, t: Tensor, grad: bool) -> _Recorded:
        while len(self._recorded) >= self.keep:  # oldest first: dicts keep insertion order
            self._recorded.pop(next(iter(self._recorded)))
        start = time.perf_counter()
        with _CAPTURE_LOCK:
            rec = _Recorded(self.eager, x, t, grad)
        torch.cuda.synchronize(x.device)
        self.setup_seconds += time.perf_counter() - start
        self.setups += 1
        self._recorded[key] = rec
        return rec

    def _compiled_call(self, key: tuple, x: Tensor, t: Tensor) -> Tensor:
        if self._compiled is None:
            self._compiled = torch.compile(self.net, dynamic=False)
        if key in self._seen:
            return self._compiled(x, t).sample
        start = time.perf_counter()
        out = self._compiled(x, t).sample
        torch.cuda.synchronize(x.device)
        self.setup_seconds += time.perf_counter() - start
        self.setups += 1
        self._seen.add(key)
        return out

    def release(self) -> None:
        """Drop recorded graphs (and their reserved memory)."""
        self._recorded.clear()
