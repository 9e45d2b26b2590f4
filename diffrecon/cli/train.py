"""``diffrecon train``: train a diffusion prior and write a prior folder (:mod:`diffrecon.training`)."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import InputError
from .options import add_run_options


def parse_channels(text: str) -> tuple[int, ...]:
    """``"64,128,128,128"`` -> ``(64, 128, 128, 128)``."""
    try:
        channels = tuple(int(v) for v in str(text).split(","))
    except ValueError:
        raise InputError(f"--channels {text!r} is invalid; give comma-separated integers such as 64,128,128,128.") from None
    return channels


def add_train_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``train`` command to an argparse subparsers object; ``func`` is :func:`run_train`."""
    from ..training import DEFAULT_CHANNELS, DEFAULT_STEPS, TrainConfig

    d = TrainConfig()
    p = subparsers.add_parser(
        "train", help="train a diffusion prior on images",
        description="Train a DDPM epsilon-prediction prior (diffusers UNet2DModel) and write a prior folder "
                    "(config.json, fp16 safetensors, card.json) that diffrecon loads.")
    p.add_argument("--data", required=True,
                   help="'phantoms', 'procedural' (phantoms plus natural-image, microscopy, vessel and organ-like "
                        "procedural images), an HDF5 file with an image stack, a folder of TIFF/PNG images, or one "
                        "(multi-page) TIFF/PNG file")
    p.add_argument("--out", required=True, type=Path, help="folder for the prior, its checkpoint and training_log.json")
    p.add_argument("--size", type=int, default=None,
                   help=f"image size in pixels (default {d.size}, or the --init-from folder's)")
    p.add_argument("--image-size", type=int, default=None,
                   help="train on random --size patches of images of this size (default: whole images of --size)")
    p.add_argument("--whole-fraction", type=float, default=d.whole_fraction,
                   help=f"with --image-size: the part of each batch that sees whole images resized to --size "
                        f"(default {d.whole_fraction})")
    p.add_argument("--no-attention", action="store_true",
                   help="no self-attention: a fully convolutional network that runs at any image size (with "
                        "--init-from: as the folder's network unless given)")
    p.add_argument("--data-cache", default=None, metavar="FOLDER",
                   help="keep the generated procedural images in FOLDER and reuse them (resume, several runs)")
    p.add_argument("--time-limit", type=float, default=None, metavar="SECONDS",
                   help="stop after this many seconds of training, writing the prior and the checkpoint "
                        "(continue with --resume)")
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS, help=f"training steps (default {DEFAULT_STEPS}, ~15 min on an H100)")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help=f"images per step (default {d.batch_size})")
    p.add_argument("--lr", type=float, default=d.lr, help=f"AdamW learning rate (default {d.lr:g})")
    p.add_argument("--channels", default=None,
                   help=f"UNet widths per resolution level (default {','.join(map(str, DEFAULT_CHANNELS))}, "
                        f"or the --init-from folder's)")
    p.add_argument("--layers-per-block", type=int, default=None,
                   help=f"residual blocks per level (default {d.layers_per_block}, or the --init-from folder's)")
    p.add_argument("--n-images", type=int, default=d.n_images,
                   help=f"phantoms to generate, or the most images read from a file (default {d.n_images})")
    p.add_argument("--dataset", default=None, help="HDF5 dataset holding the (N,H,W) or (N,C,H,W) stack")
    add_run_options(p, ("seed", "device"), seed=dict(default=d.seed, help="seed of the initial weights and of every "
                                                                           "step's draws"),
                    device=dict(help="auto, cpu, cuda, cuda:N or mps (default auto)"))
    p.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every, help="steps between checkpoints")
    p.add_argument("--no-compile", action="store_true", help="do not torch.compile the network on CUDA")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint")
    p.add_argument("--init-from", type=Path, default=None, metavar="FOLDER",
                   help="start the network and its EMA from this prior folder's weights (fresh optimizer, "
                        "step 0; the card counts the folder's steps too); not with --resume")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--allow-external", action="store_true", help="follow links from an HDF5 --data file to other files")
    p.set_defaults(func=run_train)
    return p


def _architecture(args) -> tuple[int, tuple[int, ...], int]:
    """``(size, channels, layers_per_block)``: as given, else the --init-from folder's, else the defaults."""
    from ..training import TrainConfig, read_architecture

    d = TrainConfig()
    given = {"size": args.size, "channels": None if args.channels is None else parse_channels(args.channels),
             "layers_per_block": args.layers_per_block}
    init_from = getattr(args, "init_from", None)
    fallback = {"size": d.size, "channels": d.channels, "layers_per_block": d.layers_per_block}
    source = "default"
    if init_from is not None and not args.resume and None in given.values():
        fallback, source = read_architecture(init_from), f"{init_from}/config.json"
    chosen = {k: fallback[k] if v is None else v for k, v in given.items()}
    if init_from is not None:
        taken = [k for k, v in given.items() if v is None]
        print(f"Architecture: size {chosen['size']}, channels {','.join(map(str, chosen['channels']))}, "
              f"layers_per_block {chosen['layers_per_block']}"
              + (f" ({', '.join(taken)} from {source})." if taken else " (as given; checked against the folder)."))
    return chosen["size"], tuple(chosen["channels"]), int(chosen["layers_per_block"])


def _attention(args) -> bool:
    """Off with --no-attention; else as the --init-from folder's network (on when training from scratch)."""
    init_from = getattr(args, "init_from", None)
    if args.no_attention or init_from is None or args.resume:
        return not args.no_attention
    from ..training import read_architecture

    return bool(read_architecture(init_from)["attention"])


def run_train(args) -> int:
    """Run ``diffrecon train`` from parsed arguments; InputError reaches the CLI as one sentence."""
    from .. import training

    size, channels, layers_per_block = _architecture(args)
    config = training.TrainConfig(
        data=str(args.data), size=size, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
        channels=channels, layers_per_block=layers_per_block, n_images=args.n_images,
        dataset=args.dataset, seed=args.seed, device=args.device, checkpoint_every=args.checkpoint_every,
        compile=not args.no_compile, image_size=args.image_size, whole_fraction=args.whole_fraction,
        attention=_attention(args), data_cache=args.data_cache,
        allow_external=getattr(args, "allow_external", False))
    result = training.train(config, args.out, resume=args.resume, progress=not args.no_progress,
                   init_from=getattr(args, "init_from", None), time_limit=args.time_limit)
    print(f"Wrote prior {result.prior_folder} after {result.steps} steps (loss {result.final_loss:.4f}).")
    return 0
