"""The divergence guard: a run that goes wrong says so, per sample, within a step or two.

Three checks run on every solver step, on each sample's clean estimate ``x0_hat`` (and once more
on the output), in the prior's units: range ``[a, b]`` of width ``w``, ``sigma`` the noise level
the estimate was made at, ``n`` pixels.

* **non-finite**: ``x`` or ``x0_hat`` holds NaN or infinity.
* **range**: the root-mean-square distance of ``x0_hat`` outside ``[a, b]`` exceeds
  ``w + LIMIT * sigma``. An exact denoiser's estimate is an average of prior images and never
  leaves the range; a network's strays by up to a few noise levels while ``sigma`` is large.
* **residual**: ``||A x0_hat - y||`` exceeds ``FLOOR * max(r_flat, noise) + LIMIT * sigma *
  ||A||_2 sqrt(n)``: ``noise`` is the noise level's expected residual ``noise_sigma sqrt(m)``,
  ``r_flat`` the residual of the flat image at the range's centre. At the end (``sigma = 0``) an
  estimate ten times further from the data than a flat grey image is far past the noise level
  (on the bundled CT demo, 890 times it); while ``sigma`` is large, the second term allows what an
  estimate ``LIMIT * sigma`` (RMS) away from that image could reach.

``LIMIT = 10`` comes from measurements with the bundled prior on the CT demo
(``benchmarks/guard_margins.py`` prints each step's check values over their thresholds; above 1
a check fires): DPS kicks its estimate far out at the second step whatever the budget (0.64 of
the threshold with 10 steps, 0.65 with 20 and 30) and with 20 or more steps comes back (nothing
above that kick over the rest of the run; 2 samples each; DiffPIR and DDNM with 50 steps stay
below 0.01); with 10 steps it keeps going (0.84, then 1.50 at step 4, where the guard stops it,
two steps after the kick; unguarded it ends at -20 dB with a residual 980 times the noise level).

Without a host synchronisation per step: the checks are a handful of tensor operations whose
result, a small ``(3, B)`` tensor (first step that fired, which check, its value), lives on the
device. On CUDA each step starts a non-blocking copy of it into pinned host memory and records an
event; the host reads the copies whose events have completed (``Event.query`` never blocks). At
most ``MAX_LAG`` copies are in flight: when the host runs further ahead of the GPU it waits for
the oldest, which costs nothing in throughput because the GPU still has the newer steps queued.
So a divergence is known on the host at most two steps after the step it happened in, and the
step it reports is the device's, exact. On the CPU the values are simply read each step.

A diverged sample is left out of the statistics; a batch whose samples have all diverged stops at
once (``on_divergence="sample"``, the default), the whole run stops at the first divergence with
``"all"``, and ``"continue"`` only reports (the samples stay in the statistics). Each sample's last
estimate that passed every check is kept, so a run whose samples all diverged still shows what went
wrong (a sample that failed on its first step shows the flat image at the range's centre).
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Sequence

import torch

from .operators.base import residual_norm

#: check names, by the code stored on the device (0: none)
CHECKS = ("non-finite", "range", "residual")
LIMIT = 10.0  # in noise levels sigma of the estimate; see the module docstring
FLOOR = 10.0  # residual at sigma = 0, in residuals of a flat image (or of the noise, if larger)
MAX_LAG = 2  # copies in flight before the host waits for the oldest (CUDA)
ON_DIVERGENCE = ("sample", "all", "continue")
#: the parameter that scales each solver's data guidance, for the advice and the retry
GUIDANCE_WEIGHTS = {"dps": "zeta", "ddim": "zeta", "dpmpp_2m": "zeta", "pigdm": "weight"}
RETRY_FACTOR = 0.25  # the retry's guidance weight, relative to the first attempt's
SAFER_SOLVER = "diffpir"  # no gradient through the network; the default solver
RESIDUAL_MISSES_DATA = 5.0  # residual / noise above which a spread is not read as calibration


@dataclass(frozen=True)
class Divergence:
    """One sample that failed a check: at ``step`` (1-based) of ``steps``."""

    sample: int
    step: int
    steps: int
    check: str  # one of CHECKS
    value: float | None  # range: RMS distance outside it (image units); residual: over the noise level


@dataclass
class Diverged:
    """Engine event: samples that failed a check (sent as soon as the host knows)."""

    divergences: list[Divergence]
    message: str  # one sentence: which samples, which step, which check, what to try


class DivergenceGuard:
    """Per-sample checks of a run; ``start_batch`` / ``observe`` each step / ``end_batch``."""

    def __init__(self, op, y: torch.Tensor, sigmas: torch.Tensor, prior_range: tuple[float, float],
                 scale: float, solver: str, params: Any, on_divergence: str = "sample", units: str = ""):
        if on_divergence not in ON_DIVERGENCE:
            raise ValueError(f"on_divergence {on_divergence!r} is not one of {', '.join(ON_DIVERGENCE)}")
        self.op, self.y, self.scale = op, y, float(scale)
        self.sigmas = [float(s) for s in sigmas]
        self.lo, self.hi = (float(v) for v in prior_range)
        self.width = self.hi - self.lo
        self.solver, self.params, self.on_divergence, self.units = solver, params, on_divergence, units
        self.steps = len(self.sigmas) - 1
        device = y.device
        with torch.no_grad():
            flat = torch.full((1, *op.image_shape), (self.lo + self.hi) / 2, device=device).to(op.image_dtype)
            self.flat = flat
            self.r_flat = float(residual_norm(op, flat, y[:1])[0])
        self.reach = op.norm() * math.sqrt(math.prod(op.image_shape))  # ||A||_2 sqrt(n)
        self.noise = float(op.noise_sigma) * math.sqrt(op.measurement_dof)  # expected residual of the noise
        self.floor = FLOOR * max(self.r_flat, self.noise)
        self.found: list[Divergence] = []  # every divergence of the run, in the order found
        self._last_good: list[torch.Tensor] = []  # (1, C, H, W) per diverged sample, on the device

    # ------------------------------------------------------------------ per batch
    def start_batch(self, indices: Sequence[int]) -> None:
        b = len(indices)
        dev = self.y.device
        self.indices = list(indices)
        self.known: set[int] = set()  # batch positions already reported
        self.state = torch.zeros(3, b, device=dev)  # first step that fired (-1 none), check code, value
        self.state[0] = -1
        self.last_good = self.flat.expand(b, *self.flat.shape[1:]).clone()
        self.copies = HostCopies(self.y.device)

    def observe(self, step) -> Diverged | None:
        """Run the checks on ``step`` (device work only) and return what the host newly knows."""
        code, value = self._checks(step.x, step.x0_hat, self.sigmas[step.i])
        fresh = (self.state[0] < 0) & (code > 0)
        self.state[0] = torch.where(fresh, float(step.i + 1), self.state[0])
        self.state[1] = torch.where(fresh, code.float(), self.state[1])
        self.state[2] = torch.where(fresh, value, self.state[2])
        healthy = (self.state[0] < 0).view(-1, *([1] * (step.x0_hat.ndim - 1)))
        self.last_good = torch.where(healthy, step.x0_hat.to(self.last_good.dtype), self.last_good)
        return self._read(wait=False)

    def batch_lost(self) -> bool:
        """Whether the running batch should stop: all its samples diverged, or any with ``all``."""
        if self.on_divergence == "continue" or not self.known:
            return False
        return self.on_divergence == "all" or len(self.known) == len(self.indices)

    def run_lost(self) -> bool:
        """Whether the run should stop (``all``, and a sample diverged)."""
        return self.on_divergence == "all" and bool(self.found)

    def end_batch(self, x: torch.Tensor | None) -> tuple[torch.Tensor | None, Diverged | None]:
        """Check the output ``x`` (None: the batch did not finish) too, wait for every check (one
        synchronisation per batch) and return the samples of ``x`` to keep (None: none) and what
        was newly found."""
        if x is not None:
            code, value = self._checks(x, x, 0.0)
            fresh = (self.state[0] < 0) & (code > 0)
            self.state[0] = torch.where(fresh, float(self.steps), self.state[0])
            self.state[1] = torch.where(fresh, code.float(), self.state[1])
            self.state[2] = torch.where(fresh, value, self.state[2])
        news = self._read(wait=True)
        for k in sorted(self.known):
            self._last_good.append(self.last_good[k:k + 1])
        if x is None:
            return None, news
        if self.on_divergence == "continue":  # report only; but NaN cannot enter the statistics
            finite = torch.isfinite(x.reshape(len(self.indices), -1)).all(1).tolist()
            keep = [k for k, ok in enumerate(finite) if ok]
        else:
            keep = [k for k in range(len(self.indices)) if k not in self.known]
        return (x[keep] if keep else None), news

    # ------------------------------------------------------------------ the run's outcome
    def last_estimates(self) -> torch.Tensor | None:
        """The last estimate that passed every check, of each diverged sample (prior units)."""
        return torch.cat(self._last_good) if self._last_good else None

    def record(self, last_estimates: bool = False) -> dict[str, Any] | None:
        """What the result keeps (JSON-able; None when nothing diverged). ``last_estimates``: the
        result's images are the diverged samples' last estimates (no sample passed)."""
        if not self.found:
            return None
        first = min(self.found, key=lambda d: d.step)
        return {"diverged": True, "first_step": first.step, "steps": self.steps, "check": first.check,
                "on_divergence": self.on_divergence, "last_estimates": bool(last_estimates), "units": self.units,
                "advice": advice(self.solver, self.params, self.steps), "samples": [asdict(d) for d in self.found]}

    # ------------------------------------------------------------------ internals
    def margins(self, x: torch.Tensor, x0_hat: torch.Tensor, sigma: float):
        """Per sample: finite?, and the range and residual checks' values over their thresholds
        (above 1: fires), with the values themselves (prior units)."""
        b = x0_hat.shape[0]
        finite = torch.isfinite(x.reshape(b, -1)).all(1) & torch.isfinite(x0_hat.reshape(b, -1)).all(1)
        safe = torch.where(finite.view(-1, *([1] * (x0_hat.ndim - 1))), x0_hat, torch.zeros_like(x0_hat))
        if safe.is_complex():
            outside = torch.zeros(b, device=safe.device)
        else:
            flat = safe.reshape(b, -1).float()
            outside = (flat - flat.clamp(self.lo, self.hi)).pow(2).mean(1).sqrt()
        residual = residual_norm(self.op, safe, self.y.expand(b, *self.y.shape[1:])).float()
        return (finite, outside / (self.width + LIMIT * sigma), residual / (self.floor + LIMIT * sigma * self.reach),
                outside, residual)

    def _checks(self, x: torch.Tensor, x0_hat: torch.Tensor, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Per sample: the first check that fails (code, 0 none) and its value (physical units)."""
        finite, range_margin, residual_margin, outside, residual = self.margins(x, x0_hat, sigma)
        code = torch.where(~finite, 1, torch.where(range_margin > 1, 2, torch.where(residual_margin > 1, 3, 0)))
        value = torch.where(code == 2, outside * self.scale, residual / self.noise if self.noise > 0 else math.nan)
        return code, torch.where(finite, value, torch.full_like(value, math.nan))

    def _read(self, wait: bool) -> Diverged | None:
        self.copies.push(self.state)
        landed = self.copies.landed(wait)
        return self._news(landed) if landed is not None else None

    def _news(self, state: torch.Tensor) -> Diverged | None:
        steps, codes, values = state.tolist()
        fresh = [k for k, s in enumerate(steps) if s >= 0 and k not in self.known]
        if not fresh:
            return None
        self.known.update(fresh)
        found = [Divergence(self.indices[k], int(steps[k]), self.steps, CHECKS[int(codes[k]) - 1],
                            values[k] if math.isfinite(values[k]) else None) for k in fresh]
        self.found.extend(found)
        return Diverged(found, describe(found, self.solver, self.params, self.on_divergence, self.units))


