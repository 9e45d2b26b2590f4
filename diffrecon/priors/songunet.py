"""The UNets of EDM (Karras, Aittala, Aila & Laine, "Elucidating the Design Space of
Diffusion-Based Generative Models", NeurIPS 2022; NVlabs ``edm``, ``training/networks.py``).

* :class:`SongUNet`: the DDPM++ and NCSN++ networks of score-SDE (Song et al., ICLR 2021)
  as EDM re-expressed them: positional (DDPM++) or random Fourier (NCSN++) noise embedding,
  a standard, skip or residual encoder pyramid, a standard or skip decoder, FIR resampling
  with ``[1, 1]`` or ``[1, 3, 3, 1]``, residual sums scaled by ``sqrt(1/2)``.
* :class:`DhariwalUNet`: guided-diffusion's ADM as EDM re-expressed it (adaptive group
  normalisation, 64 channels per attention head).

Module and parameter names are EDM's (``map_noise.freqs``, ``map_layer0``, ``enc.64x64_conv``,
``enc.32x32_down``, ``dec.16x16_in0``, ``norm0``, ``conv0``, ``affine``, ``qkv``, ``proj``,
``resample_filter`` buffers), so the state dict of an EDM network, ``net.state_dict()`` of the
``model`` inside ``EDMPrecond``, loads with ``strict=True``. Only the inference path is here.

deepinv (0.5.0) ports both networks under these names too (``NCSNpp``, ``ADMUNet``), but
``import deepinv`` loads torchvision and the whole library, and the PyPI torchvision wheel (0.28.0)
fails to import against the CPU build of torch 2.13.0 that CI installs; the two networks are small
enough to keep here instead of making deepinv an extra.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

Tensor = torch.Tensor


class Linear(nn.Module):
    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self.in_features = in_features
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / math.sqrt(in_features))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight.to(x.dtype), None if self.bias is None else self.bias.to(x.dtype))


class Conv2d(nn.Module):
    """A convolution (``kernel`` 0: none) after 2x FIR up- or down-sampling with ``resample_filter``;
    ``fused``: the convolution first when going down, and one padded transpose when going up."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, bias: bool = True, up: bool = False,
                 down: bool = False, resample_filter=(1, 1), fused: bool = False):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.up, self.down, self.fused = up, down, fused
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel, kernel) /
                                   math.sqrt(max(in_channels * kernel * kernel, 1))) if kernel else None
        self.bias = nn.Parameter(torch.zeros(out_channels)) if kernel and bias else None
        f = torch.as_tensor(resample_filter, dtype=torch.float32)
        self.register_buffer("resample_filter", (f.outer(f) / f.sum().square())[None, None] if up or down else None)

    def forward(self, x: Tensor) -> Tensor:
        w = None if self.weight is None else self.weight.to(x.dtype)
        f = None if self.resample_filter is None else self.resample_filter.to(x.dtype)
        w_pad = 0 if w is None else w.shape[-1] // 2
        f_pad = 0 if f is None else (f.shape[-1] - 1) // 2
        if self.fused and self.up and w is not None:
            x = F.conv_transpose2d(x, f.mul(4).tile(self.in_channels, 1, 1, 1), groups=self.in_channels, stride=2,
                                   padding=w_pad + f_pad)
            x = F.conv2d(x, w)
        elif self.fused and self.down and w is not None:
            x = F.conv2d(x, w, padding=w_pad + f_pad)
            x = F.conv2d(x, f.tile(self.out_channels, 1, 1, 1), groups=self.out_channels, stride=2)
        else:
            if self.up:
                x = F.conv_transpose2d(x, f.mul(4).tile(self.in_channels, 1, 1, 1), groups=self.in_channels,
                                       stride=2, padding=f_pad)
            if self.down:
                x = F.conv2d(x, f.tile(self.in_channels, 1, 1, 1), groups=self.in_channels, stride=2, padding=f_pad)
            if w is not None:
                x = F.conv2d(x, w, padding=w_pad)
        return x if self.bias is None else x + self.bias.to(x.dtype).reshape(1, -1, 1, 1)


class GroupNorm(nn.Module):
    """Group normalisation with at most 32 groups of at least 4 channels each."""

    def __init__(self, num_channels: int, eps: float = 1e-5):
        super().__init__()
        self.num_groups = min(32, num_channels // 4)
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))

    def forward(self, x: Tensor) -> Tensor:
        return F.group_norm(x, self.num_groups, self.weight.to(x.dtype), self.bias.to(x.dtype), self.eps)


