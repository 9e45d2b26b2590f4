"""Score-SDE NCSN++ checkpoints (Song et al., "Score-Based Generative Modeling through Stochastic
Differential Equations", ICLR 2021; ``score_sde_pytorch``, ``models/ncsnpp.py``) as priors.

A VE NCSN++ network estimates the score of images in [0, 1] blurred by noise sigma:
``s(x, sigma) = h(2 x - 1, log sigma) / sigma`` (``scale_by_sigma``; ``data.centered`` False), so
by Tweedie's formula

    D(x, sigma) = x + sigma^2 s(x, sigma) = x + sigma h(2 x - 1, log sigma).

EDM (Karras et al. 2022) re-expressed NCSN++ as its ``SongUNet`` and showed that its ``VEPrecond``
on [-1, 1] data is this same denoiser; so the network here is :class:`~.songunet.SongUNet` and
the checkpoint's parameters are renamed onto it (:func:`key_map`): score-SDE keeps every layer in
one list, ``all_modules.N``, in the order its forward pass uses them, and the map walks that order.

The NCSN++ options of score-SDE's ``configs/ve`` are read from the card's ``extra.ncsnpp`` (the
training config's ``model`` fields), else score-SDE's CIFAR-10 continuous VE defaults. Supported:
``resblock_type`` biggan, ``fir`` with ``[1, 3, 3, 1]``, ``skip_rescale``, ``embedding_type``
fourier, ``progressive`` none or output_skip, ``progressive_input`` none, residual or input_skip,
``progressive_combine`` sum, ``attention_type`` ddpm: every published VE NCSN++ configuration.

A training checkpoint (``checkpoint_N.pth``: ``model``, ``ema``, ``optimizer``, ``step``) is read
with ``torch.load(weights_only=True)``; its EMA weights (``ema.shadow_params``, the ones score-SDE
samples with) replace the raw ones, in parameter order.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch

from ..errors import InputError, printable
from .base import PriorCard
from .edm import EDMDenoiser, load_network
from .songunet import SongUNetConfig

Tensor = torch.Tensor
CARD_KEY = "ncsnpp"
PROGRESSIVE = ("none", "output_skip")
PROGRESSIVE_INPUT = ("none", "residual", "input_skip")
#: score-SDE model fields whose other values build another network than the one read here
FIXED = {"resblock_type": "biggan", "fir": True, "fir_kernel": (1, 3, 3, 1), "skip_rescale": True,
         "embedding_type": "fourier", "progressive_combine": "sum", "attention_type": "ddpm", "conditional": True,
         "scale_by_sigma": True, "conv_size": 3, "resamp_with_conv": True}


@dataclass(frozen=True)
class NCSNppConfig:
    """score-SDE ``config.model`` fields that shape NCSN++ (defaults: ``cifar10_ncsnpp_continuous``)."""

    nf: int = 128
    ch_mult: tuple[int, ...] = (1, 2, 2, 2)
    num_res_blocks: int = 4
    attn_resolutions: tuple[int, ...] = (16,)
    progressive: str = "none"
    progressive_input: str = "residual"
    centered: bool = False  # data.centered: the network's images lie in [-1, 1], not [0, 1]


def is_ncsnpp_state(state: dict[str, Any]) -> bool:
    return any(k.startswith(("all_modules.", "module.all_modules.")) for k in state)


def song_config(cfg: NCSNppConfig, size: int, channels: int) -> SongUNetConfig:
    return SongUNetConfig(
        img_resolution=size, in_channels=channels, out_channels=channels, model_channels=cfg.nf,
        channel_mult=tuple(cfg.ch_mult), num_blocks=cfg.num_res_blocks, attn_resolutions=tuple(cfg.attn_resolutions),
        embedding_type="fourier", channel_mult_noise=2,
        encoder_type={"none": "standard", "residual": "residual", "input_skip": "skip"}[cfg.progressive_input],
        decoder_type="skip" if cfg.progressive == "output_skip" else "standard", resample_filter=(1, 3, 3, 1))


def _modules(cfg: NCSNppConfig, size: int) -> Iterator[tuple[str, str]]:
    """``(SongUNet prefix, kind)`` for each entry of ``all_modules`` in order, as score-SDE's first
    release builds it (the pyramids' parameterless FIR resamplers are attributes, not entries).
    Kinds: fourier, linear, conv, norm, combine, res (BigGAN block), attn."""
    levels = len(cfg.ch_mult)

    def r(level: int) -> str:
        return f"{size >> level}x{size >> level}"

    yield "map_noise", "fourier"
    yield "map_layer0", "linear"
    yield "map_layer1", "linear"
    yield f"enc.{r(0)}_conv", "conv"
    for level in range(levels):
        for i in range(cfg.num_res_blocks):
            yield f"enc.{r(level)}_block{i}", "res"
            if size >> level in cfg.attn_resolutions:
                yield f"enc.{r(level)}_block{i}", "attn"
        if level != levels - 1:
            yield f"enc.{r(level + 1)}_down", "res"
            if cfg.progressive_input == "input_skip":  # its FIR resampling has no parameters nor entry
                yield f"enc.{r(level + 1)}_aux_skip", "combine"
            elif cfg.progressive_input == "residual":
                yield f"enc.{r(level + 1)}_aux_residual", "conv"
    last = r(levels - 1)
    yield f"dec.{last}_in0", "res"
    yield f"dec.{last}_in0", "attn"
    yield f"dec.{last}_in1", "res"
    for level in reversed(range(levels)):
        for i in range(cfg.num_res_blocks + 1):
            yield f"dec.{r(level)}_block{i}", "res"
        if size >> level in cfg.attn_resolutions:
            yield f"dec.{r(level)}_block{cfg.num_res_blocks}", "attn"
        if cfg.progressive == "output_skip":
            yield f"dec.{r(level)}_aux_norm", "norm"
            yield f"dec.{r(level)}_aux_conv", "conv"
        if level != 0:
            yield f"dec.{r(level - 1)}_up", "res"
    if cfg.progressive != "output_skip":
        yield f"dec.{r(0)}_aux_norm", "norm"
        yield f"dec.{r(0)}_aux_conv", "conv"


_RES = {"GroupNorm_0": "norm0", "Conv_0": "conv0", "Dense_0": "affine", "GroupNorm_1": "norm1", "Conv_1": "conv1",
        "Conv_2": "skip"}


def key_map(cfg: NCSNppConfig, size: int) -> list[tuple[str, str, str]]:
    """``(score-SDE key, SongUNet key, how)`` for every parameter; ``how`` is copy, or q/k/v
    (an attention projection ``NIN_j.W``, stored as ``x @ W``, that goes transposed into the
    interleaved rows of ``qkv``) or t (``NIN_3.W`` transposed into ``proj``)."""
    rows: list[tuple[str, str, str]] = []
    for index, (prefix, kind) in enumerate(_modules(cfg, size)):
        src = f"all_modules.{index}"
        if kind == "fourier":
            rows.append((f"{src}.W", "map_noise.freqs", "copy"))
        elif kind in ("linear", "conv", "norm"):
            sub = ".Conv2d_0" if prefix.endswith("aux_residual") else ""  # the pyramid's FIR-down conv
            rows += [(f"{src}{sub}.{p}", f"{prefix}.{p}", "copy") for p in ("weight", "bias")]
        elif kind == "combine":
            rows += [(f"{src}.Conv_0.{p}", f"{prefix}.{p}", "copy") for p in ("weight", "bias")]
        elif kind == "res":
            rows += [(f"{src}.{a}.{p}", f"{prefix}.{b}.{p}", "copy") for a, b in _RES.items()
                     for p in ("weight", "bias")]
        elif kind == "attn":
            rows += [(f"{src}.GroupNorm_0.{p}", f"{prefix}.norm2.{p}", "copy") for p in ("weight", "bias")]
            rows += [(f"{src}.NIN_{j}.{a}", f"{prefix}.qkv.{b}", "qkv"[j]) for j in range(3)
                     for a, b in (("W", "weight"), ("b", "bias"))]
            rows += [(f"{src}.NIN_3.W", f"{prefix}.proj.weight", "t"),
                     (f"{src}.NIN_3.b", f"{prefix}.proj.bias", "copy")]
    return rows


def to_song_state(state: dict[str, Tensor], cfg: NCSNppConfig, size: int, path: Path) -> dict[str, Tensor]:
    """The SongUNet state dict of a score-SDE NCSN++ state dict (one sentence when names are missing)."""
    rows = key_map(cfg, size)
    present = {row[0] for row in rows if row[0] in state}
    skip_absent = {row[0] for row in rows if row[1].endswith(".skip.weight") or row[1].endswith(".skip.bias")}
    missing = [row[0] for row in rows if row[0] not in state and row[0] not in skip_absent]
    extra = [k for k in state if k not in present and k != "sigmas"]
    if missing or extra:
        what = f"lacks {missing[0]}" if missing else f"has {printable(extra[0])[:60]}, which it should not"
        raise InputError(f"NCSN++ checkpoint {path} {what} for the configuration {_describe(cfg)}; declare the "
                         "training config's model fields under extra.ncsnpp in its card.")
    out: dict[str, Tensor] = {}
    qkv: dict[str, dict[str, Tensor]] = {}
    for src, dst, how in rows:
        if src not in state:
            continue
        v = state[src]
        if how == "copy":
            out[dst] = v
        elif how == "t":
            out[dst] = v.t()[:, :, None, None]
        else:  # NIN W (in, out) or b (out,), one of q, k, v
            qkv.setdefault(dst, {})[how] = v.t() if v.ndim == 2 else v
    for dst, parts in qkv.items():  # SongUNet reads channel c of q, k, v at rows 3c, 3c + 1, 3c + 2
        stacked = torch.stack([parts["q"], parts["k"], parts["v"]], dim=1)
        out[dst] = (stacked.reshape(-1, stacked.shape[2])[..., None, None] if stacked.ndim == 3
                    else stacked.reshape(-1))
    return out


def _describe(cfg: NCSNppConfig) -> str:
    return (f"nf {cfg.nf}, ch_mult {list(cfg.ch_mult)}, num_res_blocks {cfg.num_res_blocks}, attn_resolutions "
            f"{list(cfg.attn_resolutions)}, progressive {cfg.progressive}, progressive_input {cfg.progressive_input}")


def ncsnpp_options(card: dict | None, path: Path) -> NCSNppConfig:
    """The NCSN++ configuration a card declares under ``extra.ncsnpp`` over the defaults."""
    extra = (card or {}).get("extra", {})
    opts = extra.get(CARD_KEY, {}) if isinstance(extra, dict) else {}
    if not isinstance(opts, dict):
        raise InputError(f"The card of {path}: extra.{CARD_KEY} is not an object.")
    fixed = [k for k, v in FIXED.items() if k in opts and opts[k] != v and not (isinstance(v, tuple) and
                                                                            list(v) == opts[k])]
    if fixed:
        raise InputError(f"The card of {path}: extra.ncsnpp.{fixed[0]} is {printable(repr(opts[fixed[0]]))[:40]}; "
                         f"only {FIXED[fixed[0]]!r} is supported (score-SDE's NCSN++ VE networks).")
    fields = {f.name for f in dataclasses.fields(NCSNppConfig)}
    cfg = NCSNppConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in opts.items() if k in fields})
    ints = [cfg.nf, cfg.num_res_blocks, *cfg.ch_mult, *cfg.attn_resolutions]
    if (not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 4096 for v in ints)
            or not 1 <= len(cfg.ch_mult) <= 10 or cfg.num_res_blocks > 16 or cfg.progressive not in PROGRESSIVE
            or cfg.progressive_input not in PROGRESSIVE_INPUT or not isinstance(cfg.centered, bool)):
        raise InputError(f"The card of {path}: extra.ncsnpp {printable(repr(opts))[:120]} is not a supported NCSN++ "
                         f"configuration (whole numbers; progressive {'/'.join(PROGRESSIVE)}, progressive_input "
                         f"{'/'.join(PROGRESSIVE_INPUT)}, centered true/false).")
    return cfg


def ema_state(obj: Any, path: Path) -> dict[str, Tensor]:
    """The network's state from a score-SDE training checkpoint (EMA weights when it holds them),
    or the state dict a file holds; ``module.`` prefixes dropped."""
    model = obj.get("model") if isinstance(obj, dict) and isinstance(obj.get("model"), dict) else obj
    if not isinstance(model, dict) or not model or not all(torch.is_tensor(v) for v in model.values()):
        raise InputError(f"NCSN++ checkpoint {path} holds no state dict of tensors (a score-SDE checkpoint has one "
                         "under 'model').")
    state = {k.removeprefix("module."): v for k, v in model.items()}
    shadow = obj.get("ema", {}).get("shadow_params") if isinstance(obj.get("ema"), dict) else None
    if isinstance(shadow, (list, tuple)):
        # score-SDE's EMA keeps the parameters that train, in order: all but the Fourier frequencies
        names = [k for k in state if k != "sigmas" and k != "all_modules.0.W"]
        if len(names) != len(shadow) or any(not torch.is_tensor(s) or s.shape != state[n].shape
                                            for n, s in zip(names, shadow)):
            raise InputError(f"NCSN++ checkpoint {path}: its ema.shadow_params ({len(shadow)}) do not match the "
                             f"{len(names)} trained parameters of its model.")
        state.update(zip(names, shadow))
    return state


def load_ncsnpp_prior(path: str | Path, device: str | torch.device = "cpu", obj: Any = None) -> EDMDenoiser:
    """A score-SDE NCSN++ checkpoint as a denoiser on ``device``; the card beside it declares its
    ``extra.ncsnpp`` model fields, resolution, sigma range and value range. ``obj``: the file's
    contents when already read."""
    from .adm import read_checkpoint
    from .adm_layout import card_beside, sidecar_card

    path = Path(path)
    state = ema_state(read_checkpoint(path, "NCSN++ checkpoint") if obj is None else obj, path)
    side = sidecar_card(path)
    declared = side[1] if side else {}
    cfg = ncsnpp_options(declared, path)
    conv = state.get("all_modules.3.weight")
    if conv is None or conv.ndim != 4:
        raise InputError(f"NCSN++ checkpoint {path} lacks all_modules.3.weight, the input convolution.")
    res = declared.get("resolution")
    size = res[0] if isinstance(res, (list, tuple)) and res else None
    if (not isinstance(size, int) or isinstance(size, bool) or not 8 <= size <= 4096
            or size >> (len(cfg.ch_mult) - 1) < 1):
        raise InputError(f"NCSN++ checkpoint {path} does not record its image size; put {path.name}.card.json "
                         "declaring \"resolution\": [size, size] (and its extra.ncsnpp model fields) beside it.")
    channels = int(conv.shape[1])
    extra = declared.get("extra") if isinstance(declared.get("extra"), dict) else {}
    if "nf" not in (extra.get(CARD_KEY) if isinstance(extra.get(CARD_KEY), dict) else {}):
        cfg = dataclasses.replace(cfg, nf=int(conv.shape[0]))  # the input convolution's width
    song = song_config(cfg, size, channels)
    network = load_network(song, _with_buffers(to_song_state(state, cfg, size, path), song), path, "NCSN++ checkpoint")
    scale, offset = (1.0, 0.0) if cfg.centered else (2.0, -1.0)
    lo, hi = (-1.0, 1.0) if cfg.centered else (0.0, 1.0)
    card = PriorCard(
        name=path.stem, resolution=(size, size), channels=channels, value_range=(lo, hi), sigma_min=0.01,
        sigma_max=50.0, schedule={"kind": "ve"}, description="score-SDE NCSN++ (Song et al., ICLR 2021), "
        "VE score network", training_data="as declared by the network's authors (not recorded in the file)",
        extra={CARD_KEY: dataclasses.asdict(cfg)})
    card = card_beside(card, side)
    denoiser = EDMDenoiser(network, card, "ve", input_scale=scale, input_offset=offset)
    denoiser.parameterisation = (f"VE score network: D = x + sigma^2 s, s = h({'x' if cfg.centered else '2x - 1'}, "
                                 "log sigma) / sigma")
    denoiser.weights_path = path
    return denoiser.to(device).eval()


def _with_buffers(state: dict[str, Tensor], config: SongUNetConfig) -> dict[str, Tensor]:
    """``state`` with the FIR filters SongUNet stores as buffers (score-SDE keeps them in code)."""
    from .edm import build_network

    buffers = {k: v for k, v in build_network(config).state_dict().items() if k.endswith("resample_filter")}
    f = torch.tensor([1.0, 3.0, 3.0, 1.0])
    return {**{k: (f.outer(f) / f.sum().square())[None, None] for k in buffers}, **state}