class HostCopies:
    """Copies of a small device tensor on the host without a synchronisation: on CUDA each
    ``push`` starts a non-blocking copy into pinned memory and records an event; ``landed`` returns
    the newest copy whose event has completed, waiting only for the oldest when more than
    ``max_lag`` are in flight (or for all with ``wait``). Elsewhere a push is read at once."""

    def __init__(self, device: torch.device, max_lag: int = MAX_LAG, event=None):
        self.async_ = device.type == "cuda" or event is not None
        self.event = event or (torch.cuda.Event if device.type == "cuda" else None)
        self.max_lag = max_lag
        self.pending: deque = deque()
        self.waits = 0  # how often the host waited for the device (for tests and benchmarks)

    def push(self, tensor: torch.Tensor) -> None:
        if not self.async_:
            self.pending = deque([(tensor.cpu().clone(), None)])
            return
        host = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=tensor.is_cuda)
        host.copy_(tensor, non_blocking=True)
        event = self.event()
        event.record()
        self.pending.append((host, event))

    def landed(self, wait: bool = False) -> torch.Tensor | None:
        newest = None
        while self.pending:
            host, event = self.pending[0]
            if event is not None and not event.query():
                if not (wait or len(self.pending) > self.max_lag):
                    break
                event.synchronize()
                self.waits += 1
            newest = self.pending.popleft()[0]
        return newest


