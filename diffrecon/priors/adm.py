"""The ADM UNet of guided-diffusion as a prior: Dhariwal & Nichol, "Diffusion Models Beat GANs on
Image Synthesis", NeurIPS 2021 (architecture in Sec. 3, hyper-parameters in Table 10/App. B).

The network is the DDPM UNet (Ho et al., NeurIPS 2020) with the ADM changes:

* residual blocks whose second GroupNorm is modulated by the timestep embedding,
  ``GroupNorm(h) * (1 + s) + b`` with ``(s, b) = Linear(emb)`` ("adaptive group
  normalisation", Sec. 3, "AdaGN");
* BigGAN-style residual blocks for up- and down-sampling (``resblock_updown``);
* self-attention at several resolutions with a fixed number of channels per head
  (``num_head_channels``);
* learned variances (Nichol & Dhariwal, ICML 2021, Eq. 15): ``2 C`` output channels, the first
  ``C`` being the noise prediction epsilon, which is all the denoiser uses.

Module and parameter names follow guided-diffusion's ``unet.py`` exactly (``input_blocks.N.M``,
``middle_block``, ``output_blocks``, ``out``; ``in_layers.0``, ``emb_layers.1``, ``out_layers.3``,
``qkv``, ``proj_out``), so a user's existing checkpoint, e.g. ``256x256_diffusion_uncond.pt``,
loads with ``strict=True``. ``use_fp16`` of the original is not needed: the engine runs the
network under bf16 autocast, and GroupNorm is computed in float32 as in the original.

Checkpoints are read from safetensors, or from a ``.pt``/``.pth`` state dict only through
``torch.load(weights_only=True)``, which refuses any pickled object that is not a tensor.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn

from ..errors import InputError
from ..schedule import DDPM_SCHEDULE
from .base import PriorCard
from .diffusers_vp import VPEpsilonDenoiser, alphas_cumprod_from_schedule

Tensor = torch.Tensor

#: The beta schedule of both released 256x256 checkpoints (Ho et al. 2020, Sec. 4).
LINEAR_SCHEDULE = DDPM_SCHEDULE


@dataclass(frozen=True)
class ADMConfig:
    """The architecture flags of guided-diffusion's ``create_model`` (class-unconditional)."""

    image_size: int = 256
    in_channels: int = 3
    model_channels: int = 256
    num_res_blocks: int = 2
    #: resolutions in pixels with self-attention, as in guided-diffusion's flag "32,16,8"
    attention_resolutions: tuple[int, ...] = (32, 16, 8)
    channel_mult: tuple[int, ...] = (1, 1, 2, 2, 4, 4)
    num_heads: int = 4
    num_head_channels: int = 64  # -1: use num_heads heads instead
    learn_sigma: bool = True
    resblock_updown: bool = True
    use_scale_shift_norm: bool = True
    use_new_attention_order: bool = False
    dropout: float = 0.0

    @property
    def out_channels(self) -> int:
        return 2 * self.in_channels if self.learn_sigma else self.in_channels

    @property
    def attention_ds(self) -> frozenset[int]:
        """Down-sampling factors at which attention is applied (``image_size // resolution``)."""
        return frozenset(self.image_size // r for r in self.attention_resolutions)

    @classmethod
    def imagenet_256_uncond(cls) -> "ADMConfig":
        """``256x256_diffusion_uncond.pt`` (guided-diffusion README, "unconditional ImageNet")."""
        return cls()

    @classmethod
    def ffhq_256(cls) -> "ADMConfig":
        """The FFHQ 256 model of DPS / ILVR (``ffhq_10m.pt``): 128 channels, one block per level,
        attention at 16 px only (DPS's ``configs/model_config.yaml``)."""
        return cls(model_channels=128, num_res_blocks=1, attention_resolutions=(16,))


ADM_PRESETS = {"imagenet_256_uncond": ADMConfig.imagenet_256_uncond, "ffhq_256": ADMConfig.ffhq_256}


# ------------------------------------------------------------------------------------ layers
class GroupNorm32(nn.GroupNorm):
    """GroupNorm in float32 whatever the input dtype (guided-diffusion's ``normalization``)."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.float()).type(x.dtype)


def _norm(channels: int) -> GroupNorm32:
    return GroupNorm32(32, channels)


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal embedding of (possibly fractional) timesteps, cosines first (Vaswani et al.
    2017, Sec. 3.5, in guided-diffusion's order)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return F.pad(emb, (0, dim % 2))


class _Resample(nn.Module):
    """Nearest-neighbour up-sampling or 2x2 average pooling, optionally followed/done by a conv.
    The conv's attribute name (``conv`` up, ``op`` down) is the checkpoint's."""

    def __init__(self, channels: int, up: bool, use_conv: bool):
        super().__init__()
        self.up = up
        if use_conv and up:
            self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        elif use_conv:
            self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        if self.up:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
            return self.conv(x) if hasattr(self, "conv") else x
        return self.op(x) if hasattr(self, "op") else F.avg_pool2d(x, 2)


class ResBlock(nn.Module):
    """Residual block conditioned on the embedding; ``up``/``down`` resample inside the block
    (BigGAN, Brock et al. ICLR 2019, Fig. 15b)."""

    def __init__(self, channels: int, emb_channels: int, out_channels: int | None = None, *,
                 scale_shift: bool = True, dropout: float = 0.0, up: bool = False, down: bool = False):
        super().__init__()
        out_channels = out_channels or channels
        self.scale_shift = scale_shift
        self.in_layers = nn.Sequential(_norm(channels), nn.SiLU(), nn.Conv2d(channels, out_channels, 3, padding=1))
        self.updown = up or down
        if self.updown:
            self.h_upd = _Resample(channels, up, use_conv=False)
            self.x_upd = _Resample(channels, up, use_conv=False)
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, (2 if scale_shift else 1) * out_channels))
        self.out_layers = nn.Sequential(_norm(out_channels), nn.SiLU(), nn.Dropout(dropout),
                                        nn.Conv2d(out_channels, out_channels, 3, padding=1))
        self.skip_connection = nn.Identity() if out_channels == channels else nn.Conv2d(channels, out_channels, 1)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        if self.updown:  # resample between the norm/activation and the conv, as in the original
            h = self.in_layers[2](self.h_upd(self.in_layers[1](self.in_layers[0](x))))
            x = self.x_upd(x)
        else:
            h = self.in_layers(x)
        emb_out = self.emb_layers(emb).type(h.dtype)[..., None, None]
        if self.scale_shift:  # AdaGN (Dhariwal & Nichol 2021, Sec. 3)
            scale, shift = emb_out.chunk(2, dim=1)
            h = self.out_layers[0](h) * (1 + scale) + shift
            h = self.out_layers[3](self.out_layers[2](self.out_layers[1](h)))
        else:
            h = self.out_layers(h + emb_out)
        return self.skip_connection(x) + h


class AttentionBlock(nn.Module):
    """Multi-head self-attention over all pixels. ``qkv`` and ``proj_out`` are 1x1 Conv1d layers
    (their checkpoint shapes); the product runs in ``scaled_dot_product_attention`` (flash
    kernels on GPU), whose 1/sqrt(d) scale equals the original's 1/d^(1/4) on q and on k."""

    def __init__(self, channels: int, num_heads: int, num_head_channels: int, new_order: bool):
        super().__init__()
        self.heads = num_heads if num_head_channels == -1 else channels // num_head_channels
        if channels % self.heads:
            raise InputError(f"ADM attention: {channels} channels do not split into {self.heads} heads; "
                             "num_head_channels must divide the channel count.")
        self.new_order = new_order
        self.norm = _norm(channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj_out = nn.Conv1d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        b, c, *spatial = x.shape
        x = x.reshape(b, c, -1)
        qkv = self.qkv(self.norm(x))
        d, n = c // self.heads, x.shape[-1]
        if self.new_order:  # split q/k/v first, then heads
            q, k, v = (t.reshape(b, self.heads, d, n) for t in qkv.chunk(3, dim=1))
        else:  # legacy order of the released checkpoints: heads first, then q/k/v
            q, k, v = qkv.reshape(b, self.heads, 3 * d, n).split(d, dim=2)
        h = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2))
        h = h.transpose(-1, -2).reshape(b, c, n)
        return (x + self.proj_out(h)).reshape(b, c, *spatial)


