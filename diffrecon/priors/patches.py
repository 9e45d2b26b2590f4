"""Network priors at any image size: the whole image through a fully convolutional network, or
overlapping patches of the trained size through any network.

A prior's card states the size it was trained at (``resolution``). At another size
:func:`sized_denoiser` returns a denoiser of the requested shape that runs in one of three modes,
recorded in its card (``extra["size"]``) and so in every result's provenance:

- ``native``: the network on the whole image, which is the trained size or, for a fully
  convolutional network, any multiple of its downsampling factor;
- ``padded``: the same after reflection padding to the next multiple of the factor, cropped back;
- ``patches``: overlapping patches of the trained size, each denoised at the same noise level,
  blended with a smooth window (Hu et al., "Learning image priors through patch-based diffusion
  models for solving inverse problems", NeurIPS 2024: the image prior is a product of patch
  priors over a patch grid whose offset is drawn anew at every noise level, so no seam stays put).

Fully convolutional or not is read from the card (``extra["any_size"]``) or, failing that, from
the network's config (no attention block anywhere), never found by trial.

**The shift and the random streams.** The grid offset is not drawn from a stateful generator:
the engine's rule is that each sample's randomness comes from its own stream, so that a result
does not depend on how samples are split into batches, and a generator advanced at every call
would give sample 5 other offsets in a batch of 8 than in the second batch of 4. The offset is a
counter-based random number keyed by ``(shift_seed, noise level)``: a hash of the seed and the
float32 bits of sigma, computed on the device (no host synchronisation, fixed tensor shapes for
CUDA graphs). Consequences: the denoiser stays a deterministic function of ``(x, sigma)`` (a
gradient, a finite difference or a Hutchinson probe at one level sees one denoiser), it draws
nothing from the samples' streams, and every sample at a given level sees the same grid, so the
seam positions are shared by the samples of a run (they move from level to level). A run's seed
passed as ``shift_seed`` gives another sequence of grids per seed.
"""
from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F

from ..errors import InputError
from .base import Denoiser, sigma_as_batch

Tensor = torch.Tensor

MODES = ("native", "padded", "patches")
HOW = ("auto", "whole", "patches")  # auto: whole image if fully convolutional, else patches
_MASK32 = 0xFFFFFFFF


def _shape_text(shape) -> str:
    return "x".join(str(int(v)) for v in shape)


# -------------------------------------------------------------------------------- the network
def network_config(denoiser) -> dict | None:
    """The diffusers config of a denoiser's network, if it has one."""
    config = getattr(getattr(denoiser, "unet", None), "config", None)
    return dict(config) if config is not None else None


def is_fully_convolutional(card, config: dict | None) -> bool:
    """Whether a network may run at any size: the card's ``extra["any_size"]`` when stated, else
    a UNet2DModel config without attention (a global operation, trained at one size)."""
    extra = card.extra or {}
    if "any_size" in extra:
        return bool(extra["any_size"])
    if not config:
        return False
    blocks = [*config.get("down_block_types", ()), *config.get("up_block_types", ()),
              str(config.get("mid_block_type") or "")]
    return not config.get("add_attention", True) and not any("Attn" in str(b) for b in blocks)


def downsampling_factor(card, config: dict | None) -> int:
    """The factor by which the network's levels shrink the image: 2^(levels - 1) for a
    UNet2DModel (its last down block keeps the size); the card's ``extra["size_multiple"]`` wins."""
    multiple = (card.extra or {}).get("size_multiple")
    if isinstance(multiple, int) and not isinstance(multiple, bool) and multiple >= 1:
        return multiple
    config = config or {}
    levels = len(config.get("down_block_types", ())) or len(config.get("block_out_channels", ())) or 1
    return 2 ** (levels - 1)