# ---------------------------------------------------------------------------------- sentences
def _samples_text(samples: Iterable[int]) -> str:
    numbers = sorted(s + 1 for s in samples)
    return f"sample {numbers[0]}" if len(numbers) == 1 else f"samples {', '.join(map(str, numbers))}"


def _check_text(d: Divergence, units: str = "") -> str:
    unit = f" {units}" if units else ""
    if d.check == "non-finite":
        return "the estimate became NaN or infinite"
    if d.check == "range":
        return ("the estimate left the prior's value range by a wide margin" +
                (f", RMS {d.value:.3g}{unit} beyond it" if d.value is not None else ""))
    return ("the data residual ||A x̂₀ − y|| grew far past the noise level" +
            (f", to {d.value:.3g} times it" if d.value is not None else ""))


def advice(solver: str, params: Any, steps: int) -> str:
    """What to try, in a clause: more steps, a smaller guidance weight, another solver."""
    tries = [f"more steps (≥ {max(2 * steps, 20)})"]
    weight = GUIDANCE_WEIGHTS.get(solver)
    value = getattr(params, weight, None) if weight and getattr(params, "guidance", "dps") == "dps" else None
    if isinstance(value, (int, float)) and value > 0:
        tries.append(f"a smaller guidance weight ({weight} {value:g} → {value * RETRY_FACTOR:g})")
    if solver != SAFER_SOLVER:
        tries.append(f"another solver ({SAFER_SOLVER})")
    return "try " + ", ".join(tries[:-1]) + f" or {tries[-1]}" if len(tries) > 1 else "try " + tries[0]


