"""Consistency distillation of a prior (Song, Dhariwal, Chen & Sutskever, ICML 2023, Algorithm 2).

Each step draws images ``x0``, a level index ``n ~ U{1..N-1}`` of the ascending levels
``eps = t_1 < ... < t_N = sigma_max`` (Karras et al. 2022, Eq. 5, rho = 7; the consistency paper's
Sec. 4) and noise ``z``, and minimises

    lambda(t_n) d( f_theta(x0 + t_{n+1} z, t_{n+1}),  f_theta-(x_hat_n, t_n) )

where ``x_hat_n`` is one step of the teacher's probability-flow ODE ``dx/dt = (x - D(x, t)) / t``
from ``t_{n+1}`` to ``t_n`` (Heun, the paper's choice, two teacher evaluations; or Euler, which in
the sigma parametrisation is DDIM's deterministic step, one evaluation), ``f_theta-`` is the target
network, an exponential moving average of the student with decay ``mu`` (Eq. 8, ``target_decay``),
and ``f`` has the boundary scalings of :mod:`diffrecon.priors.consistency`, so ``f(x, eps) = x``.

Stated departures. The paper's metric for images is LPIPS, a network that is not available
offline: ``d`` is the pseudo-Huber distance ``sqrt(|a - b|^2 / n + c^2) - c`` (Song & Dhariwal,
"Improved techniques for training consistency models", ICLR 2024, Sec. 3.3; their ``c = 0.00054
sqrt(n)`` written per pixel, ``c = 0.00054``), or the mean squared error (``metric="l2"``, the
paper's other choice). The weighting ``lambda(t_n) = 1 / (t_{n+1} - t_n)`` is that paper's too:
the distance between neighbouring levels shrinks with their gap. The student, its target and the
moving average whose weights are written all start from the teacher's weights.

The loop is :mod:`.loop`'s (seeded draws per step, AdamW with warm-up and clipping, bf16 autocast
and ``torch.compile`` on CUDA, an EMA of the weights, checkpoints that ``resume`` continues, a time
limit, a progress bar, the log as JSON); the teacher and the target run as CUDA graphs. The
result is a prior folder with its own card (``extra.consistency``: teacher, its weight hash,
steps, levels, ODE solver, metric) that :func:`diffrecon.priors.load_prior` loads as a
:class:`~diffrecon.priors.consistency.ConsistencyDenoiser`.

    python -m diffrecon.training.consistency --teacher default --out cm-default --time-limit 420
"""
from __future__ import annotations

import copy
import dataclasses
import datetime
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import InputError
from ..limits import check_seed
from ..priors import load_prior, prior_weight_hash
from ..priors.consistency import CARD_KEY, ConsistencyDenoiser
from ..priors.diffusers_vp import VPEpsilonDenoiser, alphas_cumprod_from_schedule, save_diffusers_prior
from ..runtime import device_name, resolve_device
from ..schedule import karras_sigmas
from .checkpoint import CHECKPOINT_DIR, load_checkpoint, save_checkpoint
from .data import MIN_IMAGES, TrainingData, load_training_data
from .log_points import LogPoints
from .loop import LOG_FILE, _ema_decay, _step_seed, augment, draw_batch, write_log

Tensor = torch.Tensor

METRICS = ("pseudo_huber", "l2")
ODE_SOLVERS = ("heun", "euler")
PSEUDO_HUBER_C = 0.00054  # per pixel: Song & Dhariwal's c = 0.00054 sqrt(n) for images in [-1, 1]
#: card.extra keys of the teacher that describe the network and its data, copied to the student's card
TEACHER_KEYS = ("data_scaling", "parameters", "block_out_channels", "layers_per_block", "image_size", "patch_size",
                "whole_fraction", "attention", "any_size", "gflop_per_evaluation")


