"""EDM networks (Karras et al., NeurIPS 2022) read from state dicts, as priors.

EDM's denoiser is natively in the form used here (Sec. 2 and Table 1 of the paper):

    D(x, sigma) = c_skip(sigma) x + c_out(sigma) F(c_in(sigma) x, c_noise(sigma)),

with the preconditioning the network was trained with (the card's ``extra.edm.precond``):

* ``edm`` (``EDMPrecond``): ``c_skip = sd^2 / (sigma^2 + sd^2)``, ``c_out = sigma sd / sqrt(sigma^2 + sd^2)``,
  ``c_in = 1 / sqrt(sigma^2 + sd^2)``, ``c_noise = log(sigma) / 4`` with ``sd = sigma_data`` (0.5);
* ``ve`` (``VEPrecond``, score-SDE's VE networks): ``1, sigma, 1, log(sigma / 2)``;
* ``vp`` (``VPPrecond``): ``1, -sigma, 1 / sqrt(sigma^2 + 1), (M - 1) t(sigma)`` with score-SDE's
  VP schedule (``beta_d`` 19.9, ``beta_min`` 0.1, ``M`` 1000).

The weights show the architecture (:func:`edm_layout`: SongUNet's DDPM++ / NCSN++ or
DhariwalUNet, widths, blocks, attention, resolution from the module names); what they cannot
show (the preconditioning, the value range, training data) comes from a card beside the file,
as for guided-diffusion checkpoints. EDM's data lie in [-1, 1]; that is assumed without a card.

EDM publishes ``.pkl`` pickles of whole Python objects, which are never unpickled here (loading
one runs code). :data:`PICKLE_ADVICE` says how to turn one into a state dict once, in EDM's own
environment.
"""
from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path
from typing import Any

import torch

from ..errors import InputError, printable
from .adm import DiffusersCall
from .acceleration import AcceleratedNetwork, NetworkCall
from .base import Denoiser, PriorCard, sigma_as_batch
from .songunet import DhariwalUNet, DhariwalUNetConfig, SongUNet, SongUNetConfig

Tensor = torch.Tensor

CARD_KEY = "edm"
PRECONDS = ("edm", "ve", "vp")
#: sigma ranges of EDM's samplers for each preconditioning (VP: t from 1e-5 to 1)
SIGMA_RANGE = {"edm": (0.002, 80.0), "ve": (0.02, 100.0), "vp": (0.002, 80.0)}
PICKLE_ADVICE = ("convert it once in EDM's own environment (its repository on the Python path) with "
                 "`import pickle, torch; net = pickle.load(open('NET.pkl', 'rb'))['ema']; "
                 "torch.save(net.state_dict(), 'NET.pt')` and load NET.pt with a card beside it")


def pickle_refusal(path: Path) -> InputError:
    """The one sentence that refuses a pickle file and says how to convert an EDM one."""
    return InputError(f"Prior {path} is a Python pickle (the form EDM publishes its networks in), which is never "
                      f"loaded since unpickling runs code; {PICKLE_ADVICE}.")


def scalings(precond: str, sigma: Tensor, sigma_data: float = 0.5, beta_d: float = 19.9, beta_min: float = 0.1,
             steps: int = 1000) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(c_skip, c_out, c_in, c_noise)`` of EDM's Table 1 for ``sigma`` ((B,) tensor)."""
    if precond == "edm":
        d = sigma.square() + sigma_data**2
        return sigma_data**2 / d, sigma * sigma_data / d.sqrt(), 1 / d.sqrt(), sigma.log() / 4
    if precond == "ve":
        return torch.ones_like(sigma), sigma, torch.ones_like(sigma), (0.5 * sigma).log()
    if precond == "vp":
        t = ((beta_min**2 + 2 * beta_d * torch.log1p(sigma.square())).sqrt() - beta_min) / beta_d
        return torch.ones_like(sigma), -sigma, 1 / (sigma.square() + 1).sqrt(), (steps - 1) * t
    raise InputError(f"EDM preconditioning {printable(repr(precond))[:30]} is not known; valid are "
                     f"{', '.join(PRECONDS)}.")