class _EmbedSequential(nn.Sequential):
    """A Sequential that hands the embedding to the residual blocks."""

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        for layer in self:
            x = layer(x, emb) if isinstance(layer, ResBlock) else layer(x)
        return x


# ------------------------------------------------------------------------------------ network
class ADMUNet(nn.Module):
    """``eps = ADMUNet(config)(x_t, t)``: ``(B, 2C, H, W)`` with learned sigma, else ``(B, C, H, W)``."""

    def __init__(self, config: ADMConfig):
        super().__init__()
        cfg = self.config = config
        mc, emb_dim = cfg.model_channels, 4 * cfg.model_channels
        self.time_embed = nn.Sequential(nn.Linear(mc, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))

        def res(ch_in, ch_out, **kw):
            return ResBlock(ch_in, emb_dim, ch_out, scale_shift=cfg.use_scale_shift_norm, dropout=cfg.dropout, **kw)

        def attn(ch):
            return AttentionBlock(ch, cfg.num_heads, cfg.num_head_channels, cfg.use_new_attention_order)

        ch = int(cfg.channel_mult[0] * mc)
        self.input_blocks = nn.ModuleList([_EmbedSequential(nn.Conv2d(cfg.in_channels, ch, 3, padding=1))])
        skips, ds = [ch], 1
        for level, mult in enumerate(cfg.channel_mult):
            for _ in range(cfg.num_res_blocks):
                layers: list[nn.Module] = [res(ch, int(mult * mc))]
                ch = int(mult * mc)
                if ds in cfg.attention_ds:
                    layers.append(attn(ch))
                self.input_blocks.append(_EmbedSequential(*layers))
                skips.append(ch)
            if level != len(cfg.channel_mult) - 1:
                down = res(ch, ch, down=True) if cfg.resblock_updown else _Resample(ch, up=False, use_conv=True)
                self.input_blocks.append(_EmbedSequential(down))
                skips.append(ch)
                ds *= 2
        self.middle_block = _EmbedSequential(res(ch, ch), attn(ch), res(ch, ch))
        self.output_blocks = nn.ModuleList()
        for level, mult in list(enumerate(cfg.channel_mult))[::-1]:
            for i in range(cfg.num_res_blocks + 1):
                layers = [res(ch + skips.pop(), int(mc * mult))]
                ch = int(mc * mult)
                if ds in cfg.attention_ds:
                    layers.append(attn(ch))
                if level and i == cfg.num_res_blocks:
                    layers.append(res(ch, ch, up=True) if cfg.resblock_updown else _Resample(ch, up=True, use_conv=True))
                    ds //= 2
                self.output_blocks.append(_EmbedSequential(*layers))
        self.out = nn.Sequential(_norm(ch), nn.SiLU(), nn.Conv2d(int(cfg.channel_mult[0] * mc), cfg.out_channels, 3, padding=1))
        #: recompute each block in the backward pass instead of storing its activations (DPS memory)
        self.gradient_checkpointing = False

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        factor = 2 ** (len(self.config.channel_mult) - 1)
        if x.shape[-1] % factor or x.shape[-2] % factor:
            raise InputError(f"The ADM network takes images whose sides are multiples of {factor}; "
                             f"got {x.shape[-2]}x{x.shape[-1]}.")
        emb = self.time_embed(timestep_embedding(t.reshape(-1).expand(x.shape[0]), self.config.model_channels))
        if self.gradient_checkpointing and torch.is_grad_enabled():
            def run(block, *args):
                return torch.utils.checkpoint.checkpoint(block, *args, use_reentrant=False)
        else:
            def run(block, *args):
                return block(*args)
        hs, h = [], x
        for block in self.input_blocks:
            h = run(block, h, emb)
            hs.append(h)
        h = run(self.middle_block, h, emb)
        for block in self.output_blocks:
            h = run(block, torch.cat([h, hs.pop()], dim=1), emb)
        return self.out(h)


