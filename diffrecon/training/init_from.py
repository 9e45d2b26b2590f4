"""``diffrecon train --init-from FOLDER``: start a new run from the weights of an existing prior.

The network and its moving average both start from the folder's (fp16, EMA) weights, with a
fresh AdamW state (its moments belong to the old run's trajectory, which the fp16 EMA weights are
not on) and the step counter at 0, so the learning-rate warm-up runs again. The card written at the
end records the total number of training steps (the folder card's ``extra.training_steps`` plus
the new ones) and ``init_from`` (folder name and sha256 of its weights file).

Weights are read with safetensors only: a pickle can run code when loaded.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import InputError, printable
from ..priors.diffusers_vp import WEIGHTS_FILE, check_prior_folder


@dataclass(frozen=True)
class InitSource:
    """What ``--init-from`` read: the architecture of the folder's network and its weights."""

    folder: Path
    size: int
    channels: tuple[int, ...]
    layers_per_block: int
    in_channels: int
    out_channels: int
    training_steps: int  # the folder card's extra.training_steps (0 when it does not say)
    sha256: str
    state: dict[str, torch.Tensor]
    attention: bool = True  # self-attention blocks in config.json's down_block_types

    def record(self) -> dict:
        """The ``init_from`` entry of the new card (and of the checkpoint, for --resume)."""
        return {"folder": self.folder.name, "sha256": self.sha256, "training_steps": self.training_steps}


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def read_architecture(folder: str | Path) -> dict:
    """The folder's network settings, without its weights: ``size``, ``channels``,
    ``layers_per_block``, ``in_channels``, ``out_channels``, ``training_steps`` and ``attention``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"--init-from {folder} is not a folder; give a prior folder holding card.json, "
                         f"config.json and {WEIGHTS_FILE}.")
    check_prior_folder(folder)
    try:
        config = json.loads((folder / "config.json").read_text())
        card = json.loads((folder / "card.json").read_text())
        size = config["sample_size"]
        arch = {"size": int(size[0] if isinstance(size, (list, tuple)) else size),
                "channels": tuple(int(c) for c in config["block_out_channels"]),
                "layers_per_block": int(config["layers_per_block"]), "in_channels": int(config["in_channels"]),
                "out_channels": int(config["out_channels"]),
                "training_steps": int((card.get("extra") or {}).get("training_steps", 0)),
                "attention": any("Attn" in str(b) for b in config.get("down_block_types", ("AttnDownBlock2D",)))}
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError, OverflowError, RecursionError) as err:
        raise InputError(f"--init-from {folder}: config.json or card.json cannot be read ({printable(repr(err))[:160]}); "
                         f"give a folder written by diffrecon train.") from None
    if config.get("_class_name", "UNet2DModel") != "UNet2DModel":
        raise InputError(f"--init-from {folder} holds a {config.get('_class_name')}; "
                         f"only UNet2DModel can be trained on.")
    return arch


def read_init_folder(folder: str | Path) -> InitSource:
    """Read a prior folder (config.json, diffusion_pytorch_model.safetensors, card.json) to train on from."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(folder)
    arch = read_architecture(folder)
    try:
        state = {k: v.float() for k, v in load_file(str(folder / WEIGHTS_FILE), device="cpu").items()}
    except (OSError, SafetensorError) as err:
        raise InputError(f"--init-from {folder / WEIGHTS_FILE} cannot be read as safetensors ({err}).") from None
    return InitSource(folder=folder, sha256=_sha256(folder / WEIGHTS_FILE), state=state, **arch)


def check_architecture(source: InitSource, size: int, channels: tuple[int, ...], layers_per_block: int,
                       image_channels: int) -> None:
    """Refuse (one sentence) when the requested network differs from the folder's."""
    want = {"sample_size": size, "block_out_channels": tuple(channels), "layers_per_block": layers_per_block,
            "in_channels": image_channels, "out_channels": image_channels}
    have = {"sample_size": source.size, "block_out_channels": source.channels,
            "layers_per_block": source.layers_per_block, "in_channels": source.in_channels,
            "out_channels": source.out_channels}
    differ = [k for k in want if want[k] != have[k]]
    if differ:
        fmt = lambda v: ",".join(map(str, v)) if isinstance(v, tuple) else str(v)  # noqa: E731
        was = ", ".join(f"{k} {fmt(have[k])} (requested {fmt(want[k])})" for k in differ)
        raise InputError(f"--init-from {source.folder} has {was}; give the folder's --size, --channels, "
                         f"--layers-per-block and image channels, or leave --size/--channels/--layers-per-block out.")


def load_init_weights(source: InitSource, unet: torch.nn.Module, ema: torch.nn.Module) -> None:
    """Copy the folder's weights into both networks (fp16 on disk, so the start is fp16-rounded)."""
    try:
        unet.load_state_dict(source.state, strict=True)
        ema.load_state_dict(source.state, strict=True)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0]
        raise InputError(f"--init-from {source.folder / WEIGHTS_FILE} does not fit the network diffrecon "
                         f"train builds ({first}).") from None