class EDMDenoiser(AcceleratedNetwork, Denoiser):
    """``D(x, sigma)`` of a network ``F`` under one of EDM's preconditionings.

    ``input_scale`` a and ``input_offset`` b map the card's value range to the network's:
    the network denoises ``a x + b`` at noise ``a sigma`` (score-SDE networks trained on [0, 1]
    see ``2 x - 1``); the result is mapped back."""

    def __init__(self, network: torch.nn.Module, card: PriorCard, precond: str = "edm", sigma_data: float = 0.5,
                 input_scale: float = 1.0, input_offset: float = 0.0):
        super().__init__()
        scalings(precond, torch.ones(1))  # refuse an unknown preconditioning now
        self.unet = DiffusersCall(network.float().eval().requires_grad_(False))
        self.card, self.precond, self.sigma_data = card, precond, float(sigma_data)
        self.input_scale, self.input_offset = float(input_scale), float(input_offset)
        #: how the network's output becomes D(x, sigma), for ``prior check`` and provenance
        self.parameterisation = {"edm": f"EDM preconditioning (sigma_data {sigma_data:g})",
                                 "ve": "VE preconditioning: D = x + sigma F(x, log(sigma / 2))",
                                 "vp": "VP preconditioning (beta_d 19.9, beta_min 0.1, M 1000)"}[precond]
        self.weights_path: Path | None = None
        self.network_call: NetworkCall | None = None
        self.checkpointing = False

    @property
    def network(self) -> torch.nn.Module:
        return self.unet.model

    def forward(self, x: Tensor, sigma: Tensor | float) -> Tensor:
        a, b = self.input_scale, self.input_offset
        xn = a * x.float() + b
        s = a * sigma_as_batch(sigma, x)
        c_skip, c_out, c_in, c_noise = (c.reshape(-1, 1, 1, 1) for c in scalings(self.precond, s, self.sigma_data))
        net = self.network_call or (lambda u, v: self.unet(u, v).sample)
        out = net(c_in * xn, c_noise.reshape(-1)).float()
        return (c_skip * xn + c_out * out - b) / a


