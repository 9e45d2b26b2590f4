"""Training a DDPM epsilon-prediction prior (Ho et al., NeurIPS 2020, Algorithm 1 / Eq. 14).

Each step draws images x0, timesteps t ~ U{0..T-1} and noise n ~ N(0, I), forms
``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) n`` (Eq. 4) and minimises ``|n - eps(x_t, t)|^2``
(the "simple" loss, Eq. 14), with the linear beta schedule 1e-4..0.02 over T = 1000 steps
(Sec. 4). The weights written to the prior are an exponential moving average (Polyak averaging,
as in Ho et al., Sec. 4, and Song & Ermon 2020) with the warm-up ``min(decay, (1+k)/(10+k))``
so the early average is not dominated by the random initialisation.

All randomness of step k (which images, flips, t, n) comes from a generator seeded with
``(seed, k)``, so a resumed run draws exactly what an uninterrupted one would have drawn and its
losses are identical (bit for bit on CPU). Nothing per step touches the host: losses are kept on
the device and read every ``log_every`` steps for the progress bar and the log.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import math
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from ..errors import InputError
from ..limits import check_bytes, check_seed, nbytes
from ..io.atomic import atomic_write
from ..priors.base import PriorCard
from ..priors.diffusers_vp import alphas_cumprod_from_schedule, check_unet_config, save_diffusers_prior
from ..runtime import device_name, resolve_device
from ..schedule import DDPM_SCHEDULE, vp_sigmas
from .checkpoint import CHECKPOINT_DIR, checkpoint_init_from, load_checkpoint, save_checkpoint
from .data import MIN_IMAGES, TrainingData, load_training_data
from .init_from import check_architecture, load_init_weights, read_init_folder
from .log_points import LogPoints

SCHEDULE = dict(DDPM_SCHEDULE)
#: 128x128 grayscale default: 8.95 M parameters, 17.9 MB of fp16 weights; attention at 16x16 only.
DEFAULT_CHANNELS = (64, 128, 128, 128)
#: About 15 minutes on one H100 at batch 64, bf16, compiled: 14 steps/s measured in this loop (8.6
#: eager; 5.9 with channels_last, where GroupNorm copies), plus ~40 s of phantoms and ~2 min compiling.
DEFAULT_STEPS = 10_000
LOG_FILE = "training_log.json"


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one training run (the ``diffrecon train`` options)."""

    data: str = "phantoms"
    size: int = 128
    steps: int = DEFAULT_STEPS
    batch_size: int = 64
    lr: float = 2e-4
    channels: tuple[int, ...] = DEFAULT_CHANNELS
    layers_per_block: int = 2
    n_images: int = 20_000
    dataset: str | None = None
    seed: int = 0
    device: str = "auto"
    ema_decay: float = 0.999
    warmup_steps: int = 500  # linear learning-rate warm-up: Adam's first moments are noisy
    weight_decay: float = 0.0
    checkpoint_every: int = 2000
    log_every: int = 100
    compile: bool = True  # torch.compile on CUDA: fuses GroupNorm/SiLU, 1.75x faster on an H100
    #: patch training: images are made at image_size and each step takes random size x size crops
    #: of them, except a whole_fraction of the batch that sees whole images resized to size
    #: (None: whole images at size, the network's size).
    image_size: int | None = None
    whole_fraction: float = 0.25
    #: self-attention at the lowest resolution; without it the network is fully convolutional
    #: (translation-equivariant) and runs at any size that is a multiple of 2**(levels-1)
    attention: bool = True
    data_cache: str | None = None  # folder keeping the generated procedural images
    allow_external: bool = False  # follow links from an HDF5 --data file to other files
    #: the fields a checkpoint must share with the run that resumes it (they fix the network)
    ARCHITECTURE = ("size", "channels", "layers_per_block", "attention")

    @property
    def data_size(self) -> int:
        return self.image_size or self.size

    def validate(self) -> None:
        levels = len(self.channels)
        if self.data not in ("phantoms", "procedural") and not Path(self.data).exists():
            raise InputError(f"--data {self.data} does not exist; give 'phantoms', 'procedural', an HDF5 file "
                             f"or an image folder.")
        if self.image_size is not None and not self.size <= self.image_size <= 4096:
            raise InputError(f"--image-size {self.image_size} must lie between --size {self.size} and 4096 "
                             f"(patches of --size are cut from images of --image-size).")
        if not 0 <= self.whole_fraction <= 1:
            raise InputError(f"--whole-fraction must lie in [0, 1] (got {self.whole_fraction}).")
        if levels < 2 or any(isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in self.channels):
            raise InputError(f"--channels {','.join(map(str, self.channels))} is invalid; give at least two "
                             f"positive integers, one per resolution level, e.g. 64,128,128,128.")
        if self.size < 8 or self.size % 2 ** (levels - 1):
            raise InputError(f"--size {self.size} must be at least 8 and a multiple of {2 ** (levels - 1)} "
                             f"(2**(levels-1) for {levels} channel levels).")
        for name, value, low in (("--steps", self.steps, 1), ("--batch-size", self.batch_size, 1),
                                 ("--n-images", self.n_images, MIN_IMAGES), ("layers_per_block", self.layers_per_block, 1),
                                 ("checkpoint_every", self.checkpoint_every, 1), ("log_every", self.log_every, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise InputError(f"{name} must be an integer of at least {low} (got {value}).")
        if not (math.isfinite(self.lr) and 0 < self.lr < 1):
            raise InputError(f"--lr must be a positive learning rate below 1 (got {self.lr}).")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0 and self.warmup_steps >= 1):
            raise InputError(f"weight_decay {self.weight_decay} and warmup_steps {self.warmup_steps} must be "
                             "non-negative and at least 1.")
        if not 0 <= self.ema_decay < 1:
            raise InputError(f"ema_decay must lie in [0, 1) (got {self.ema_decay}).")
        check_seed(self.seed, "--seed")
        check_bytes(4 * self.steps, f"--steps {self.steps} (the loss of every step)", "schedule")
        check_unet_config({"block_out_channels": list(self.channels), "layers_per_block": self.layers_per_block,
                           "in_channels": 1},
                          f"--channels {','.join(map(str, self.channels))} --layers-per-block {self.layers_per_block}")
        check_bytes(nbytes((self.n_images, 1, self.size, self.size), 4),
                    f"--n-images {self.n_images} at --size {self.size}", "training")
        resolve_device(self.device)


@dataclass
class TrainResult:
    """What a call of :func:`train` did: ``losses`` are the per-step losses of the steps it ran."""

    prior_folder: Path
    first_step: int
    steps: int
    final_loss: float
    losses: list[float] = field(default_factory=list)


def make_unet(size: int, channels: tuple[int, ...] = DEFAULT_CHANNELS, layers_per_block: int = 2,
              in_channels: int = 1, attention: bool = True):
    """A diffusers ``UNet2DModel`` with self-attention only at the lowest resolution (and its middle
    block): attention at high resolution costs O(pixels^2) and adds little for these images.
    ``attention=False``: none at all, a fully convolutional network for any image size."""
    from diffusers import UNet2DModel

    levels = len(channels)
    return UNet2DModel(
        sample_size=size, in_channels=in_channels, out_channels=in_channels,
        layers_per_block=layers_per_block, block_out_channels=tuple(channels),
        down_block_types=("DownBlock2D",) * (levels - 1) + ("AttnDownBlock2D" if attention else "DownBlock2D",),
        up_block_types=("AttnUpBlock2D" if attention else "UpBlock2D",) + ("UpBlock2D",) * (levels - 1),
        add_attention=attention,
        norm_num_groups=min(32, math.gcd(*channels)),  # GroupNorm needs groups dividing every width
    )


def draw_batch(images: torch.Tensor, idx: torch.Tensor, size: int, whole_fraction: float,
               generator: torch.Generator) -> torch.Tensor:
    """``images[idx]`` as (B, C, size, size): whole images when they are ``size`` already, else
    random crops, with the first ``round(whole_fraction * B)`` whole images resized (antialiased)."""
    n_img, c, h, w = images.shape
    b = idx.shape[0]
    if (h, w) == (size, size):
        return images[idx]
    k = int(round(whole_fraction * b))
    oy = torch.randint(h - size + 1, (b,), generator=generator, device=images.device)
    ox = torch.randint(w - size + 1, (b,), generator=generator, device=images.device)
    ar = torch.arange(size, device=images.device)
    rows, cols = (oy[:, None] + ar)[:, None, :, None], (ox[:, None] + ar)[:, None, None, :]
    ch = torch.arange(c, device=images.device)[None, :, None, None]
    crops = images[idx[:, None, None, None], ch, rows, cols]
    if k == 0:
        return crops
    whole = F.interpolate(images[idx[:k]], size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return torch.cat([whole, crops[k:]])


def augment(x0: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A random element of the dihedral group per image (flips and 90-degree rotations): a
    transpose, a horizontal and a vertical flip, each with probability 1/2, give all eight."""
    b = x0.shape[0]
    coins = torch.rand(3, b, 1, 1, 1, generator=generator, device=x0.device) < 0.5
    x0 = torch.where(coins[0], x0.transpose(-1, -2), x0)
    x0 = torch.where(coins[1], x0.flip(-1), x0)
    return torch.where(coins[2], x0.flip(-2), x0)


def _ema_decay(decay: float, updates: int) -> float:
    return min(decay, (1 + updates) / (10 + updates))


def _step_seed(seed: int, step: int) -> int:
    return (seed * 1_000_003 + step) % (2**63)


def train(config: TrainConfig, out: str | Path, *, resume: bool = False, progress: bool = True,
          data: TrainingData | None = None, init_from: str | Path | None = None,
          time_limit: float | None = None, on_step: Callable[[int, int, float | None], None] | None = None,
          stop: threading.Event | None = None) -> TrainResult:
    """Train (or resume) a prior into ``out``: prior files there, checkpoint in ``out/checkpoint``.

    ``data`` skips loading (tests, notebooks); otherwise it comes from ``config.data``.
    ``init_from``: a prior folder whose weights start the network and its EMA (see
    :mod:`.init_from`); the step counter still starts at 0 and the optimizer is fresh, but each
    step's draws continue the folder's run (seeded as step ``folder steps + k``) rather than
    replaying its first batches.
    ``time_limit`` (seconds of training steps): stop at the first log point past it and write the
    checkpoint, the prior and the log as at the end, so a run fits a limited machine call and
    ``--resume`` goes on from there.
    ``on_step(done, total, loss_ema)`` is called after every step (``loss_ema`` at log points,
    else None); ``stop`` set ends the run after the current step, written as at a time limit.
    """
    from tqdm.auto import tqdm

    config.validate()
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; give a folder for the prior.")
    if resume and init_from is not None:
        raise InputError("--init-from cannot be combined with --resume; resume a run that was started with "
                         "--init-from by giving --resume alone.")
    ckpt = out / CHECKPOINT_DIR
    if resume and not ckpt.is_dir():
        raise InputError(f"--resume was given but {ckpt} does not exist; train without --resume first.")
    if not resume and ckpt.exists():
        raise InputError(f"{ckpt} already exists; pass --resume to continue it or choose another --out.")
    source = read_init_folder(init_from) if init_from is not None else None
    device = resolve_device(config.device)
    data = data or load_training_data(config.data, config.data_size, n_images=config.n_images, dataset=config.dataset,
                                      cache=config.data_cache, allow_external=config.allow_external)
    images = data.images.to(device)
    if source is not None:
        check_architecture(source, config.size, config.channels, config.layers_per_block, images.shape[1])
    # diffusers draws the initial weights from the global generator: seed it, but leave the caller's state as it was
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        unet = make_unet(config.size, config.channels, config.layers_per_block, images.shape[1],
                         config.attention).to(device)
    ema = make_unet(config.size, config.channels, config.layers_per_block, images.shape[1], config.attention).to(device)
    if source is not None:
        load_init_weights(source, unet, ema)
    else:
        ema.load_state_dict(unet.state_dict())
    ema.requires_grad_(False)
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    network = torch.compile(unet) if cuda and config.compile else unet
    optimizer = torch.optim.AdamW(unet.parameters(), lr=config.lr, weight_decay=config.weight_decay, fused=cuda)
    start, loss_ema, log = 0, None, []
    init_record = source.record() if source is not None else None
    if resume:
        start, loss_value, log = load_checkpoint(ckpt, config, unet, ema, optimizer)
        loss_ema = torch.tensor(loss_value, device=device)
        init_record = checkpoint_init_from(ckpt)
    base_steps = int(init_record["training_steps"]) if init_record else 0
    if start >= config.steps:
        raise InputError(f"The checkpoint in {ckpt} is at step {start}; give --steps above it to train on.")

    abar = alphas_cumprod_from_schedule(SCHEDULE).float().to(device)
    timesteps = int(SCHEDULE["timesteps"])
    generator = torch.Generator(device)
    params, ema_params = list(unet.parameters()), list(ema.parameters())
    losses = torch.zeros(config.steps - start, device=device)
    unet.train()
    bar = tqdm(range(start, config.steps), initial=start, total=config.steps, disable=not progress,
               unit="step", dynamic_ncols=True)
    points, done = LogPoints(start, config.steps, config.log_every, time_limit, bar, log), start
    try:
        for step in bar:
            generator.manual_seed(_step_seed(config.seed, base_steps + step))
            idx = torch.randint(len(images), (config.batch_size,), generator=generator, device=device)
            x0 = augment(draw_batch(images, idx, config.size, config.whole_fraction, generator), generator)
            t = torch.randint(timesteps, (config.batch_size,), generator=generator, device=device)
            noise = torch.randn(x0.shape, generator=generator, device=device)
            a = abar[t].view(-1, 1, 1, 1)
            x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise  # Ho et al. Eq. 4
            for group in optimizer.param_groups:
                group["lr"] = config.lr * min(1.0, (step + 1) / config.warmup_steps)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
                try:
                    eps = network(x_t, t).sample
                except Exception as err:  # noqa: BLE001 - a compiler failure must not cost the run
                    if network is unet or step != start:
                        raise
                    print(f"torch.compile failed ({type(err).__name__}); training uncompiled.", file=sys.stderr)
                    network = unet
                    eps = network(x_t, t).sample
            loss = F.mse_loss(eps.float(), noise)  # Eq. 14
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            with torch.no_grad():
                # one fused kernel per tensor list, not a Python loop of lerps
                torch._foreach_lerp_(ema_params, params, 1 - _ema_decay(config.ema_decay, step))
                loss = loss.detach()
                losses[step - start] = loss
                loss_ema = loss.clone() if loss_ema is None else loss_ema.lerp_(loss, 0.01)
            done = step + 1
            past_limit = points.reached(done, loss, loss_ema)  # every log_every steps; True past the time limit
            if on_step is not None:
                on_step(done, config.steps, log[-1]["loss_ema"] if log and log[-1]["step"] == done else None)
            if past_limit or (stop is not None and stop.is_set()):
                break
            if done % config.checkpoint_every == 0 and done < config.steps:
                save_checkpoint(ckpt, config, done, float(loss_ema), log, unet, ema, optimizer, init_record)
    finally:
        bar.close()
    final_loss = float(loss_ema)
    reached = dataclasses.replace(config, steps=done)
    save_checkpoint(ckpt, reached, done, final_loss, log, unet, ema, optimizer, init_record)
    folder = write_prior(ema, reached, out, data, final_loss, device, init_record)
    write_log(out / LOG_FILE, reached, log, device, unet)
    return TrainResult(folder, start, done, final_loss, losses[:done - start].cpu().tolist())


def write_prior(ema, config: TrainConfig, out: Path, data: TrainingData, final_loss: float,
                device: torch.device, init_from: dict | None = None) -> Path:
    """The EMA weights as a loadable prior folder (config.json, fp16 safetensors, card.json).

    ``init_from`` (``{"folder", "sha256", "training_steps"}``) adds the folder's steps to the
    card's ``training_steps`` and is recorded as ``extra.init_from``.
    """
    base_steps = int(init_from["training_steps"]) if init_from else 0
    since = f" after starting from {init_from['folder']} ({base_steps} steps)" if init_from else ""
    abar = alphas_cumprod_from_schedule(SCHEDULE)
    sigmas = vp_sigmas(abar)
    n_params = sum(p.numel() for p in ema.parameters())
    name = f"ddpm-{config.data}" if config.data in ("phantoms", "procedural") else f"ddpm-{Path(config.data).stem}"
    patches = config.data_size != config.size
    geometry = {"image_size": config.data_size, "patch_size": config.size if patches else None,
                "whole_fraction": config.whole_fraction if patches else None, "attention": config.attention,
                "any_size": not config.attention,
                "gflop_per_evaluation": network_gflop(ema, config.size, int(data.images.shape[1]))}
    how = (f" on random {config.size}x{config.size} patches of {config.data_size}x{config.data_size} images "
           f"({config.whole_fraction:.0%} of each batch whole images resized to {config.size})" if patches else "")
    sizes = (" Fully convolutional (no attention): it runs at any image size that is a multiple of "
             f"{2 ** (len(config.channels) - 1)}, e.g. 128 to 512 and beyond." if not config.attention else "")
    card = PriorCard(
        name=f"{name}-{config.size}", resolution=(config.size, config.size), channels=int(data.images.shape[1]),
        value_range=(-1.0, 1.0), sigma_min=float(sigmas[0]), sigma_max=float(sigmas[-1]), schedule=dict(SCHEDULE),
        training_data=data.description,
        description=(f"DDPM epsilon-prediction UNet2DModel ({n_params / 1e6:.2f} M parameters, EMA weights) "
                     f"trained by diffrecon train for {base_steps + config.steps} steps at batch "
                     f"{config.batch_size}{how}{since}.{sizes}"),
        extra={"training_steps": base_steps + config.steps, "final_loss": final_loss,
               "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
               "data_scaling": {"low": data.low, "high": data.high, "maps_to": [-1.0, 1.0],
                                "method": f"{config.data} [0, 1]" if config.data in ("phantoms", "procedural")
                                else "0.1/99.9 percentiles, clipped"},
               "parameters": n_params, "block_out_channels": list(config.channels), **geometry,
               "layers_per_block": config.layers_per_block, "batch_size": config.batch_size,
               "lr": config.lr, "ema_decay": config.ema_decay, "seed": config.seed, "device": device_name(device),
               **({"init_from": dict(init_from), "steps_this_run": config.steps} if init_from else {})},
    )
    return save_diffusers_prior(ema, card, out, fp16=True)



def network_gflop(unet, size: int, channels: int) -> float:
    """Floating-point operations (GFLOP, multiply-add = 2) of one evaluation at ``size`` x ``size``."""
    from torch.utils.flop_counter import FlopCounterMode

    p = next(unet.parameters())
    x = torch.zeros(1, channels, size, size, device=p.device, dtype=p.dtype)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        unet(x, torch.zeros(1, device=p.device))
    return round(counter.get_total_flops() / 1e9, 3)


def write_log(path: Path, config: TrainConfig, log: list[dict], device: torch.device, unet) -> None:
    record = {"device": device_name(device), "torch": torch.__version__,
              "parameters": sum(p.numel() for p in unet.parameters()),
              "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(config).items()},
              "log": log}
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(record, indent=1)))
