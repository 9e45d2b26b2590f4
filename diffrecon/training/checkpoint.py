"""Training checkpoints: everything ``--resume`` needs to continue with the same loss curve.

``out/checkpoint/`` holds

- ``weights.safetensors``: the network (``model.*``) and its moving average (``ema.*``), float32;
- ``optimizer.pt``: the AdamW state dict, written with ``torch.save`` but holding only tensors,
  numbers, booleans, lists and dicts, so it is read back with ``torch.load(weights_only=True)``,
  which refuses anything that could run code;
- ``trainer.json``: the step, the moving average of the loss, the log so far and the settings.

A checkpoint is written into a temporary folder and swapped in by renames, so an interruption
while writing leaves the previous checkpoint intact.
"""
from __future__ import annotations

import dataclasses
import json
import math
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ..errors import InputError, printable
from ..priors.base import read_json
from ..priors.tensor_pickle import load_tensors_only

if TYPE_CHECKING:  # pragma: no cover
    from .loop import TrainConfig

CHECKPOINT_DIR = "checkpoint"
_MAX_STATE_BYTES = 64 << 20  # trainer.json: settings and one log line per log_every steps
FORMAT_VERSION = 1


def _settings(config: "TrainConfig") -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(config).items()}


def save_checkpoint(folder: Path, config: "TrainConfig", step: int, loss_ema: float, log: list[dict],
                    unet: torch.nn.Module, ema: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    init_from: dict | None = None) -> None:
    """``init_from``: the ``--init-from`` record, kept so a resumed run still writes it to its card."""
    from safetensors.torch import save_file

    folder = Path(folder)
    tmp, old = folder.with_name(folder.name + ".tmp"), folder.with_name(folder.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    tensors = {f"model.{k}": v.detach().to("cpu", torch.float32).contiguous() for k, v in unet.state_dict().items()}
    tensors.update({f"ema.{k}": v.detach().to("cpu", torch.float32).contiguous() for k, v in ema.state_dict().items()})
    save_file(tensors, str(tmp / "weights.safetensors"), metadata={"step": str(step)})
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    state = {"format": FORMAT_VERSION, "step": step, "loss_ema": loss_ema, "settings": _settings(config), "log": log}
    if init_from is not None:
        state["init_from"] = init_from
    (tmp / "trainer.json").write_text(json.dumps(state, indent=1))
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        folder.rename(old)
    tmp.rename(folder)
    shutil.rmtree(old, ignore_errors=True)


def checkpoint_init_from(folder: Path) -> dict | None:
    """The ``--init-from`` record of a checkpoint, or None for a run that started from random weights."""
    try:
        record = json.loads((Path(folder) / "trainer.json").read_text()).get("init_from")
    except (OSError, ValueError, AttributeError):
        return None  # load_checkpoint reports an unreadable trainer.json
    return record if isinstance(record, dict) else None


def load_checkpoint(folder: Path, config: "TrainConfig", unet: torch.nn.Module, ema: torch.nn.Module,
                    optimizer: torch.optim.Optimizer) -> tuple[int, float, list[dict]]:
    """Restore the three objects in place; returns ``(step, loss_ema, log)``."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(folder)
    state = read_json(folder / "trainer.json", "Checkpoint state", max_bytes=_MAX_STATE_BYTES)
    try:
        step, loss_ema, log, saved = int(state["step"]), float(state["loss_ema"]), list(state["log"]), state["settings"]
        if not (isinstance(saved, dict) and 0 <= step and math.isfinite(loss_ema)
                and all(isinstance(entry, dict) for entry in log)):
            raise ValueError("values out of range")
    except (ValueError, KeyError, TypeError, OverflowError, AttributeError) as err:
        raise InputError(f"Checkpoint {folder / 'trainer.json'} does not hold a valid training state "
                         f"({type(err).__name__}: {printable(str(err))[:80]}); train without --resume.") from None
    current = _settings(config)
    saved.setdefault("attention", True)  # checkpoints written before the option had attention
    differ = [k for k in config.ARCHITECTURE if saved.get(k) != current[k]]
    if differ:
        was = ", ".join(f"{k}={saved.get(k)}" for k in differ)
        raise InputError(f"Checkpoint {folder} was trained with {was}; resume with the same settings.")
    optimizer_state = load_tensors_only(folder / "optimizer.pt", "Checkpoint optimizer state", "train without --resume")
    try:
        tensors = load_file(str(folder / "weights.safetensors"), device="cpu")
        unet.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, strict=True)
        ema.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")}, strict=True)
        optimizer.load_state_dict(optimizer_state)
    except (OSError, SafetensorError, RuntimeError, ValueError, KeyError, TypeError, IndexError, AttributeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(f"Checkpoint {folder} does not fit this network ({printable(first)[:160]}); "
                         "train without --resume.") from None
    return step, loss_ema, log