# ------------------------------------------------------------------------------------ layout
def strip_prefix(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Keys without the ``model.`` of EDM's precond wrapper or the ``module.`` of DataParallel."""
    for prefix in ("module.", "model."):
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def is_edm_state(state: dict[str, Any]) -> bool:
    keys = strip_prefix(dict(state)).keys()
    return "map_layer0.weight" in keys and any(re.match(r"enc\.\d+x\d+_conv\.weight$", k) for k in keys)


def _levels(state: dict[str, Tensor]) -> list[int]:
    return sorted({int(m.group(1)) for k in state for m in [re.match(r"enc\.(\d+)x\1_", k)] if m}, reverse=True)


def edm_layout(state: dict[str, Tensor], path: Path) -> SongUNetConfig | DhariwalUNetConfig:
    """The network configuration the parameter names and shapes show (one sentence if none)."""
    levels = _levels(state)
    conv = next((v for k, v in state.items() if re.match(r"enc\.\d+x\d+_conv\.weight$", k)), None)
    if not levels or conv is None or conv.ndim != 4 or "map_layer0.weight" not in state:
        raise InputError(f"EDM checkpoint {path} holds no EDM network (no map_layer0 and enc.NxN_conv).")
    if "map_label.weight" in state:
        raise InputError(f"EDM checkpoint {path} is class-conditional; only unconditional networks are supported.")
    size, in_c = levels[0], int(conv.shape[1])
    if [size >> i for i in range(len(levels))] != levels:
        raise InputError(f"EDM checkpoint {path} has levels {levels} that do not halve from one to the next.")
    blocks = {int(m.group(1)) for k in state for m in [re.match(rf"enc\.{size}x{size}_block(\d+)\.", k)] if m}
    nb = max(blocks) + 1 if blocks else 0
    widths = [state.get(f"enc.{r}x{r}_block0.conv0.weight") for r in levels]
    attn = tuple(r for r in levels if any(k.startswith(f"enc.{r}x{r}_block") and k.endswith(".qkv.weight")
                                          for k in state))
    aug = state.get("map_augment.weight")
    common = dict(img_resolution=size, in_channels=in_c, num_blocks=nb, attn_resolutions=attn,
                  augment_dim=int(aug.shape[1]) if aug is not None else 0)
    if nb == 0 or any(w is None for w in widths):
        raise InputError(f"EDM checkpoint {path} lacks the residual blocks of some level (enc.NxN_block0).")
    if "out_conv.weight" in state:  # DhariwalUNet: map_layer0 takes model_channels
        mc = int(state["map_layer0.weight"].shape[1])
        return DhariwalUNetConfig(out_channels=int(state["out_conv.weight"].shape[0]), model_channels=mc,
                                  channel_mult=tuple(int(w.shape[0]) // mc for w in widths),
                                  channel_mult_emb=int(state["map_layer0.weight"].shape[0]) // mc, **common)
    mc = int(conv.shape[0])
    out = state.get(f"dec.{size}x{size}_aux_conv.weight")
    filt = next((v for k, v in state.items() if k.endswith("resample_filter")), None)
    encoder = ("residual" if any("_aux_residual." in k for k in state) else
               "skip" if any("_aux_skip." in k for k in state) else "standard")
    return SongUNetConfig(
        out_channels=int(out.shape[0]) if out is not None else in_c, model_channels=mc,
        channel_mult=tuple(int(w.shape[0]) // mc for w in widths),
        channel_mult_emb=int(state["map_layer0.weight"].shape[0]) // mc,
        embedding_type="fourier" if "map_noise.freqs" in state else "positional",
        channel_mult_noise=int(state["map_layer0.weight"].shape[1]) // mc, encoder_type=encoder,
        decoder_type="skip" if sum(k.endswith("_aux_conv.weight") for k in state) > 1 else "standard",
        resample_filter=(1, 3, 3, 1) if filt is not None and filt.shape[-1] == 4 else (1, 1), **common)


def build_network(config) -> torch.nn.Module:
    with torch.device("meta"):
        return SongUNet(config) if isinstance(config, SongUNetConfig) else DhariwalUNet(config)


def load_network(config, state: dict[str, Tensor], path: Path, what: str = "EDM checkpoint") -> torch.nn.Module:
    """The network of ``config`` holding ``state`` (float32); one sentence when they disagree."""
    network = build_network(config)
    if config.out_channels != config.in_channels:
        raise InputError(f"{what} {path} outputs {config.out_channels} channels for {config.in_channels} in; "
                         "only networks that output the image are supported.")
    try:
        network.load_state_dict({k: v.float() for k, v in state.items()}, strict=True, assign=True)
    except RuntimeError as err:
        lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
        first = lines[1] if len(lines) > 1 else lines[0] if lines else type(err).__name__
        raise InputError(f"{what} {path} does not fit the {type(network).__name__} its names describe "
                         f"({printable(first)[:240]}).") from None
    return network


def edm_card(config, name: str, precond: str = "edm", sigma_data: float = 0.5,
             value_range=(-1.0, 1.0), sigma_range=None, description: str = "") -> PriorCard:
    lo, hi = sigma_range or SIGMA_RANGE[precond]
    return PriorCard(
        name=name, resolution=(config.img_resolution, config.img_resolution), channels=config.in_channels,
        value_range=tuple(value_range), sigma_min=lo, sigma_max=hi, schedule={"kind": "ve"},
        training_data="as declared by the network's authors (not recorded in the file)",
        description=description or f"EDM {type(config).__name__[:-6]} (Karras et al., NeurIPS 2022), {precond} "
                                   "preconditioning",
        extra={CARD_KEY: {"precond": precond, "sigma_data": sigma_data, "architecture": type(config).__name__[:-6],
                          "config": dataclasses.asdict(config)}})


def card_options(card: dict | None, path: Path) -> tuple[str, float]:
    """``(precond, sigma_data)`` from a card's ``extra.edm`` (defaults edm and 0.5)."""
    extra = (card or {}).get("extra", {})
    opts = extra.get(CARD_KEY, {}) if isinstance(extra, dict) else {}
    if not isinstance(opts, dict):
        raise InputError(f"The card of {path}: extra.{CARD_KEY} is not an object.")
    precond, sd = opts.get("precond", "edm"), opts.get("sigma_data", 0.5)
    if precond not in PRECONDS:
        raise InputError(f"The card of {path}: extra.edm.precond is {printable(repr(precond))[:30]}; valid are "
                         f"{', '.join(PRECONDS)}.")
    if isinstance(sd, bool) or not isinstance(sd, (int, float)) or not 0 < sd < math.inf:
        raise InputError(f"The card of {path}: extra.edm.sigma_data is {printable(repr(sd))[:30]}; expected a "
                         "positive number.")
    return precond, float(sd)


def load_edm_prior(path: str | Path, device: str | torch.device = "cpu",
                   state: dict[str, Tensor] | None = None) -> EDMDenoiser:
    """An EDM network's state dict (safetensors, or a ``.pt`` read with ``weights_only=True``) as
    a denoiser; the card beside it (``NAME.card.json`` or ``card.json``) adds what the weights
    cannot show. ``state``: the file's tensors when already read."""
    from .adm import read_state_dict
    from .adm_layout import card_beside, sidecar_card

    path = Path(path)
    if path.suffix.lower() in (".pkl", ".pickle"):
        raise pickle_refusal(path)
    state = strip_prefix(read_state_dict(path, "EDM checkpoint") if state is None else state)
    config = edm_layout(state, path)
    network = load_network(config, state, path)
    side = sidecar_card(path)
    precond, sd = card_options(side[1] if side else None, path)
    card = card_beside(edm_card(config, path.stem, precond, sd), side)
    denoiser = EDMDenoiser(network, card, precond, sd)
    denoiser.weights_path = path
    return denoiser.to(device).eval()