def size_mode(card, config: dict | None, image_shape, *, how: str = "auto", name: str = "") -> str:
    """How a network with this card and config denoises images of ``image_shape`` (C, H, W):
    native, padded or patches; InputError (one sentence) where it cannot. Reads no weights."""
    if how not in HOW:
        raise InputError(f"Prior size mode {how!r} is not known; valid are {', '.join(HOW)}.")
    label = name or card.name
    c, h, w = (int(v) for v in image_shape)
    ph, pw = card.resolution
    if c != card.channels:
        raise InputError(f"The prior {label!r} takes {card.channels}-channel images, not {c}; choose a prior with "
                         f"{c} channel(s) or the gaussian prior.")
    if (h, w) == (ph, pw) and how != "patches":
        return "native"
    if how == "whole" or (how == "auto" and is_fully_convolutional(card, config)):
        factor = downsampling_factor(card, config)
        if min(h, w) < factor:
            raise InputError(f"The prior {label!r} halves the image {int(math.log2(factor))} times, so an image of "
                             f"{_shape_text((h, w))} pixels is too small; it needs at least {factor}x{factor}.")
        return "native" if h % factor == 0 and w % factor == 0 else "padded"
    if 2 * h < ph or 2 * w < pw:
        raise InputError(f"The prior {label!r} runs on {ph}x{pw} patches (it was trained at that size and has "
                         f"attention), so an image of {_shape_text((h, w))} is too small: it needs at least "
                         f"{(ph + 1) // 2}x{(pw + 1) // 2} pixels; use a fully convolutional prior "
                         "(procedural) or the gaussian prior for smaller images.")
    return "patches"


# ----------------------------------------------------------------------------- the wrappers
class _SizedDenoiser(Denoiser):
    """A network denoiser seen at another image size; the network's settings pass through."""

    def __init__(self, inner: Denoiser, image_shape: tuple[int, int, int], info: dict):
        super().__init__()
        self.inner = inner
        self.bounded = inner.bounded
        self.size_info = dict(info)
        extra = {**(inner.card.extra or {}), "size": self.size_info}
        self.card = dataclasses.replace(inner.card, resolution=tuple(image_shape[1:]), extra=extra)

    @property
    def mode(self) -> str:
        return self.size_info["mode"]

    # what the engine and provenance read off a network denoiser
    @property
    def unet(self):
        return getattr(self.inner, "unet", None)

    @property
    def network_call(self):
        return getattr(self.inner, "network_call", None)

    @property
    def weights_path(self):
        return getattr(self.inner, "weights_path", None)

    def accelerate(self, *args, **kwargs):
        return self.inner.accelerate(*args, **kwargs)

    def discrete_sigmas(self):
        return self.inner.discrete_sigmas()


class PaddedDenoiser(_SizedDenoiser):
    """The network on the whole image, reflection-padded to a multiple of ``factor`` (centred),
    cropped back; without padding this is the ``native`` mode at a new size."""

    def __init__(self, inner: Denoiser, image_shape, factor: int):
        c, h, w = image_shape
        pad_h, pad_w = -h % factor, -w % factor
        pads = (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2)  # F.pad order
        mode = "padded" if pad_h or pad_w else "native"
        super().__init__(inner, image_shape, {"mode": mode, "trained_resolution": list(inner.card.resolution),
                                              "size_multiple": factor, "padding": list(pads)})
        self.pads = pads

    def forward(self, x: Tensor, sigma: Tensor | float) -> Tensor:
        if not any(self.pads):
            return self.inner(x, sigma)
        left, right, top, bottom = self.pads
        out = self.inner(F.pad(x, self.pads, mode="reflect"), sigma)
        return out[..., top:out.shape[-2] - bottom, left:out.shape[-1] - right]


def _window_1d(size: int, margin: int, ramp: int) -> Tensor:
    """0 on ``margin`` pixels at each end, a sin^2 ramp of ``ramp`` pixels, 1 in the middle:
    neighbours ``size - 2 margin - ramp`` apart sum to exactly 1 (sin^2 + cos^2)."""
    t = torch.arange(size, dtype=torch.float64)
    up = torch.sin(0.5 * math.pi * ((t - margin + 0.5) / ramp).clamp(0, 1)) ** 2
    down = torch.sin(0.5 * math.pi * ((size - margin - t - 0.5) / ramp).clamp(0, 1)) ** 2
    w = torch.minimum(up, down)
    w[(t < margin) | (t >= size - margin)] = 0
    return w.float()


