"""Variance-preserving epsilon-prediction networks (diffusers ``UNet2DModel``) as denoisers.

A DDPM network (Ho et al., NeurIPS 2020, Eq. 4) at timestep t sees
``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) n`` and predicts ``n``. Dividing by ``sqrt(abar_t)``
gives the variance-exploding form ``x = x0 + sigma n`` with ``sigma_t = sqrt((1 - abar_t)/abar_t)``
(Karras et al., EDM, NeurIPS 2022, Table 1 / Eq. 7), so for a VE input

    x_t = x / sqrt(1 + sigma^2),    x0_hat = x - sigma * eps(x_t, t(sigma)).

The timestep ``t(sigma)`` is *fractional*: log sigma is interpolated linearly over the discrete
table. UNet2DModel embeds t sinusoidally as a real number, so fractional timesteps are well
defined, and the denoiser is then continuous in sigma: a Karras schedule, whose levels fall
between table entries, gets a network conditioned on its actual noise level rather than one up to
half a step off (rounding to the nearest entry biases every step; k-diffusion's
DiscreteEpsDDPMDenoiser interpolates the same way by default). On table entries t is an integer.

Weights are read from safetensors only: a pickle can run code when loaded.
"""
from __future__ import annotations

import dataclasses
import json
import math
import threading
from pathlib import Path

import torch

from ..errors import InputError, printable
from ..limits import check_bytes
from ..messages import quiet_libraries
from ..schedule import linear_alphas_cumprod, vp_sigmas
from .acceleration import AcceleratedNetwork, NetworkCall
from .base import Denoiser, PriorCard, read_json, sigma_as_batch

Tensor = torch.Tensor

WEIGHTS_FILE = "diffusion_pytorch_model.safetensors"
PICKLE_SUFFIXES = (".bin", ".ckpt", ".pt", ".pth", ".pkl", ".pickle")
VP_KINDS = ("vp_linear", "vp_cosine")


def alphas_cumprod_from_schedule(schedule: dict) -> Tensor:
    """``abar_t`` (float64) of a card's beta schedule: linear (Ho et al. 2020, Sec. 4) or cosine
    (Nichol & Dhariwal, ICML 2021, Eq. 17 with s = 0.008, betas clipped at 0.999)."""
    kind = schedule.get("kind")
    if kind not in VP_KINDS:
        raise InputError(f"Prior schedule kind {printable(repr(kind))} is not supported; valid kinds are "
                         f"{', '.join(VP_KINDS)}.")
    steps = schedule.get("timesteps", 1000)
    if isinstance(steps, bool) or not isinstance(steps, (int, float)) or not math.isfinite(steps) \
            or steps != int(steps) or steps < 2:
        raise InputError(f"A prior card schedule's timesteps is {printable(repr(steps))[:40]}; expected a whole "
                         "number of at least 2.")
    steps = int(steps)
    check_bytes(8 * 4 * (steps + 1), f"A prior card schedule with timesteps={steps}", "schedule")
    if kind == "vp_linear":
        ends = [schedule.get(k) for k in ("beta_start", "beta_end")]
        if not all(isinstance(b, (int, float)) and not isinstance(b, bool) and 0 < b < 1 for b in ends) \
                or not ends[0] <= ends[1]:
            raise InputError(f"A vp_linear prior schedule needs 0 < beta_start <= beta_end < 1 "
                             f"(got {printable(repr(ends))[:60]}).")
        return linear_alphas_cumprod(float(ends[0]), float(ends[1]), steps)
    if kind == "vp_cosine":
        s = 0.008
        t = torch.arange(steps + 1, dtype=torch.float64) / steps
        f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
        betas = (1 - f[1:] / f[:-1]).clamp(max=0.999)
        return torch.cumprod(1 - betas, dim=0)
    raise InputError(f"Prior schedule kind {kind!r} is not supported; valid kinds are {', '.join(VP_KINDS)}.")


