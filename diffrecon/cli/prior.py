"""``diffrecon prior check PATH``: what a prior folder or checkpoint holds and what its card must
still say (:func:`diffrecon.priors.check.check_prior`)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import printable


def add_prior_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``prior`` (with its sub-command ``check``) to the ``diffrecon`` sub-parsers."""
    prior = subparsers.add_parser("prior", help="inspect prior folders and checkpoints")
    commands = prior.add_subparsers(dest="prior_command", metavar="{check}")
    check = commands.add_parser(
        "check", help="say what a prior folder or checkpoint holds and what its card must still say",
        description="Reads a diffusers UNet2DModel folder or a guided-diffusion, EDM or score-SDE NCSN++ checkpoint "
                    "(safetensors, or a .pt/.pth state dict of tensors; never a pickle of objects), reports the "
                    "architecture, the card's declarations and what the card must still say, and tries to load it.")
    check.add_argument("path", type=Path, help="a prior folder, a .safetensors/.pt/.pth checkpoint or a card.json")
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    check.set_defaults(func=cmd_prior_check)
    prior.set_defaults(func=lambda args: _usage(prior))
    return prior


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def cmd_prior_check(args) -> int:
    """Print the report; exit status 0 when the prior loads, 1 when it does not."""
    from ..priors.check import check_prior

    report = check_prior(args.path)
    if getattr(args, "json", False):
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print("\n".join(printable(line) for line in report.text().splitlines()))
    return 0 if report.loads else 1