class _Output(NamedTuple):
    sample: Tensor


class DiffusersCall(nn.Module):
    """Gives a network returning a tensor the ``net(x_t, t).sample`` call of diffusers models,
    the convention of :class:`~diffrecon.priors.diffusers_vp.VPEpsilonDenoiser`."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: Tensor, t: Tensor) -> _Output:
        return _Output(self.model(x, t))


class ADMDenoiser(VPEpsilonDenoiser):
    """The VP adapter around an :class:`ADMUNet`; ``network`` is the bare ADM module."""

    @property
    def network(self) -> ADMUNet:
        return self.unet.model


# ------------------------------------------------------------------------------------ files
def read_checkpoint(path: str | Path, what: str = "ADM checkpoint"):
    """The object in a checkpoint file: the tensors of a safetensors file, or what a
    ``.pt``/``.pth`` file holds read with ``torch.load(weights_only=True)`` (never a plain
    unpickling: a pickle can run code); ``what`` names the file in the one-sentence refusals."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} {path} does not exist; give a .safetensors, .pt or .pth file.")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as err:
            raise InputError(f"{what} {path} is not a readable safetensors file ({err}).") from None
    if path.suffix not in (".pt", ".pth"):
        raise InputError(f"{what} {path} has the suffix {path.suffix!r}; valid are .safetensors, .pt and .pth.")
    from .tensor_pickle import load_tensors_only

    return load_tensors_only(path, what, "convert it to safetensors")


