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

``auto`` picks whichever measured faster for the run at hand (:func:`auto_mode`): CUDA graphs
for small networks, and for large ones unless the run is too short to pay back the compile.
A shape compiled before on this machine (recorded in ``compiled.json`` in the cache folder,
:func:`cache_folder`) costs only inductor's cache lookup, so a second long run compiles where a
first short one did not.

Gradient checkpointing recomputes each block's activations in the backward pass instead of
storing them (Chen et al. 2016), trading about one more forward per step for the memory of a
larger batch of DPS samples. It acts only where a gradient is taken.
"""
from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import threading
import time
from pathlib import Path
from typing import Callable, Sequence

import torch

Tensor = torch.Tensor

#: ``auto`` is ``graphs`` or ``compile`` on CUDA (:func:`auto_mode`) and ``none`` elsewhere.
MODES = ("auto", "none", "graphs", "compile")
_CAPTURE_LOCK = threading.Lock()

# What ``auto`` knows, measured by benchmarks/bench_deepinv.py --sections acceleration (H200, bf16,
# 8 samples per batch; benchmarks/README.md). torch.compile against CUDA graphs, per evaluation:
# the 553 M-parameter ADM UNet 1.71x faster plain and 1.62x with DPS's gradient; the 8.9 M bundled
# prior 0.90x and 0.38x (slower). Compiling one shape took 72 s plain and 134 s with the gradient,
# about 680 and 640 graph replays' worth, and 9.6 s and 8.8 s (90 and 42 replays) in a later
# process, from inductor's on-disk cache.
#: networks below this many parameters run as CUDA graphs (launch-bound: compiling does not pay)
COMPILE_MIN_PARAMETERS = 100_000_000
#: graphs time / compiled time per evaluation of a large network (the lower of the two measured)
COMPILE_SPEEDUP = 1.6
#: compiling one shape, in evaluations of that shape: the first time, and again from the cache
COMPILE_COST_EVALUATIONS = {"first": 700.0, "cached": 100.0}


def resolve_mode(mode: str, device: torch.device) -> str:
    if mode not in MODES:
        from ..errors import InputError

        raise InputError(f"compile mode {mode!r} is not one of {', '.join(MODES)}.")
    if device.type != "cuda":
        return "none"  # graphs are CUDA-only; inductor on the CPU costs more than it saves here
    return "graphs" if mode == "auto" else mode


def compile_available() -> bool:
    """torch.compile can build GPU kernels here (inductor needs Triton)."""
    return importlib.util.find_spec("triton") is not None


def compile_cost(batches: Sequence[int], cached: Callable[[int], bool] = lambda b: False) -> float:
    """Compiling each distinct batch size once, in single-sample evaluations of the network."""
    return sum(COMPILE_COST_EVALUATIONS["cached" if cached(b) else "first"] * b for b in set(batches))


def auto_mode(parameters: int, batches: Sequence[int], evaluations: int,
              cached: Callable[[int], bool] = lambda b: False) -> tuple[str, str]:
    """``(mode, reason)`` for a CUDA run of a network with ``parameters`` parameters that evaluates
    ``evaluations`` times per batch for each batch size in ``batches``.

    Large networks are compiled when the evaluations saved pay for the compile: over the run,
    ``sum_b evaluations * b * (1 - 1 / COMPILE_SPEEDUP)`` against one compile per distinct batch
    size ``b``, ``COMPILE_COST_EVALUATIONS * b`` (``cached(b)``: compiled before, cheaper). Both
    sides count single-sample evaluations, which a large network's time is proportional to."""
    if parameters < COMPILE_MIN_PARAMETERS:
        return "graphs", (f"CUDA graphs: the network has {parameters / 1e6:.0f} M parameters; below "
                          f"{COMPILE_MIN_PARAMETERS / 1e6:.0f} M torch.compile measured slower than graphs")
    if not compile_available():
        return "graphs", "CUDA graphs: torch.compile needs Triton, which is not installed"
    total = sum(evaluations * b for b in batches)
    saved = total * (1 - 1 / COMPILE_SPEEDUP)
    sizes = sorted(set(batches))
    cost = compile_cost(batches, cached)
    what = (f"{total} evaluations of a {parameters / 1e6:.0f} M-parameter network "
            f"save about {saved:.0f} evaluations' time compiled; compiling {len(sizes)} batch size(s) "
            f"costs about {cost:.0f}")
    return ("compile", f"torch.compile: {what}") if saved > cost else ("graphs", f"CUDA graphs: {what}")


