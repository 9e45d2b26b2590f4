"""Fine-tuning a prior on a folder of the user's own images, with a before/after denoising check.

:func:`fine_tune` is ``diffrecon train --data FOLDER --init-from PRIOR`` (:func:`.loop.train`,
the same loop, the same card) with a few of the folder's images held out: after training, those
images are noised at one or two levels and denoised in one step by the old and by the new prior,
and the PSNR of each is reported (:func:`denoise_check`). Progress arrives as events through a
callback; a set ``stop`` ends training after the current step and the prior trained so far is
written and checked all the same.

Time. The seconds per step are measured on the first steps of the run itself (the first step,
which allocates, is left out where there are more) and the rest is extrapolated: an estimate.
The rate of an earlier run of the same network, batch size and device is kept in the cache folder
(``training_rates.json``), so the next fine-tune says its time before it starts.
"""
from __future__ import annotations

import dataclasses
import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..errors import DiffreconError, InputError
from ..io.atomic import atomic_write
from ..metrics import psnr
from ..priors.acceleration import cache_folder
from ..runtime import device_name, resolve_device
from .data import MIN_IMAGES, TrainingData, load_training_data
from .init_from import read_architecture
from .loop import TrainConfig, train

RATES_FILE = "training_rates.json"
#: steps timed before the first estimate (the first of them is left out where there are more)
TIMED_STEPS = 3


@dataclass(frozen=True)
class FineTuneSettings:
    """``held_out`` images of the folder (the last in name order) are kept for the check;
    ``sigmas`` are its noise levels in the prior's units ([-1, 1] after the folder's scaling)."""

    steps: int = 200
    batch_size: int = 8
    lr: float = 2e-4
    held_out: int = 2
    sigmas: tuple[float, ...] = (0.1, 0.3)
    device: str = "auto"
    seed: int = 0
    max_images: int = 2000


@dataclass(frozen=True)
class FineTuneStarted:
    images: int  # training images
    held_out: int
    size: int
    steps: int
    device: str


@dataclass(frozen=True)
class FineTuneProgress:
    done: int
    total: int
    loss: float | None  # the moving average of the loss, at log points
    seconds_per_step: float | None
    eta_s: float | None


@dataclass(frozen=True)
class FineTuneEstimate:
    """The run's time extrapolated from ``measured_steps`` timed steps: an estimate."""

    seconds_per_step: float
    total_s: float
    measured_steps: int
    device: str

    def text(self) -> str:
        return (f"Estimated {format_duration(self.total_s)} for the run ({self.seconds_per_step:.3g} s per step "
                f"measured over {self.measured_steps} step(s) on {self.device}; an estimate).")


@dataclass(frozen=True)
class DenoiseCheck:
    """Mean PSNR (dB, peak-to-peak 2 of the [-1, 1] range) over ``images`` held-out images per
    noise level: the noisy input, the old prior's and the new prior's one-step denoising."""

    sigmas: tuple[float, ...]
    noisy: tuple[float, ...]
    before: tuple[float, ...]
    after: tuple[float, ...]
    images: int


@dataclass(frozen=True)
class FineTuned:
    folder: Path  # the trained prior (the training output folder)
    steps: int  # steps run
    total: int  # steps asked for
    final_loss: float
    check: DenoiseCheck
    seconds_per_step: float | None

    @property
    def stopped(self) -> bool:
        return self.steps < self.total


def format_duration(seconds: float) -> str:
    seconds = max(0.0, float(seconds))
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def rate_key(source: str | Path, batch_size: int, device: str) -> str:
    """What a stored rate belongs to: the network (its folder's architecture), batch and device."""
    a = read_architecture(source)
    return (f"{a['size']}px/{','.join(map(str, a['channels']))}/{a['layers_per_block']}/attention "
            f"{a['attention']}/batch {batch_size}/{device_name(resolve_device(device))}")


def stored_rate(key: str) -> float | None:
    """Seconds per step measured by an earlier run with ``key``, or None."""
    try:
        value = json.loads((cache_folder() / RATES_FILE).read_text()).get(key)
    except (OSError, ValueError, AttributeError):
        return None
    return float(value) if isinstance(value, (int, float)) and value > 0 else None


def store_rate(key: str, seconds_per_step: float) -> None:
    path = cache_folder() / RATES_FILE
    try:
        rates = json.loads(path.read_text())
        rates = rates if isinstance(rates, dict) else {}
    except (OSError, ValueError):
        rates = {}
    rates[key] = float(seconds_per_step)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda tmp: tmp.write_text(json.dumps(rates, indent=1)))
    except (OSError, DiffreconError):
        pass  # a cache that cannot be written costs the next run's early estimate, not this run


