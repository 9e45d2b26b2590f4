"""The architecture of a guided-diffusion checkpoint read from its parameter names and shapes,
the card a user puts beside a checkpoint, and :func:`load_adm_prior`, which loads one.

guided-diffusion's ``create_model`` flags that show in the weights are read from them:
``model_channels`` (``time_embed.0``), ``in_channels`` (``input_blocks.0.0``), ``learn_sigma``
(``out.2`` has ``2 C`` outputs), ``num_res_blocks`` and ``channel_mult`` (the number of input and
output blocks and each level's width; any multipliers, e.g. ``1,1,2,3,4``),
``attention_resolutions`` (the levels whose blocks hold ``qkv``), ``resblock_updown`` (a
residual block or a strided ``op`` convolution between levels) and ``use_scale_shift_norm``
(the width of ``emb_layers.1``). What the weights do not show comes from the card beside the
checkpoint (``<name>.card.json`` or ``card.json`` in its folder): the image size (``resolution``),
the heads (``extra.adm_config.num_head_channels`` or ``num_heads``, default 64 channels per
head as in guided-diffusion), ``use_new_attention_order``, and the value range, schedule and
training data. Every guess is checked: the inferred configuration must give exactly the
checkpoint's names and shapes.
"""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import torch

from ..errors import InputError, printable
from .adm import (ADM_PRESETS, ADMConfig, ADMDenoiser, ADMUNet, _shapes, adm_card, build_adm_denoiser, match_preset,
                  read_state_dict)
from .base import read_json

#: ADMConfig fields a card may set under ``extra.adm_config`` (what the weights cannot show).
CARD_FIELDS = ("num_heads", "num_head_channels", "use_new_attention_order", "image_size")
_MAX_BLOCKS = 8


def sidecar_card(path: Path) -> tuple[Path, dict[str, Any]] | None:
    """The card beside a checkpoint (``<name>.card.json``, else ``card.json``) as a JSON object."""
    for card in (path.with_name(path.name + ".card.json"), path.with_name(path.stem + ".card.json"),
                 path.with_name("card.json")):
        if card.is_file():
            d = read_json(card, "Prior card")
            if not isinstance(d, dict):
                raise InputError(f"Prior card {card} holds {type(d).__name__}, not a JSON object.")
            return card, d
    return None


def _indices(state: dict, prefix: str) -> int:
    found = {int(m.group(1)) for k in state for m in [re.match(rf"{prefix}\.(\d+)\.", k)] if m}
    return max(found) + 1 if found else 0