def describe(found: Sequence[Divergence], solver: str, params: Any, on_divergence: str = "sample",
             units: str = "") -> str:
    """One sentence: which samples diverged at which step, which check fired, what to try."""
    first = min(found, key=lambda d: d.step)
    steps = sorted({d.step for d in found})
    at = f"step {steps[0]}" if len(steps) == 1 else f"steps {steps[0]}-{steps[-1]}"
    then = {"sample": "it is left out of the mean and std" if len(found) == 1 else
            "they are left out of the mean and std",
            "all": "the run stops", "continue": "the run goes on (keep-going)"}[on_divergence]
    return (f"{solver} diverged: {_samples_text(d.sample for d in found)} at {at} of {first.steps} "
            f"({_check_text(first, units)}); {then}; {advice(solver, params, first.steps)}.")


def retry_config(config, params: Any, record: dict[str, Any] | None):
    """``(config, note)`` for one more attempt with the guidance weight times RETRY_FACTOR, or
    None (nothing diverged, or the solver has no guidance weight to lower)."""
    import dataclasses

    weight = GUIDANCE_WEIGHTS.get(config.solver)
    old = getattr(params, weight, None) if weight else None
    if not record or not isinstance(old, (int, float)) or old <= 0 or getattr(params, "guidance", "dps") != "dps":
        return None
    new = float(old) * RETRY_FACTOR
    note = {"param": weight, "from": float(old), "to": new, "first_attempt": record,
            "message": f"Retrying once with {weight} {old:g} → {new:g}: the first attempt diverged at step "
                       f"{record['first_step']} of {record['steps']}."}
    return dataclasses.replace(config, params={**dict(config.params), weight: new}, retry_on_divergence=False), note