class VPEpsilonDenoiser(AcceleratedNetwork, Denoiser):
    """The Denoiser view of an epsilon-prediction ``unet(x_t, t).sample`` with ``alphas_cumprod``."""

    def __init__(self, unet: torch.nn.Module, alphas_cumprod: Tensor, card: PriorCard):
        super().__init__()
        self.unet = unet
        abar = torch.as_tensor(alphas_cumprod, dtype=torch.float64)
        sigmas = vp_sigmas(abar)
        if not bool((sigmas[1:] > sigmas[:-1]).all()):
            raise ValueError("alphas_cumprod must be strictly decreasing")
        self.register_buffer("sigmas", sigmas.float())
        self.register_buffer("log_sigmas", sigmas.log().float())
        self.card = dataclasses.replace(card, sigma_min=float(sigmas[0]), sigma_max=float(sigmas[-1]))
        #: None or e.g. torch.bfloat16: the network's autocast dtype on CUDA (solver state stays fp32).
        self.autocast_dtype: torch.dtype | None = None
        self.weights_path: Path | None = None  # set by load_diffusers_prior, for provenance
        self.network_call: NetworkCall | None = None  # set by accelerate(); None: eager
        self.checkpointing = False

    def discrete_sigmas(self) -> Tensor:
        return self.sigmas

    def timestep(self, sigma: Tensor) -> Tensor:
        """Fractional timestep of each sigma: linear interpolation of log sigma over the table."""
        ls = sigma.clamp_min(1e-30).log().clamp(self.log_sigmas[0], self.log_sigmas[-1])
        hi = torch.searchsorted(self.log_sigmas, ls).clamp(1, len(self.log_sigmas) - 1)
        lo = hi - 1
        w = (ls - self.log_sigmas[lo]) / (self.log_sigmas[hi] - self.log_sigmas[lo])
        return lo.float() + w.clamp(0, 1)

    def forward(self, x: Tensor, sigma: Tensor | float) -> Tensor:
        x = x.float()
        s = sigma_as_batch(sigma, x)
        x_t = x / (1 + s.square()).sqrt().reshape(-1, 1, 1, 1)
        t = self.timestep(s)
        net = self.network_call or (lambda a, b: self.unet(a, b).sample)
        if self.autocast_dtype is not None and x.is_cuda:
            with torch.autocast("cuda", dtype=self.autocast_dtype):
                out = net(x_t, t)
        else:
            out = net(x_t, t)
        eps = out[:, : x.shape[1]].float()  # models with learned variances output 2C channels
        return x - s.reshape(-1, 1, 1, 1) * eps


class ScoreVEDenoiser(AcceleratedNetwork, Denoiser):
    """A variance-exploding score network in diffusers' form: a ``UNet2DModel`` with
    ``time_embedding_type`` fourier (the form diffusers gave score-SDE's NCSN++ networks) takes
    sigma as its timestep and returns the score ``s(x, sigma)`` (it divides by sigma itself), so
    by Tweedie's formula ``D(x, sigma) = x + sigma^2 s(x, sigma)``. The card's sigma range is the SDE's."""

    parameterisation = "VE score network (UNet2DModel, Fourier embedding): D = x + sigma^2 s"

    def __init__(self, unet: torch.nn.Module, card: PriorCard):
        super().__init__()
        self.unet, self.card = unet, card
        self.weights_path: Path | None = None
        self.network_call: NetworkCall | None = None
        self.checkpointing = False

    def forward(self, x: Tensor, sigma: Tensor | float) -> Tensor:
        x = x.float()
        s = sigma_as_batch(sigma, x)
        net = self.network_call or (lambda a, b: self.unet(a, b).sample)
        return x + s.square().reshape(-1, 1, 1, 1) * net(x, s)[:, : x.shape[1]].float()


def is_score_ve(config: dict) -> bool:
    """Whether a UNet2DModel config describes a VE score network (Fourier noise embedding)."""
    return config.get("time_embedding_type") == "fourier"