@dataclass(frozen=True)
class DistillConfig:
    """Settings of one distillation (the ``python -m diffrecon.training.consistency`` options)."""

    teacher: str = "default"  # a prior name or folder (a VP epsilon-prediction network)
    out: str = "cm"  # the folder the consistency model is written to
    steps: int = 4000
    batch_size: int = 64
    lr: float = 1e-4
    time_limit: float | None = None  # seconds of steps; stop at the next log point past it
    device: str = "auto"
    seed: int = 0
    resume: bool = False
    levels: int = 18  # N, the discretisation of [eps, sigma_max] (the paper's 18 for CIFAR-10)
    ode_solver: str = "heun"
    metric: str = "pseudo_huber"
    target_decay: float = 0.95  # mu of the target network (the paper's CD setting)
    ema_decay: float = 0.999  # the moving average that is written
    warmup_steps: int = 100
    data: str | None = None  # None: the teacher card's ("phantoms" or "procedural")
    n_images: int = 4000
    data_cache: str | None = None
    whole_fraction: float = 0.25  # patch teachers: the share of whole images resized to the patch size
    compile: bool = True  # torch.compile the student on CUDA
    checkpoint_every: int = 1000
    log_every: int = 50
    #: the settings a checkpoint must share with the run that resumes it
    ARCHITECTURE = ("teacher", "levels", "ode_solver", "metric")

    def validate(self) -> None:
        for name, value, low in (("--steps", self.steps, 1), ("--batch-size", self.batch_size, 1),
                                 ("--levels", self.levels, 2), ("--n-images", self.n_images, MIN_IMAGES),
                                 ("--warmup-steps", self.warmup_steps, 1), ("--checkpoint-every", self.checkpoint_every, 1),
                                 ("--log-every", self.log_every, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise InputError(f"{name} must be an integer of at least {low} (got {value}).")
        if not (math.isfinite(self.lr) and 0 < self.lr < 1):
            raise InputError(f"--lr must be a positive learning rate below 1 (got {self.lr}).")
        if self.ode_solver not in ODE_SOLVERS:
            raise InputError(f"--ode-solver {self.ode_solver!r} is not one of {', '.join(ODE_SOLVERS)}.")
        if self.metric not in METRICS:
            raise InputError(f"--metric {self.metric!r} is not one of {', '.join(METRICS)}.")
        for name, value in (("--target-decay", self.target_decay), ("--ema-decay", self.ema_decay)):
            if not 0 <= value < 1:
                raise InputError(f"{name} must lie in [0, 1) (got {value}).")
        if self.time_limit is not None and not (math.isfinite(self.time_limit) and self.time_limit > 0):
            raise InputError(f"--time-limit must be a positive number of seconds (got {self.time_limit}).")
        if not 0 <= self.whole_fraction <= 1:
            raise InputError(f"--whole-fraction must lie in [0, 1] (got {self.whole_fraction}).")
        check_seed(self.seed, "--seed")
        resolve_device(self.device)


# ------------------------------------------------------------------------------------ maths
def distillation_levels(levels: int, sigma_min: float, sigma_max: float) -> Tensor:
    """``t_1 < ... < t_N``: Karras et al.'s levels (rho = 7), ascending, float32."""
    return karras_sigmas(levels, sigma_min, sigma_max)[:-1].flip(0).float()


def teacher_step(teacher, x: Tensor, t_from: Tensor, t_to: Tensor, solver: str = "heun") -> Tensor:
    """One step of the probability-flow ODE ``dx/dt = (x - D(x, t)) / t`` (Karras et al. Eq. 3
    in the sigma form) from ``t_from`` to ``t_to`` ((B,) tensors, ``t_to > 0``): Euler, which is
    DDIM's deterministic step, or Heun's second-order correction (Karras et al., Algorithm 1)."""
    shape = (-1, *([1] * (x.ndim - 1)))
    a, b = t_from.reshape(shape), t_to.reshape(shape)
    d = (x - teacher(x, t_from)) / a
    x_next = x + (b - a) * d
    if solver == "heun":
        d_next = (x_next - teacher(x_next, t_to)) / b
        x_next = x + (b - a) * (0.5 * (d + d_next))
    return x_next


def distance(a: Tensor, b: Tensor, metric: str = "pseudo_huber") -> Tensor:
    """Per sample: the pseudo-Huber distance per pixel, or the mean squared error (module docstring)."""
    mse = (a - b).float().square().flatten(1).mean(1)
    if metric == "l2":
        return mse
    return (mse + PSEUDO_HUBER_C**2).sqrt() - PSEUDO_HUBER_C


def consistency_loss(student, target, teacher, x0: Tensor, n: Tensor, z: Tensor, levels: Tensor, *,
                     solver: str = "heun", metric: str = "pseudo_huber") -> Tensor:
    """The weighted consistency distillation loss (module docstring) of one batch; ``student`` and
    ``target`` are consistency functions ``f(x, t)``, ``teacher`` a denoiser, ``n`` the lower level
    index of each sample (0-based: ``levels[n] < levels[n + 1]``)."""
    t_lo, t_hi = levels[n], levels[n + 1]
    x_hi = x0 + t_hi.reshape(-1, *([1] * (x0.ndim - 1))) * z
    with torch.no_grad():
        x_lo = teacher_step(teacher, x_hi, t_hi, t_lo, solver)
        goal = target(x_lo, t_lo).float()
    weight = 1.0 / (t_hi - t_lo)
    return (weight * distance(student(x_hi, t_hi).float(), goal, metric)).mean()


def draw_levels(batch: int, levels: int, generator: torch.Generator, device) -> Tensor:
    return torch.randint(levels - 1, (batch,), generator=generator, device=device)


# ------------------------------------------------------------------------------------ the run
def _teacher_record(teacher, name: str) -> dict:
    extra = teacher.card.extra
    path = getattr(teacher, "weights_path", None)
    return {"folder": Path(path).parent.name if path else name, "name": teacher.card.name,
            "sha256": prior_weight_hash(teacher), "training_steps": int(extra.get("training_steps", 0) or 0)}


def _load_data(config: DistillConfig, teacher) -> TrainingData:
    """The images named by ``--data``, else by the teacher's card, at the size it was trained on."""
    extra = teacher.card.extra
    method = str((extra.get("data_scaling") or {}).get("method", "")).split(" ")[0]
    data = config.data or (method if method in ("phantoms", "procedural") else None)
    if data is None:
        raise InputError(f"The teacher {config.teacher} does not say which images it was trained on; give --data "
                         "(phantoms, procedural, an HDF5 file or an image folder).")
    size = int(extra.get("image_size") or teacher.card.resolution[0])
    return load_training_data(data, size, n_images=config.n_images, cache=config.data_cache)


def distill(config: DistillConfig, *, teacher: VPEpsilonDenoiser | None = None, data: TrainingData | None = None,
            progress: bool = True) -> Path:
    """Distil ``config.teacher`` (or the ``teacher`` given) into a consistency model in
    ``config.out``: prior files there, checkpoint in ``out/checkpoint``, the log in
    ``out/training_log.json``. Returns the folder. ``data`` skips loading (tests, notebooks)."""
    from tqdm.auto import tqdm

    config.validate()
    out = Path(config.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; give a folder for the consistency model.")
    ckpt = out / CHECKPOINT_DIR
    if config.resume and not ckpt.is_dir():
        raise InputError(f"--resume was given but {ckpt} does not exist; distil without --resume first.")
    if not config.resume and ckpt.exists():
        raise InputError(f"{ckpt} already exists; pass --resume to continue it or choose another --out.")
    device = resolve_device(config.device)
    teacher = teacher if teacher is not None else load_prior(config.teacher, device=device)
    if not isinstance(teacher, VPEpsilonDenoiser) or getattr(teacher, "is_consistency_model", False):
        raise InputError(f"The teacher {config.teacher} is not a diffusion network prior; give a prior folder "
                         "(a VP epsilon-prediction network, such as 'default').")
    teacher = teacher.to(device).eval().requires_grad_(False)
    record = _teacher_record(teacher, config.teacher)
    data = data if data is not None else _load_data(config, teacher)
    images = data.images.to(device)
    size = int(teacher.card.resolution[0])
    data_variance = float(images.var(dim=0).mean())  # tr Cov(x0) / n, for the solvers' data step
    abar = alphas_cumprod_from_schedule(teacher.card.schedule)
    card = teacher.card
    online_unet = copy.deepcopy(teacher.unet).float().requires_grad_(True).train()
    target_unet = copy.deepcopy(teacher.unet).float().requires_grad_(False).eval()
    ema_unet = copy.deepcopy(teacher.unet).float().requires_grad_(False).eval()
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    compiled = torch.compile(online_unet) if cuda and config.compile else online_unet
    student = ConsistencyDenoiser(compiled, abar, card).to(device)
    target = ConsistencyDenoiser(target_unet, abar, card).to(device)
    for den in (student, target, teacher):
        den.autocast_dtype = torch.bfloat16 if cuda else None
    if cuda:  # inference-only networks replay CUDA graphs; in-place EMA updates reach the target's graph
        teacher.accelerate("graphs")
        target.accelerate("graphs")
    optimizer = torch.optim.AdamW(online_unet.parameters(), lr=config.lr, weight_decay=0.0, fused=cuda)
    pair = torch.nn.ModuleDict({"online": online_unet, "target": target_unet})  # one checkpoint entry for both
    start, loss_ema, log = 0, None, []
    if config.resume:
        start, loss_value, log = load_checkpoint(ckpt, config, pair, ema_unet, optimizer)
        loss_ema = torch.tensor(loss_value, device=device)
    if start >= config.steps:
        raise InputError(f"The checkpoint in {ckpt} is at step {start}; give --steps above it to distil on.")
    levels = distillation_levels(config.levels, teacher.sigma_min, teacher.sigma_max).to(device)
    params, target_params, ema_params = (list(m.parameters()) for m in (online_unet, target_unet, ema_unet))
    generator = torch.Generator(device)
    bar = tqdm(range(start, config.steps), initial=start, total=config.steps, disable=not progress, unit="step",
               dynamic_ncols=True)
    points, done = LogPoints(start, config.steps, config.log_every, config.time_limit, bar, log), start
    try:
        for step in bar:
            generator.manual_seed(_step_seed(config.seed, step))
            idx = torch.randint(len(images), (config.batch_size,), generator=generator, device=device)
            x0 = augment(draw_batch(images, idx, size, config.whole_fraction, generator), generator)
            n = draw_levels(config.batch_size, config.levels, generator, device)
            z = torch.randn(x0.shape, generator=generator, device=device)
            for group in optimizer.param_groups:
                group["lr"] = config.lr * min(1.0, (step + 1) / config.warmup_steps)
            try:
                loss = consistency_loss(student, target, teacher, x0, n, z, levels, solver=config.ode_solver,
                                        metric=config.metric)
            except Exception as err:  # noqa: BLE001 - a compiler failure must not cost the run
                if student.unet is online_unet or step != start:
                    raise
                print(f"torch.compile failed ({type(err).__name__}); distilling uncompiled.", file=sys.stderr)
                student.unet = online_unet
                loss = consistency_loss(student, target, teacher, x0, n, z, levels, solver=config.ode_solver,
                                        metric=config.metric)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            with torch.no_grad():
                torch._foreach_lerp_(target_params, params, 1 - config.target_decay)  # Eq. 8
                torch._foreach_lerp_(ema_params, params, 1 - _ema_decay(config.ema_decay, step))
                loss = loss.detach()
                loss_ema = loss.clone() if loss_ema is None else loss_ema.lerp_(loss, 0.02)
            done = step + 1
            if points.reached(done, loss, loss_ema):  # every log_every steps; True past the time limit
                break
            if done % config.checkpoint_every == 0 and done < config.steps:
                save_checkpoint(ckpt, config, done, float(loss_ema), log, pair, ema_unet, optimizer, record)
    finally:
        bar.close()
    final_loss = float(loss_ema)
    reached = dataclasses.replace(config, steps=done)
    save_checkpoint(ckpt, reached, done, final_loss, log, pair, ema_unet, optimizer, record)
    card = distilled_card(teacher.card, reached, record, data, final_loss, device, levels, data_variance)
    folder = save_diffusers_prior(ema_unet, card, out, fp16=True)
    write_log(out / LOG_FILE, reached, log, device, online_unet)
    return folder


def distilled_card(teacher_card, config: DistillConfig, teacher: dict, data: TrainingData, final_loss: float,
                   device: torch.device, levels: Tensor, data_variance: float):
    """The student's card: the teacher's resolution, range and schedule; ``extra.consistency``
    says what it is and where it came from."""
    metric = (f"pseudo-Huber, c = {PSEUDO_HUBER_C} per pixel" if config.metric == "pseudo_huber"
              else "mean squared error")
    extra = {k: teacher_card.extra[k] for k in TEACHER_KEYS if k in teacher_card.extra}
    extra.update({
        CARD_KEY: {"teacher": teacher["folder"], "teacher_name": teacher["name"], "teacher_sha256": teacher["sha256"],
                   "teacher_training_steps": teacher["training_steps"], "distillation_steps": config.steps,
                   "levels": config.levels, "level_range": [float(levels[0]), float(levels[-1])],
                   "ode_solver": config.ode_solver, "metric": metric, "weighting": "1 / (t_{n+1} - t_n)",
                   "target_decay": config.target_decay, "data_variance": data_variance, "boundary": "f(x, s) = (s_min / s) x + (1 - s_min / s) D(x, s)",
                   "method": "consistency distillation, Song et al. ICML 2023, Algorithm 2"},
        "final_loss": final_loss, "batch_size": config.batch_size, "lr": config.lr, "ema_decay": config.ema_decay,
        "seed": config.seed, "device": device_name(device),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    })
    description = (f"Consistency model distilled from {teacher['name']} (weights sha256 {teacher['sha256'][:12]}...) "
                   f"by consistency distillation (Song et al., ICML 2023) for {config.steps} steps at batch "
                   f"{config.batch_size}, {config.levels} levels, {config.ode_solver} teacher steps, {metric}. "
                   "One evaluation maps an image noised to any level to a clean image (the end of the teacher's "
                   "ODE trajectory): a few-step sampler, not a Tweedie denoiser.")
    return dataclasses.replace(teacher_card, name=f"cm-{teacher_card.name}", description=description, extra=extra,
                               training_data=teacher_card.training_data or data.description)