def _hash32(v: Tensor) -> Tensor:
    """A 32-bit integer mixer on int64 tensors (every product stays below 2^59)."""
    for _ in range(2):
        v = (((v >> 16) ^ v) * 0x45D9F3B) & _MASK32
    return ((v >> 16) ^ v) & _MASK32


class _Axis:
    """The patch grid along one axis of length ``n``: patch ``p`` pixels, ``overlap`` shared by
    neighbours, ``margin`` unused at each patch edge; the grid's offset takes ``shifts`` values."""

    def __init__(self, n: int, p: int, overlap: int, margin: int):
        self.n, self.p = n, p
        self.stride = p - overlap
        if n + 2 * margin <= p:  # one patch holds the image: it may sit anywhere inside
            self.count, self.shifts = 1, p - 2 * margin - n + 1
        else:  # enough patches for the largest offset, so the shape never changes
            self.shifts = self.stride
            self.count = math.ceil((self.stride - 1 + n + 2 * margin - p) / self.stride) + 1
        self.length = (self.count - 1) * self.stride + p
        self.margin = margin

    def indices(self, shift: Tensor) -> Tensor:
        """``(B, length)``: the source pixel of each padded position (reflection, any depth)."""
        top = (self.margin + shift).reshape(-1, 1)
        i = torch.arange(self.length, device=shift.device).reshape(1, -1) - top
        if self.n == 1:
            return torch.zeros_like(i)
        period = 2 * (self.n - 1)
        i = torch.remainder(i, period)
        return torch.where(i >= self.n, period - i, i)

    def crop(self, shift: Tensor) -> Tensor:
        """``(B, n)``: the padded position of each image pixel."""
        return torch.arange(self.n, device=shift.device).reshape(1, -1) + (self.margin + shift).reshape(-1, 1)


def _take(x: Tensor, dim: int, index: Tensor) -> Tensor:
    """Per-sample ``x.index_select(dim, index[b])`` for ``x`` of shape (B, C, H, W), dim 2 or 3."""
    shape = [x.shape[0], x.shape[1], x.shape[2], x.shape[3]]
    shape[dim] = index.shape[1]
    view = [index.shape[0], 1, 1, 1]
    view[dim] = index.shape[1]
    return torch.gather(x, dim, index.reshape(view).expand(shape))


