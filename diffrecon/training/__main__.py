"""``python -m diffrecon.training ...``: the train command on its own (same options as ``diffrecon train``)."""
import argparse
import sys

from ..errors import DiffreconError
from .command import add_train_parser

if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m diffrecon.training")
    train_parser = add_train_parser(parser.add_subparsers())
    args = train_parser.parse_args(sys.argv[1:])
    try:
        sys.exit(args.func(args))
    except DiffreconError as err:
        print(f"diffrecon train: {err}", file=sys.stderr)
        sys.exit(2)  # the exit code of every user error in the diffrecon CLI
