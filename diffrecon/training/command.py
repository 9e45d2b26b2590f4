"""``diffrecon train``: the argparse part. The lead wires ``add_train_parser`` into diffrecon/cli.py."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import InputError
from .loop import DEFAULT_CHANNELS, DEFAULT_STEPS, TrainConfig, train


def parse_channels(text: str) -> tuple[int, ...]:
    """``"64,128,128,128"`` -> ``(64, 128, 128, 128)``."""
    try:
        channels = tuple(int(v) for v in str(text).split(","))
    except ValueError:
        raise InputError(f"--channels {text!r} is invalid; give comma-separated integers such as 64,128,128,128.") from None
    return channels


def add_train_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``train`` command to an argparse subparsers object; ``func`` is :func:`run_train`."""
    d = TrainConfig()
    p = subparsers.add_parser(
        "train", help="train a diffusion prior on images",
        description="Train a DDPM epsilon-prediction prior (diffusers UNet2DModel) and write a prior folder "
                    "(config.json, fp16 safetensors, card.json) that diffrecon loads.")
    p.add_argument("--data", required=True, help="'phantoms', an HDF5 file with an image stack, or a folder of TIFF/PNG images")
    p.add_argument("--out", required=True, type=Path, help="folder for the prior, its checkpoint and training_log.json")
    p.add_argument("--size", type=int, default=d.size, help=f"image size in pixels (default {d.size})")
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS, help=f"training steps (default {DEFAULT_STEPS}, ~15 min on an H100)")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help=f"images per step (default {d.batch_size})")
    p.add_argument("--lr", type=float, default=d.lr, help=f"AdamW learning rate (default {d.lr:g})")
    p.add_argument("--channels", default=",".join(map(str, DEFAULT_CHANNELS)),
                   help="UNet widths per resolution level (default %(default)s)")
    p.add_argument("--layers-per-block", type=int, default=d.layers_per_block, help="residual blocks per level (default 2)")
    p.add_argument("--n-images", type=int, default=d.n_images,
                   help=f"phantoms to generate, or the most images read from a file (default {d.n_images})")
    p.add_argument("--dataset", default=None, help="HDF5 dataset holding the (N,H,W) or (N,C,H,W) stack")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of the initial weights and of every step's draws")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default auto)")
    p.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every, help="steps between checkpoints")
    p.add_argument("--no-compile", action="store_true", help="do not torch.compile the network on CUDA")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run_train)
    return p


def run_train(args) -> int:
    """Run ``diffrecon train`` from parsed arguments; InputError reaches the CLI as one sentence."""
    config = TrainConfig(
        data=str(args.data), size=args.size, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
        channels=parse_channels(args.channels), layers_per_block=args.layers_per_block, n_images=args.n_images,
        dataset=args.dataset, seed=args.seed, device=args.device, checkpoint_every=args.checkpoint_every,
        compile=not args.no_compile)
    result = train(config, args.out, resume=args.resume, progress=not args.no_progress)
    print(f"Wrote prior {result.prior_folder} after {result.steps} steps (loss {result.final_loss:.4f}).")
    return 0
