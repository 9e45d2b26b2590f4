"""Which network a checkpoint file holds, and the loader for it (:func:`load_checkpoint_prior`).

A file is read once (safetensors, or ``torch.load(weights_only=True)``; never an unpickling of
objects) and recognised by its parameter names:

- ``all_modules.N``: a score-SDE NCSN++ network or training checkpoint (:mod:`.ncsnpp`);
- ``map_layer0`` with ``enc.NxN_conv``: an EDM SongUNet or DhariwalUNet (:mod:`.edm`);
- otherwise a guided-diffusion (ADM) UNet (:mod:`.adm_layout`), which names what it lacks.

``.pkl`` files (EDM's published networks are pickles) are refused with the conversion recipe.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..errors import InputError
from .base import Denoiser

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".safetensors")
PICKLE_SUFFIXES = (".pkl", ".pickle")
NETWORKS = ("a guided-diffusion UNet (time_embed.0, input_blocks.N, out.2), an EDM network (map_layer0, "
            "enc.NxN_conv) or a score-SDE NCSN++ (all_modules.N)")


def unwrap_state(obj: Any) -> Any:
    """The state dict inside a training checkpoint (``state_dict``, ``model`` or ``ema``), else ``obj``."""
    if isinstance(obj, dict) and not any(torch.is_tensor(v) for v in obj.values()):
        return next((obj[k] for k in ("state_dict", "model", "ema") if isinstance(obj.get(k), dict)), obj)
    return obj


def checkpoint_format(obj: Any) -> str:
    """``ncsnpp``, ``edm`` or ``adm`` (the fallback) for a checkpoint file's contents."""
    from .edm import is_edm_state
    from .ncsnpp import is_ncsnpp_state

    state = unwrap_state(obj)
    if not isinstance(state, dict):
        return "adm"
    if is_ncsnpp_state(state):
        return "ncsnpp"
    return "edm" if is_edm_state(state) else "adm"


def load_checkpoint_prior(path: str | Path, device: str | torch.device = "cpu") -> Denoiser:
    """The denoiser of the checkpoint file at ``path``: guided-diffusion, EDM or score-SDE NCSN++."""
    from .adm import read_checkpoint

    path = Path(path)
    if path.suffix.lower() in PICKLE_SUFFIXES:
        from .edm import pickle_refusal

        raise pickle_refusal(path)
    obj = read_checkpoint(path, "Prior checkpoint")
    kind = checkpoint_format(obj)
    if kind == "ncsnpp":
        from .ncsnpp import load_ncsnpp_prior

        return load_ncsnpp_prior(path, device, obj=obj)
    state = unwrap_state(obj)
    if not isinstance(state, dict) or not state or not all(torch.is_tensor(v) for v in state.values()):
        raise InputError(f"Prior checkpoint {path} does not hold a state dict of tensors.")
    if kind == "edm":
        from .edm import load_edm_prior

        return load_edm_prior(path, device, state=dict(state))
    from .adm_layout import layout_from_weights, load_adm_prior

    if layout_from_weights(state) is None:
        raise InputError(f"Prior checkpoint {path} holds none of the networks read here: {NETWORKS}.")
    return load_adm_prior(path, device=device, state=dict(state))