def divergence_of(result) -> dict[str, Any] | None:
    """The divergence record of a Result (from its provenance), or None."""
    record = (getattr(result, "provenance", None) or {}).get("divergence")
    return record if isinstance(record, dict) and record.get("diverged") else None


def summary(result) -> str:
    """A result's divergence (and retry) in one sentence for the end of a run; "" if none."""
    record, retry = divergence_of(result), (getattr(result, "provenance", None) or {}).get("retry")
    retried = (f"Retried once with {retry['param']} {retry['from']:g} → {retry['to']:g} (the first attempt "
               f"diverged at step {retry['first_attempt']['first_step']})" if isinstance(retry, dict) else "")
    if record is None:
        return f"{retried}; the retry passed every check." if retried else ""
    samples = [Divergence(**d) for d in record.get("samples", [])]
    n, done = len(samples), int(getattr(result, "n_samples", 0))
    if record.get("last_estimates"):
        kept = "no sample passed, so the images show each sample's last estimate before it diverged"
    elif record.get("on_divergence") == "continue":
        kept = "they stay in the statistics (continue)"
    else:
        kept = f"the mean and std are over the {done} other sample{'s' if done != 1 else ''}"
    what = _check_text(min(samples, key=lambda d: d.step), record.get("units", "")) if samples else "a check failed"
    text = (f"{retried + '; still ' if retried else ''}diverged: {n} sample{'s' if n != 1 else ''} from step "
            f"{record.get('first_step')} of {record.get('steps')} ({what}); {kept}; {record.get('advice', '')}.")
    return text[0].upper() + text[1:]


def metric_notes(result) -> dict[str, str]:
    """Metrics that must not be read at face value, with why: a diverged or stopped result, or
    one whose residual says the samples miss the data (its spread is then no calibration)."""
    metrics = getattr(result, "metrics", None) or {}
    record = divergence_of(result)
    ratio = metrics.get("residual_ratio")
    why = ""
    if record is not None:
        why = "diverged: no calibration"
    elif ratio is not None and math.isfinite(ratio) and ratio > RESIDUAL_MISSES_DATA:
        why = f"misses the data ({ratio:.3g}× noise): no calibration"
    elif not getattr(result, "complete", True):
        why = f"stopped early: {getattr(result, 'n_samples', 0)} samples"
    if not why:
        return {}
    notes = {k: why for k in metrics if k.startswith("coverage") or k.startswith("std_error")}
    if record is not None or (ratio is not None and ratio > RESIDUAL_MISSES_DATA):
        for key in ("psnr", "ssim", "nrmse", "residual", "residual_ratio"):
            if key in metrics:
                notes[key] = "diverged" if record is not None else "misses the data"
    return notes