def cache_folder() -> Path:
    """Where diffrecon keeps machine-local records: ``$DIFFRECON_CACHE``, else
    ``$XDG_CACHE_HOME/diffrecon``, else ``~/.cache/diffrecon``."""
    if os.environ.get("DIFFRECON_CACHE"):
        return Path(os.environ["DIFFRECON_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "diffrecon"


def shape_signature(net: torch.nn.Module, shape: Sequence[int], grad: bool, amp: torch.dtype | None,
                    device: torch.device) -> str:
    """What inductor's compiled code depends on: the architecture, the input shape, gradient or
    not, autocast, the GPU and torch (not the weights, which are inputs of the compiled graph)."""
    params = sum(p.numel() for p in net.parameters())
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
    return (f"{type(net).__name__}/{params}/{'x'.join(map(str, shape))}/{'grad' if grad else 'plain'}/"
            f"{amp}/{gpu}/torch {torch.__version__}")


def _compiled_record() -> Path:
    return cache_folder() / "compiled.json"


def compiled_before(signature: str) -> bool:
    try:
        return signature in json.loads(_compiled_record().read_text())
    except (OSError, ValueError, TypeError):
        return False


def note_compiled(signature: str, seconds: float) -> None:
    """Record a finished compile (best effort: a read-only home only loses the record)."""
    path = _compiled_record()
    try:
        try:
            known = json.loads(path.read_text())
            known = known if isinstance(known, dict) else {}
        except (OSError, ValueError):
            known = {}
        known[signature] = {"seconds": round(seconds, 2), "when": time.strftime("%Y-%m-%dT%H:%M:%S")}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(known, indent=1))
        os.replace(tmp, path)
    except OSError:
        pass


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
        #: the mode to go on in when compiling fails (set by ``accelerate``: auto's choice falls back
        #: to graphs); None: the error stands
        self.fallback: str | None = None
        self.fallback_reason: str | None = None
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
        try:
            out = self._compiled(x, t).sample
            torch.cuda.synchronize(x.device)
        except torch.cuda.OutOfMemoryError:
            raise  # the engine halves the batch
        except Exception as err:  # inductor/Triton failures: go on in the fallback mode if allowed
            if self.fallback is None:
                raise
            self.fallback_reason = f"torch.compile failed ({type(err).__name__}: {str(err)[:200]})"
            self.mode, self._compiled = self.fallback, None
            return self(x, t)
        seconds = time.perf_counter() - start
        self.setup_seconds += seconds
        self.setups += 1
        self._seen.add(key)
        note_compiled(shape_signature(self.net, x.shape, key[4], key[5], x.device), seconds)
        return out

    def release(self) -> None:
        """Drop recorded graphs (and their reserved memory)."""
        self._recorded.clear()


class AcceleratedNetwork:
    """What a denoiser around a diffusers-style ``self.unet(x, t).sample`` gains: ``accelerate``,
    which sets ``self.network_call``. The class sets ``unet``, ``network_call = None`` and
    ``checkpointing = False``."""

    def accelerate(self, mode: str = "none", channels_last: bool = False, checkpointing: bool = False,
                   fallback: str | None = None) -> NetworkCall:
        """Evaluate the network in ``mode`` (none | graphs | compile, see
        :mod:`~diffrecon.priors.acceleration`), channels-last or not, with gradient checkpointing
        or not; ``fallback``: the mode to go on in if compiling fails (None: the error stands).
        Recorded graphs and compiled code are kept while the settings stay the same."""
        call = self.network_call
        if call is None or (call.mode, call.channels_last) != (mode, channels_last):
            if call is not None and call.channels_last and not channels_last:
                self.unet.to(memory_format=torch.contiguous_format)
            call = self.network_call = NetworkCall(self.unet, mode, channels_last)
        call.fallback = fallback
        if checkpointing != self.checkpointing:
            self.checkpointing = checkpointing if set_checkpointing(self.unet, checkpointing) else False
            call.release()  # graphs recorded with the other setting
        return call