class UNetBlock(nn.Module):
    """Residual block with optional resampling and self-attention after it."""

    def __init__(self, in_channels: int, out_channels: int, emb_channels: int, *, up=False, down=False,
                 attention=False, num_heads=None, channels_per_head=64, skip_scale=1.0, eps=1e-5,
                 resample_filter=(1, 1), resample_proj=False, adaptive_scale=True):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        heads = num_heads if num_heads is not None else out_channels // channels_per_head
        self.num_heads = heads if attention else 0
        self.skip_scale, self.adaptive_scale = skip_scale, adaptive_scale
        self.norm0 = GroupNorm(in_channels, eps=eps)
        self.conv0 = Conv2d(in_channels, out_channels, 3, up=up, down=down, resample_filter=resample_filter)
        self.affine = Linear(emb_channels, out_channels * (2 if adaptive_scale else 1))
        self.norm1 = GroupNorm(out_channels, eps=eps)
        self.conv1 = Conv2d(out_channels, out_channels, 3)
        self.skip = None
        if out_channels != in_channels or up or down:
            kernel = 1 if resample_proj or out_channels != in_channels else 0
            self.skip = Conv2d(in_channels, out_channels, kernel, up=up, down=down, resample_filter=resample_filter)
        if self.num_heads:
            self.norm2 = GroupNorm(out_channels, eps=eps)
            self.qkv = Conv2d(out_channels, out_channels * 3, 1)
            self.proj = Conv2d(out_channels, out_channels, 1)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        orig = x
        x = self.conv0(F.silu(self.norm0(x)))
        params = self.affine(emb)[:, :, None, None].to(x.dtype)
        if self.adaptive_scale:
            scale, shift = params.chunk(2, dim=1)
            x = F.silu(torch.addcmul(shift, self.norm1(x), scale + 1))
        else:
            x = F.silu(self.norm1(x + params))
        x = self.conv1(x)
        x = (x + (orig if self.skip is None else self.skip(orig))) * self.skip_scale
        if self.num_heads:
            b, c, h, w = x.shape
            # channels are interleaved (c0q, c0k, c0v, c1q, ...), per head
            q, k, v = self.qkv(self.norm2(x)).reshape(b * self.num_heads, c // self.num_heads, 3, h * w).unbind(2)
            a = F.scaled_dot_product_attention(q.transpose(1, 2).float(), k.transpose(1, 2).float(),
                                               v.transpose(1, 2).float()).to(x.dtype)
            x = (self.proj(a.transpose(1, 2).reshape(b, c, h, w)) + x) * self.skip_scale
        return x


def positional_embedding(x: Tensor, channels: int, endpoint: bool) -> Tensor:
    """Sinusoidal embedding (cosines first) with frequencies ``(1/10000)^(i / (channels/2 - endpoint))``."""
    half = channels // 2
    freqs = (1 / 10000) ** (torch.arange(half, dtype=torch.float32, device=x.device) / (half - (1 if endpoint else 0)))
    x = x.outer(freqs.to(x.dtype))
    return torch.cat([x.cos(), x.sin()], dim=1)


class FourierEmbedding(nn.Module):
    """Random Fourier features (the frequencies are a stored buffer), cosines first."""

    def __init__(self, num_channels: int, scale: float = 16.0):
        super().__init__()
        self.register_buffer("freqs", torch.randn(num_channels // 2) * scale)

    def forward(self, x: Tensor) -> Tensor:
        x = x.outer((2 * math.pi * self.freqs).to(x.dtype))
        return torch.cat([x.cos(), x.sin()], dim=1)


@dataclass(frozen=True)
class UNetConfig:
    """The arguments both of EDM's UNets take (unconditional ones); ``attn_resolutions`` in pixels."""

    img_resolution: int = 32
    in_channels: int = 3
    out_channels: int = 3
    augment_dim: int = 0
    model_channels: int = 128
    channel_mult: tuple[int, ...] = (2, 2, 2)
    channel_mult_emb: int = 4
    num_blocks: int = 4
    attn_resolutions: tuple[int, ...] = (16,)


@dataclass(frozen=True)
class SongUNetConfig(UNetConfig):
    """EDM's ``SongUNet``; the defaults are its NCSN++ (VE) configuration for CIFAR-10."""

    embedding_type: str = "fourier"  # positional: DDPM++
    channel_mult_noise: int = 2  # 1 for DDPM++
    encoder_type: str = "residual"  # standard | skip | residual
    decoder_type: str = "standard"  # standard | skip
    resample_filter: tuple[int, ...] = (1, 3, 3, 1)  # (1, 1) for DDPM++


def _decoder_head(dec: nn.ModuleDict, cfg: UNetConfig, level: int, channels: int, kw: dict) -> int:
    """Add a decoder level's first blocks: the middle pair (``in0`` with attention, ``in1``) at the
    lowest level, else the up-sampling block; return the level's resolution."""
    res = cfg.img_resolution >> level
    if level == len(cfg.channel_mult) - 1:
        dec[f"{res}x{res}_in0"] = UNetBlock(channels, channels, attention=True, **kw)
        dec[f"{res}x{res}_in1"] = UNetBlock(channels, channels, **kw)
    else:
        dec[f"{res}x{res}_up"] = UNetBlock(channels, channels, up=True, **kw)
    return res


class SongUNet(nn.Module):
    """``F(x, noise_label)`` of DDPM++ / NCSN++ (returns ``out_channels`` channels)."""

    def __init__(self, cfg: SongUNetConfig):
        super().__init__()
        self.config = cfg
        emb_ch, noise_ch = cfg.model_channels * cfg.channel_mult_emb, cfg.model_channels * cfg.channel_mult_noise
        kw = dict(emb_channels=emb_ch, num_heads=1, skip_scale=math.sqrt(0.5), eps=1e-6,
                  resample_filter=cfg.resample_filter, resample_proj=True, adaptive_scale=False)
        if cfg.embedding_type == "fourier":
            self.map_noise = FourierEmbedding(noise_ch)
        self.map_augment = Linear(cfg.augment_dim, noise_ch, bias=False) if cfg.augment_dim else None
        self.map_layer0 = Linear(noise_ch, emb_ch)
        self.map_layer1 = Linear(emb_ch, emb_ch)
        self.enc = nn.ModuleDict()
        cout = caux = cfg.in_channels
        for level, mult in enumerate(cfg.channel_mult):
            res = cfg.img_resolution >> level
            if level == 0:
                cout = cfg.model_channels
                self.enc[f"{res}x{res}_conv"] = Conv2d(cfg.in_channels, cout, 3)
            else:
                self.enc[f"{res}x{res}_down"] = UNetBlock(cout, cout, down=True, **kw)
                if cfg.encoder_type == "skip":
                    self.enc[f"{res}x{res}_aux_down"] = Conv2d(caux, caux, 0, down=True,
                                                               resample_filter=cfg.resample_filter)
                    self.enc[f"{res}x{res}_aux_skip"] = Conv2d(caux, cout, 1)
                if cfg.encoder_type == "residual":
                    self.enc[f"{res}x{res}_aux_residual"] = Conv2d(caux, cout, 3, down=True, fused=True,
                                                                   resample_filter=cfg.resample_filter)
                    caux = cout
            for idx in range(cfg.num_blocks):
                cin, cout = cout, cfg.model_channels * mult
                self.enc[f"{res}x{res}_block{idx}"] = UNetBlock(cin, cout, attention=res in cfg.attn_resolutions, **kw)
        skips = [block.out_channels for name, block in self.enc.items() if "aux" not in name]
        self.dec = nn.ModuleDict()
        for level, mult in reversed(list(enumerate(cfg.channel_mult))):
            res = _decoder_head(self.dec, cfg, level, cout, kw)
            for idx in range(cfg.num_blocks + 1):
                cin, cout = cout + skips.pop(), cfg.model_channels * mult
                attn = idx == cfg.num_blocks and res in cfg.attn_resolutions
                self.dec[f"{res}x{res}_block{idx}"] = UNetBlock(cin, cout, attention=attn, **kw)
            if cfg.decoder_type == "skip" or level == 0:
                if cfg.decoder_type == "skip" and level < len(cfg.channel_mult) - 1:
                    self.dec[f"{res}x{res}_aux_up"] = Conv2d(cfg.out_channels, cfg.out_channels, 0, up=True,
                                                             resample_filter=cfg.resample_filter)
                self.dec[f"{res}x{res}_aux_norm"] = GroupNorm(cout, eps=1e-6)
                self.dec[f"{res}x{res}_aux_conv"] = Conv2d(cout, cfg.out_channels, 3)

    def forward(self, x: Tensor, noise_labels: Tensor) -> Tensor:
        cfg = self.config
        if cfg.embedding_type == "fourier":
            emb = self.map_noise(noise_labels)
        else:
            emb = positional_embedding(noise_labels, cfg.model_channels * cfg.channel_mult_noise, endpoint=True)
        emb = emb.reshape(emb.shape[0], 2, -1).flip(1).reshape(emb.shape)  # sines first
        emb = F.silu(self.map_layer1(F.silu(self.map_layer0(emb))))
        skips, aux = [], x
        for name, block in self.enc.items():
            if "aux_down" in name:
                aux = block(aux)
            elif "aux_skip" in name:
                x = skips[-1] = x + block(aux)
            elif "aux_residual" in name:
                x = skips[-1] = aux = (x + block(aux)) / math.sqrt(2)
            else:
                x = block(x, emb) if isinstance(block, UNetBlock) else block(x)
                skips.append(x)
        aux = tmp = None
        for name, block in self.dec.items():
            if "aux_up" in name:
                aux = block(aux)
            elif "aux_norm" in name:
                tmp = block(x)
            elif "aux_conv" in name:
                tmp = block(F.silu(tmp))
                aux = tmp if aux is None else tmp + aux
            else:
                if x.shape[1] != block.in_channels:
                    x = torch.cat([x, skips.pop()], dim=1)
                x = block(x, emb)
        return aux


@dataclass(frozen=True)
class DhariwalUNetConfig(UNetConfig):
    """EDM's ``DhariwalUNet``; the defaults are its ImageNet-64 ones."""

    img_resolution: int = 64
    model_channels: int = 192
    channel_mult: tuple[int, ...] = (1, 2, 3, 4)
    num_blocks: int = 3
    attn_resolutions: tuple[int, ...] = (32, 16, 8)


class DhariwalUNet(nn.Module):
    """``F(x, noise_label)`` of ADM in EDM's form."""

    def __init__(self, cfg: DhariwalUNetConfig):
        super().__init__()
        self.config = cfg
        mc, emb_ch = cfg.model_channels, cfg.model_channels * cfg.channel_mult_emb
        kw = dict(emb_channels=emb_ch, channels_per_head=64)
        self.map_augment = Linear(cfg.augment_dim, mc, bias=False) if cfg.augment_dim else None
        self.map_layer0 = Linear(mc, emb_ch)
        self.map_layer1 = Linear(emb_ch, emb_ch)
        self.enc = nn.ModuleDict()
        cout = cfg.in_channels
        for level, mult in enumerate(cfg.channel_mult):
            res = cfg.img_resolution >> level
            if level == 0:
                cout = mc * mult
                self.enc[f"{res}x{res}_conv"] = Conv2d(cfg.in_channels, cout, 3)
            else:
                self.enc[f"{res}x{res}_down"] = UNetBlock(cout, cout, down=True, **kw)
            for idx in range(cfg.num_blocks):
                cin, cout = cout, mc * mult
                self.enc[f"{res}x{res}_block{idx}"] = UNetBlock(cin, cout, attention=res in cfg.attn_resolutions, **kw)
        skips = [block.out_channels for block in self.enc.values()]
        self.dec = nn.ModuleDict()
        for level, mult in reversed(list(enumerate(cfg.channel_mult))):
            res = _decoder_head(self.dec, cfg, level, cout, kw)
            for idx in range(cfg.num_blocks + 1):
                cin, cout = cout + skips.pop(), mc * mult
                self.dec[f"{res}x{res}_block{idx}"] = UNetBlock(cin, cout, attention=res in cfg.attn_resolutions, **kw)
        self.out_norm = GroupNorm(cout)
        self.out_conv = Conv2d(cout, cfg.out_channels, 3)

    def forward(self, x: Tensor, noise_labels: Tensor) -> Tensor:
        emb = positional_embedding(noise_labels, self.config.model_channels, endpoint=False)
        emb = F.silu(self.map_layer1(F.silu(self.map_layer0(emb))))
        skips = []
        for block in self.enc.values():
            x = block(x, emb) if isinstance(block, UNetBlock) else block(x)
            skips.append(x)
        for block in self.dec.values():
            if x.shape[1] != block.in_channels:
                x = torch.cat([x, skips.pop()], dim=1)
            x = block(x, emb)
        return self.out_conv(F.silu(self.out_norm(x)))