# ------------------------------------------------------------------------------------ files
def save_diffusers_prior(unet, card: PriorCard, folder: str | Path, fp16: bool = True) -> Path:
    """Write ``config.json``, ``diffusion_pytorch_model.safetensors`` and ``card.json`` to ``folder``."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    alphas_cumprod_from_schedule(card.schedule)  # refuse a card whose schedule cannot be read back
    unet.save_config(folder)
    dtype = torch.float16 if fp16 else torch.float32
    state = {k: v.detach().to("cpu", dtype).contiguous() for k, v in unet.state_dict().items()}
    save_file(state, str(folder / WEIGHTS_FILE), metadata={"format": "pt"})
    (folder / "card.json").write_text(card.to_json())
    return folder


def check_prior_folder(folder: Path) -> None:
    if not folder.is_dir():
        raise InputError(f"Prior folder {folder} does not exist; give a folder holding card.json, "
                         f"config.json and {WEIGHTS_FILE}.")
    if not (folder / WEIGHTS_FILE).is_file():
        pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
        if pickles:
            raise InputError(f"Prior folder {folder} holds only pickled weights ({', '.join(pickles)}), "
                             f"which are never loaded because they can run code; convert them to {WEIGHTS_FILE}.")
        raise InputError(f"Prior folder {folder} lacks {WEIGHTS_FILE}.")
    for name in ("card.json", "config.json"):
        if not (folder / name).is_file():
            raise InputError(f"Prior folder {folder} lacks {name}; it needs card.json, config.json and {WEIGHTS_FILE}.")


def _validate(card: PriorCard, config: dict, folder: Path) -> None:
    size = config.get("sample_size")
    size = tuple(size) if isinstance(size, (list, tuple)) else (size, size)
    if tuple(card.resolution) != size:
        raise InputError(f"Prior folder {folder}: card.json resolution {tuple(card.resolution)} "
                         f"disagrees with config.json sample_size {size}.")
    c = card.channels
    if config.get("in_channels") != c or config.get("out_channels") not in (c, 2 * c):
        raise InputError(f"Prior folder {folder}: card.json declares {c} channels but config.json has "
                         f"in_channels {config.get('in_channels')} and out_channels {config.get('out_channels')}.")


_IMPORT_LOCK = threading.RLock()
#: Structure a UNet2DModel config may declare: beyond these no prior is plausible, and building
#: that many modules costs gigabytes of Python objects before any weight is allocated.
MAX_LEVELS = 8
MAX_LAYERS_PER_BLOCK = 16


def unet_weight_bytes(channels, layers_per_block, in_channels: int = 1) -> int:
    """A lower bound of the float32 weight bytes of a UNet2DModel: each resnet block holds two 3x3
    convolutions; a level has ``layers_per_block`` blocks down and one more up."""
    total, prev = 0, int(in_channels)
    for c in channels:
        c = int(c)
        total += layers_per_block * 9 * (prev * c + c * c) + (layers_per_block + 1) * 9 * (2 * c * c + c * c)
        prev = c
    return 4 * total


def check_unet_config(config: dict, where: str) -> None:
    """Refuse a UNet2DModel config whose structure is nonsense or whose weights exceed the network
    budget, before anything is built; ``where`` names the file or the settings."""
    channels = config.get("block_out_channels", (224, 448, 672, 896))
    layers = config.get("layers_per_block", 2)
    in_channels = config.get("in_channels", 3)

    def whole(v, lo, hi):
        return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi

    if not (isinstance(channels, (list, tuple)) and 1 <= len(channels) <= MAX_LEVELS
            and all(whole(c, 1, 1 << 40) for c in channels)):
        raise InputError(f"{where}: block_out_channels is {printable(json.dumps(channels))[:60]}; expected 1 to "
                         f"{MAX_LEVELS} positive whole numbers.")
    if not whole(layers, 1, MAX_LAYERS_PER_BLOCK):
        raise InputError(f"{where}: layers_per_block is {printable(json.dumps(layers))[:40]}; expected a whole number "
                         f"from 1 to {MAX_LAYERS_PER_BLOCK}.")
    if not whole(in_channels, 1, 16) or not whole(config.get("out_channels", in_channels), 1, 32):
        raise InputError(f"{where}: in_channels and out_channels must be whole numbers from 1 to 16 (32 out).")
    check_bytes(unet_weight_bytes(channels, layers, in_channels),
                f"{where}: a network with block_out_channels {list(channels)} and layers_per_block {layers}",
                "network")


#: Card ``extra`` keys that make :func:`load_diffusers_prior` build another VPEpsilonDenoiser subclass;
#: the module defining one registers it (``priors/consistency.py``: ``"consistency"``).
CARD_KINDS: dict[str, type] = {}


def load_diffusers_prior(folder: str | Path, device: str | torch.device = "cpu") -> Denoiser:
    """Read a prior folder (local files only) and return its denoiser in eval mode, float32,
    with gradients off for its parameters (gradients with respect to x still flow)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(folder)
    check_prior_folder(folder)
    card = PriorCard.load(folder / "card.json")
    config = read_json(folder / "config.json", "Prior config")
    if not isinstance(config, dict):
        raise InputError(f"Prior config {folder / 'config.json'} holds {type(config).__name__}, not a JSON object.")
    if config.get("_class_name", "UNet2DModel") != "UNet2DModel":
        raise InputError(f"Prior folder {folder} holds a {printable(config.get('_class_name'))[:60]}; only "
                         "UNet2DModel is supported.")
    _validate(card, config, folder)
    check_unet_config(config, f"Prior config {folder / 'config.json'}")
    # a VE score network reads no beta schedule; the card's sigma range is its SDE's
    alphas_cumprod = None if is_score_ve(config) else alphas_cumprod_from_schedule(card.schedule)
    try:
        with _IMPORT_LOCK:  # diffusers' lazy module is not safe to import from two threads at once
            from diffusers import UNet2DModel
    except ImportError as err:
        raise InputError(f"Network priors need the diffusers package ({err}); install diffrecon[diffusers].") from None
    try:
        with _IMPORT_LOCK, quiet_libraries("diffusers"):
            unet = UNet2DModel.from_config(config)
    except Exception as err:  # noqa: BLE001 - any value diffusers cannot build from is the file's fault
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(f"Prior config {folder / 'config.json'} does not describe a UNet2DModel "
                         f"({type(err).__name__}: {printable(first)[:160]}).") from None
    try:
        state = load_file(str(folder / WEIGHTS_FILE), device="cpu")
        # fp16 on disk halves the download; CPU kernels and the solver maths want float32.
        unet.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    except (SafetensorError, RuntimeError, TypeError, ValueError, OSError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(f"Prior weights {folder / WEIGHTS_FILE} do not fit config.json ({printable(first)[:200]}).") from None
    unet = unet.float().eval().requires_grad_(False)
    if alphas_cumprod is None:
        denoiser = ScoreVEDenoiser(unet, card)
        denoiser.weights_path = folder / WEIGHTS_FILE
        return denoiser.to(device).eval()
    # a card whose extra holds one of CARD_KINDS' keys reads the network another way (e.g. consistency)
    kind = next((k for key, k in CARD_KINDS.items() if isinstance(card.extra.get(key), dict)), VPEpsilonDenoiser)
    denoiser = kind(unet, alphas_cumprod, card)
    denoiser.weights_path = folder / WEIGHTS_FILE
    return denoiser.to(device).eval()