class PatchDenoiser(_SizedDenoiser):
    """Overlapping patches of the trained size, a grid offset per noise level (see the module
    docstring), blended with a smooth window; at most ``max_patches`` patches per network call."""

    def __init__(self, inner: Denoiser, image_shape, *, overlap: int | None = None, margin: int | None = None,
                 max_patches: int = 32, shift_seed: int = 0):
        c, h, w = image_shape
        ph, pw = inner.card.resolution
        overlap = max(ph, pw) // 4 if overlap is None else int(overlap)
        margin = max(ph, pw) // 16 if margin is None else int(margin)
        if not (0 <= margin and 2 * margin < overlap < min(ph, pw)) or max_patches < 1:
            raise InputError(f"Patch settings overlap {overlap}, margin {margin}, max_patches {max_patches} are invalid "
                             f"for {ph}x{pw} patches; valid: 0 <= 2 x margin < overlap < {min(ph, pw)}, "
                             "max_patches >= 1.")
        rows, cols = _Axis(h, ph, overlap, margin), _Axis(w, pw, overlap, margin)
        patches = rows.count * cols.count
        super().__init__(inner, image_shape, {
            "mode": "patches", "trained_resolution": [ph, pw], "patch": [ph, pw], "overlap": overlap,
            "margin": margin, "patches": patches, "max_patches": int(max_patches), "shift_seed": int(shift_seed),
            "relative_cost": round(patches * ph * pw / (h * w), 3)})
        self.rows, self.cols = rows, cols
        self.max_patches, self.shift_seed = int(max_patches), int(shift_seed)
        self.fill_chunks: bool | None = None  # fill the last chunk up to the others' size; None: on CUDA
        ramp = overlap - 2 * margin
        window = _window_1d(ph, margin, ramp)[:, None] * _window_1d(pw, margin, ramp)[None, :]
        self.register_buffer("window", window, persistent=False)
        ones = window.reshape(1, ph * pw, 1).expand(1, ph * pw, patches)
        self.register_buffer("weight", F.fold(ones, (rows.length, cols.length), (ph, pw),
                                              stride=(rows.stride, cols.stride)), persistent=False)

    def shifts(self, sigma: Tensor) -> tuple[Tensor, Tensor]:
        """The grid offsets (rows, columns) of each sample: a hash of (shift_seed, sigma's bits)."""
        bits = sigma.float().contiguous().view(torch.int32).long() & _MASK32
        key = _hash32(bits ^ _hash32(torch.full_like(bits, self.shift_seed & _MASK32)))
        return (_hash32(key ^ 0x68E31DA4) % self.rows.shifts, _hash32(key ^ 0x1B56C4E9) % self.cols.shifts)

    def forward(self, x: Tensor, sigma: Tensor | float) -> Tensor:
        b, c = x.shape[:2]
        (ph, pw), rows, cols = self.window.shape, self.rows, self.cols
        s = sigma_as_batch(sigma, x)
        dy, dx = self.shifts(s)
        padded = _take(_take(x, 2, rows.indices(dy)), 3, cols.indices(dx))
        tiles = padded.unfold(2, ph, rows.stride).unfold(3, pw, cols.stride)  # (B, C, ny, nx, ph, pw)
        per_image = rows.count * cols.count
        tiles = tiles.permute(0, 2, 3, 1, 4, 5).reshape(b * per_image, c, ph, pw)
        out = self._network(tiles, s.repeat_interleave(per_image)) * self.window
        out = out.reshape(b, per_image, c * ph * pw).transpose(1, 2)
        blended = F.fold(out, (rows.length, cols.length), (ph, pw), stride=(rows.stride, cols.stride))
        blended = blended / self.weight.clamp_min(1e-12)
        return _take(_take(blended, 2, rows.crop(dy)), 3, cols.crop(dx))

    def _network(self, tiles: Tensor, sigma: Tensor) -> Tensor:
        """The network on ``tiles`` in equal chunks of at most ``max_patches`` (on CUDA the last is
        filled up, so one recorded graph serves every chunk)."""
        n = tiles.shape[0]
        chunks = math.ceil(n / self.max_patches)
        size = math.ceil(n / chunks)
        outs = []
        for start in range(0, n, size):
            part, level = tiles[start:start + size], sigma[start:start + size]
            short = size - part.shape[0]
            if short and (tiles.is_cuda if self.fill_chunks is None else self.fill_chunks):
                part = torch.cat([part, part[-1:].expand(short, *part.shape[1:])])
                level = torch.cat([level, level[-1:].expand(short)])
            outs.append(self.inner(part, level)[:size - short])
        return torch.cat(outs) if len(outs) > 1 else outs[0]


# ----------------------------------------------------------------------------------- choosing
def sized_denoiser(inner: Denoiser, image_shape, *, how: str = "auto", name: str = "", **patch_options) -> Denoiser:
    """``inner`` (a network trained at ``inner.card.resolution``) as a denoiser of ``image_shape``
    (C, H, W), in the mode :func:`size_mode` names. ``how``: auto (the whole image if the network
    is fully convolutional, else patches), whole (the whole image even through attention, an
    explicit choice for comparisons) or patches. ``patch_options``: overlap, margin, max_patches,
    shift_seed of :class:`PatchDenoiser`. Every returned denoiser has ``size_info``."""
    config = network_config(inner)
    shape = tuple(int(v) for v in image_shape)
    mode = size_mode(inner.card, config, shape, how=how, name=name)
    if mode == "patches":
        return PatchDenoiser(inner, shape, **patch_options)
    if shape[1:] == tuple(inner.card.resolution):
        inner.size_info = {"mode": "native", "trained_resolution": list(inner.card.resolution)}
        return inner
    return PaddedDenoiser(inner, shape, downsampling_factor(inner.card, config))