def layout_from_weights(state: dict[str, torch.Tensor]) -> dict[str, Any] | None:
    """The create_model flags the weights show (a dict of ADMConfig fields, attention as
    down-sampling factors under ``attention_ds``), or None when they are not an ADM UNet's."""
    try:
        mc = int(state["time_embed.0.weight"].shape[1])
        in_c = int(state["input_blocks.0.0.weight"].shape[1])
        out_c = int(state["out.2.weight"].shape[0])
    except (KeyError, IndexError, AttributeError):
        return None
    if mc < 1 or out_c not in (in_c, 2 * in_c):
        return None
    n_in, n_out = _indices(state, "input_blocks"), _indices(state, "output_blocks")
    for nrb in range(1, _MAX_BLOCKS + 1):
        if n_out % (nrb + 1):
            continue
        levels = n_out // (nrb + 1)
        if n_in != 1 + levels * nrb + levels - 1:
            continue
        mult, attention = [], []
        for level in range(levels):
            first = 1 + level * (nrb + 1)
            w = state.get(f"input_blocks.{first}.0.in_layers.2.weight")
            if w is None or int(w.shape[0]) % mc:
                break
            mult.append(int(w.shape[0]) // mc)
            if f"input_blocks.{first}.1.qkv.weight" in state:
                attention.append(2 ** level)
        if len(mult) != levels:
            continue
        updown = levels == 1 or f"input_blocks.{nrb + 1}.0.op.weight" not in state
        emb = state.get("input_blocks.1.0.emb_layers.1.weight")
        scale_shift = emb is not None and int(emb.shape[0]) == 2 * mult[0] * mc
        return {"in_channels": in_c, "model_channels": mc, "num_res_blocks": nrb, "channel_mult": tuple(mult),
                "learn_sigma": out_c == 2 * in_c, "resblock_updown": updown, "use_scale_shift_norm": scale_shift,
                "attention_ds": tuple(attention)}
    return None


def infer_config(state: dict[str, torch.Tensor], path: Path, card: dict[str, Any] | None):
    """The ADMConfig of ``state``: the weights' layout with what ``card`` adds (image size, heads).
    One sentence when the layout is no ADM UNet's, the size is unknown, or the shapes disagree."""
    layout = layout_from_weights(state)
    if layout is None:
        raise InputError(f"Checkpoint {path} is not a guided-diffusion UNet (it lacks time_embed.0, "
                         "input_blocks.0.0, out.2 or their block structure).")
    card = card or {}
    extra = card.get("extra", {}).get("adm_config", {}) if isinstance(card.get("extra"), dict) else {}
    if not isinstance(extra, dict):
        raise InputError(f"The card of {path}: extra.adm_config is not an object.")
    resolution = card.get("resolution")
    size = extra.get("image_size", resolution[0] if isinstance(resolution, (list, tuple)) and resolution else None)
    if not isinstance(size, int) or isinstance(size, bool) or not 8 <= size <= 4096:
        raise InputError(f"ADM checkpoint {path} matches none of the presets {', '.join(ADM_PRESETS)} and does not "
                         f"record its image size (a card gives {printable(repr(size))[:30]}); put {path.name}.card.json "
                         "declaring \"resolution\": [size, size] beside it, or pass its ADMConfig.")
    ds = layout.pop("attention_ds")
    heads = {k: extra[k] for k in CARD_FIELDS if k in extra and k != "image_size"}
    try:
        config = ADMConfig(image_size=size, attention_resolutions=tuple(size // d for d in ds), **layout, **heads)
        got = {k: tuple(v.shape) for k, v in state.items()}
        if _shapes(config) != got:
            raise InputError(f"Checkpoint {path}: no guided-diffusion configuration gives its parameter names and "
                             f"shapes (closest: {dataclasses.asdict(config)}).")
    except (TypeError, ValueError, ZeroDivisionError) as err:
        if isinstance(err, InputError):
            raise
        raise InputError(f"The card of {path}: extra.adm_config {printable(repr(heads))[:80]} is not valid "
                         f"({printable(err)[:80]}).") from None
    return config


def card_beside(card, side: tuple[Path, dict[str, Any]] | None):
    """``card`` (a PriorCard) with what the card beside the checkpoint declares (value range,
    schedule, training data, ...); its resolution and channels must be the network's."""
    from .base import PriorCard

    if side is None:
        return card
    source, declared = side
    merged = {**dataclasses.asdict(card), **{k: v for k, v in declared.items() if k != "extra"}}
    if isinstance(declared.get("extra"), dict):
        merged["extra"] = {**card.extra, **declared["extra"]}
    out = PriorCard.from_dict(merged, str(source))
    if tuple(out.resolution) != tuple(card.resolution) or out.channels != card.channels:
        raise InputError(f"Prior card {source} declares {out.channels} channel(s) at {tuple(out.resolution)}, but the "
                         f"checkpoint's network has {card.channels} at {tuple(card.resolution)}.")
    return out


def load_adm_prior(path: str | Path, config: ADMConfig | None = None,
                   device: str | torch.device = "cpu", state: dict[str, torch.Tensor] | None = None) -> ADMDenoiser:
    """A guided-diffusion checkpoint as a denoiser on ``device``.

    ``config`` None picks the preset whose parameter shapes the checkpoint has
    (:data:`ADM_PRESETS`); give it for any other architecture. ``state``: the file's tensors
    when already read.
    """
    path = Path(path)
    state = read_state_dict(path) if state is None else state
    if "label_emb.weight" in state:
        raise InputError(f"ADM checkpoint {path} is class-conditional; only unconditional checkpoints are supported.")
    side = sidecar_card(path)
    if config is None:  # a preset, else the layout of the weights and the card beside them (adm_layout)
        config = match_preset(state) if side is None or "resolution" not in side[1] else None
        config = config or infer_config(state, path, side[1] if side else None)
    with torch.device("meta"):
        network = ADMUNet(config)
    try:
        network.load_state_dict({k: v.float() for k, v in state.items()}, strict=True, assign=True)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0]
        raise InputError(f"ADM checkpoint {path} does not fit the given ADMConfig ({first[:300]}).") from None
    denoiser = build_adm_denoiser(network, card_beside(adm_card(config, path.stem), side))
    denoiser.weights_path = path
    return denoiser.to(device).eval()
