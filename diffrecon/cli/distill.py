"""``diffrecon distill``: a few-step consistency model of a diffusion prior
(:func:`diffrecon.training.consistency.distill`), written as a prior folder the ``cm`` solver uses."""
from __future__ import annotations

import argparse
import dataclasses


def add_distill_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``distill`` command; ``func`` is :func:`run_distill`."""
    from ..training.consistency import METRICS, ODE_SOLVERS, DistillConfig

    d = DistillConfig()
    parser = subparsers.add_parser(
        "distill", help="distil a prior into a few-step consistency model (for the cm solver)",
        description="Consistency distillation (Song et al., ICML 2023) of a diffusion prior: writes a prior folder "
                    "whose card says what it was distilled from; the cm solver uses it at 2-8 evaluations.")
    parser.add_argument("--teacher", default=d.teacher, help="prior name or folder to distil (default: default)")
    parser.add_argument("--out", required=True, help="folder for the consistency model")
    parser.add_argument("--steps", type=int, default=d.steps)
    parser.add_argument("--batch-size", type=int, default=d.batch_size)
    parser.add_argument("--lr", type=float, default=d.lr)
    parser.add_argument("--time-limit", type=float, default=None, help="seconds; stop, save and allow --resume")
    parser.add_argument("--device", default=d.device)
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--resume", action="store_true", help="continue the checkpoint in --out")
    parser.add_argument("--levels", type=int, default=d.levels, help="N, levels between sigma_min and sigma_max")
    parser.add_argument("--ode-solver", choices=ODE_SOLVERS, default=d.ode_solver)
    parser.add_argument("--metric", choices=METRICS, default=d.metric)
    parser.add_argument("--target-decay", type=float, default=d.target_decay)
    parser.add_argument("--data", default=None, help="training images (default: the teacher card's)")
    parser.add_argument("--n-images", type=int, default=d.n_images)
    parser.add_argument("--data-cache", default=None)
    parser.add_argument("--no-compile", dest="compile", action="store_false")
    parser.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every)
    parser.add_argument("--log-every", type=int, default=d.log_every)
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    parser.set_defaults(func=run_distill)
    return parser


def run_distill(args: argparse.Namespace) -> int:
    from ..training.consistency import DistillConfig, distill

    names = {f.name for f in dataclasses.fields(DistillConfig)}
    folder = distill(DistillConfig(**{k: v for k, v in vars(args).items() if k in names}), progress=args.progress)
    print(f"Wrote the consistency model to {folder}.")
    return 0