def split_held_out(data: TrainingData, held_out: int, folder: Path) -> tuple[TrainingData, torch.Tensor]:
    """The training images and the last ``held_out`` ones, which training never sees."""
    n = len(data.images)
    if held_out < 1 or n - held_out < MIN_IMAGES:
        raise InputError(f"Training folder {folder} holds {n} images; fine-tuning needs at least "
                         f"{MIN_IMAGES + max(held_out, 1)} ({MIN_IMAGES} to train on and {max(held_out, 1)} "
                         f"held out for the denoising check).")
    train_part = dataclasses.replace(
        data, images=data.images[:n - held_out].contiguous(),
        description=f"{data.description}; the last {held_out} held out for a denoising check")
    return train_part, data.images[n - held_out:].clone()


@torch.no_grad()
def denoise_check(old, new, images: torch.Tensor, sigmas, seed: int = 0) -> DenoiseCheck:
    """Noise ``images`` (N, C, H, W in [-1, 1]) at each sigma with one seeded draw and denoise
    them in one step with each prior; PSNR against the clean images, averaged over images."""
    device = next(iter(old.buffers())).device
    x0 = images.to(device)
    noisy, before, after = [], [], []
    for k, sigma in enumerate(sigmas):
        g = torch.Generator().manual_seed(seed * 1000 + k)
        y = x0 + float(sigma) * torch.randn(x0.shape, generator=g).to(device)
        results = [y, old(y, float(sigma)), new(y, float(sigma))]
        means = [float(np.mean([psnr(r[i].cpu().numpy(), x0[i].cpu().numpy(), data_range=2.0)
                                for i in range(len(x0))])) for r in results]
        for column, value in zip((noisy, before, after), means):
            column.append(value)
    return DenoiseCheck(tuple(float(s) for s in sigmas), tuple(noisy), tuple(before), tuple(after), len(x0))


class _Timer:
    """Per-step times from the training loop's callback: the progress events and the estimate."""

    def __init__(self, emit: Callable, device: str, first: float):
        self.emit, self.device, self.start = emit, device, first
        self.times: list[float] = []
        self.estimate: FineTuneEstimate | None = None

    def rate(self) -> float | None:
        t = self.times
        if len(t) >= 2:
            return (t[-1] - t[0]) / (len(t) - 1)  # the first step (allocations) left out
        return t[0] - self.start if t else None

    def __call__(self, done: int, total: int, loss: float | None) -> None:
        self.times.append(time.perf_counter())
        rate = self.rate()
        if self.estimate is None and (len(self.times) >= TIMED_STEPS or done == total):
            self.estimate = FineTuneEstimate(rate, rate * total, max(1, len(self.times) - 1), self.device)
            self.emit(self.estimate)
        self.emit(FineTuneProgress(done, total, loss, rate, rate * (total - done) if rate is not None else None))


def fine_tune(source: str | Path, data_folder: str | Path, out: str | Path,
              settings: FineTuneSettings = FineTuneSettings(), emit: Callable[[object], None] = lambda event: None,
              stop: threading.Event | None = None) -> FineTuned:
    """Train the prior folder ``source`` on the images of ``data_folder`` into ``out`` (train
    ``--init-from``), then check it against ``source`` on the held-out images."""
    from ..priors.diffusers_vp import load_diffusers_prior

    source, data_folder = Path(source), Path(data_folder)
    if not data_folder.is_dir():
        raise InputError(f"Training folder {data_folder} is not a folder; give a folder of PNG or TIFF images.")
    arch = read_architecture(source)
    device = device_name(resolve_device(settings.device))
    data = load_training_data(data_folder, arch["size"], n_images=settings.max_images + settings.held_out)
    data, held = split_held_out(data, settings.held_out, data_folder)
    config = TrainConfig(
        data=str(data_folder), size=arch["size"], steps=settings.steps, batch_size=settings.batch_size,
        lr=settings.lr, channels=tuple(arch["channels"]), layers_per_block=arch["layers_per_block"],
        attention=arch["attention"], n_images=max(MIN_IMAGES, len(data.images)), seed=settings.seed,
        device=settings.device, checkpoint_every=settings.steps, log_every=max(1, min(100, settings.steps // 20)),
        warmup_steps=max(1, min(TrainConfig.warmup_steps, settings.steps // 10)), compile=False)
    emit(FineTuneStarted(len(data.images), len(held), arch["size"], settings.steps, device))
    timer = _Timer(emit, device, time.perf_counter())
    result = train(config, out, progress=False, data=data, init_from=source, on_step=timer, stop=stop)
    rate = timer.rate()
    if rate is not None and len(timer.times) >= TIMED_STEPS:
        store_rate(rate_key(source, settings.batch_size, settings.device), rate)
    old, new = (load_diffusers_prior(f, resolve_device(settings.device)) for f in (source, result.prior_folder))
    check = denoise_check(old, new, held, settings.sigmas, settings.seed)
    return FineTuned(result.prior_folder, result.steps, settings.steps, result.final_loss, check, rate)