def read_state_dict(path: str | Path, what: str = "ADM checkpoint") -> dict[str, Tensor]:
    """The state dict (name -> tensor) of a checkpoint file (:func:`read_checkpoint`); a training
    checkpoint's ``state_dict``, ``model`` or ``ema`` entry when the file holds no tensor itself."""
    obj = read_checkpoint(path, what)
    if isinstance(obj, dict) and not any(torch.is_tensor(v) for v in obj.values()):
        obj = next((obj[k] for k in ("state_dict", "model", "ema") if isinstance(obj.get(k), dict)), obj)
    if not isinstance(obj, dict) or not obj or not all(torch.is_tensor(v) for v in obj.values()):
        raise InputError(f"{what} {path} does not hold a state dict of tensors.")
    return dict(obj)


def _shapes(config: ADMConfig) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        return {k: tuple(v.shape) for k, v in ADMUNet(config).state_dict().items()}


def match_preset(state: dict[str, Tensor], in_channels: int | None = None) -> ADMConfig | None:
    """The preset (for the checkpoint's channel count) whose parameter names and shapes are the
    checkpoint's, else None. Head counts do not show in the shapes: presets fix them."""
    weight = state.get("input_blocks.0.0.weight")
    c = in_channels or (int(weight.shape[1]) if weight is not None and weight.ndim == 4 else 3)
    got = {k: tuple(v.shape) for k, v in state.items()}
    for make in ADM_PRESETS.values():
        for learn_sigma in (True, False):
            cfg = dataclasses.replace(make(), in_channels=c, learn_sigma=learn_sigma)
            if _shapes(cfg) == got:
                return cfg
    return None


def adm_card(config: ADMConfig, name: str, training_data: str = "") -> PriorCard:
    """The card of an ADM checkpoint: images in [-1, 1], linear betas 1e-4..0.02 over 1000 steps."""
    return PriorCard(
        name=name, resolution=(config.image_size, config.image_size), channels=config.in_channels,
        value_range=(-1.0, 1.0), sigma_min=0.01, sigma_max=157.0, schedule=dict(LINEAR_SCHEDULE),
        training_data=training_data or "as declared by the checkpoint's authors (not recorded in the file)",
        description="guided-diffusion ADM UNet (Dhariwal & Nichol, NeurIPS 2021), epsilon prediction",
        extra={"adm_config": dataclasses.asdict(config)},
    )


def build_adm_denoiser(network: ADMUNet, card: PriorCard) -> ADMDenoiser:
    """An ADM network (float32, eval, parameters frozen) behind the VP adapter."""
    network = network.float().eval().requires_grad_(False)
    return ADMDenoiser(DiffusersCall(network), alphas_cumprod_from_schedule(card.schedule), card)


# ------------------------------------------------------------------------------------ cost
def count_flops(model: nn.Module, shape: tuple[int, ...], *inputs) -> int:
    """FLOPs (2 x multiply-adds) of one forward pass on a zero input of ``shape``: convolutions,
    linear layers and the two attention products (Q K^T and A V), counted by
    ``torch.utils.flop_counter.FlopCounterMode`` (bias additions, norms and softmax excluded).

    ``inputs`` follow ``x``; an :class:`ADMUNet` gets ``t = 0`` and a denoiser ``sigma = 1``
    when none are given. Attention runs in the math kernel here so that its matrix products
    are counted on every device (the CPU's fused kernel is unknown to the counter).
    """
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    x = torch.zeros(shape, device=device)
    if not inputs and isinstance(model, (ADMUNet, DiffusersCall)):
        inputs = (torch.zeros(shape[0], device=device),)
    elif not inputs and isinstance(model, VPEpsilonDenoiser):
        inputs = (1.0,)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), counter:
        model(x, *inputs)
    return int(counter.get_total_flops())
