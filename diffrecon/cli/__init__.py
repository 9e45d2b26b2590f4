"""The ``diffrecon`` command: no arguments opens the GUI; subcommands for everything else.

    diffrecon demo KIND --out FILE [--size N] [--seed S] [--noise SIGMA]
    diffrecon solvers
    diffrecon info FILE
    diffrecon import FILE --out OUT.h5 [--format auto|fastmri|dxchange|nxtomo] [--slice N] [--size N] ...
    diffrecon simulate IMAGE --operator KIND [--option KEY=VALUE ...] --noise SIGMA --out FILE ...
    diffrecon reconstruct FILE --out OUT [--solver NAME] [--steps N] [--samples K] [--seed S] ...
    diffrecon export RESULT.h5 --what mean|std|samples|error --out PATH [--format tiff|png|h5] [--cmap NAME]
    diffrecon export-volume VOLUME.h5 [--tiff OUT.tif] [--h5 OUT.h5]
    diffrecon train --data DATA --out FOLDER ...
    diffrecon distill --teacher PRIOR --out FOLDER [--time-limit S] ...
    diffrecon validate [--solvers A,B] [--out REPORT.md]
    diffrecon compare FILE [--solvers A,B] [--steps N,M]
    diffrecon calibrate FILE [--solver NAME] [--images N] ...
    diffrecon batch INPUTS --out FOLDER [--recipe RESULT.h5] [--executor sequential|ray] ...
    diffrecon prior check PATH [--json]
    diffrecon gui [FILE] [--reconstruct] [--screenshot OUT.png] [--quit]

One module per command group; each adds its subcommands with an ``add_<name>_parser(subparsers)``
function listed in :data:`COMMANDS`, whose parser sets ``func(args) -> int``. The run options
shared by the commands that run the engine are :mod:`.options`; progress bars and Ctrl-C are
:mod:`.progress`. Command modules import the features they drive inside their ``run_*``
functions, and a feature that fails to import makes only its own command fail, in one sentence.

Errors a user can cause end as one sentence on stderr and exit code 2, never a traceback.
"""
from __future__ import annotations

import sys
from typing import Callable, Sequence

from .. import __version__
from ..errors import DiffreconError, InputError, printable
from ..messages import held_warnings
from .batch import add_batch_parser
from .calibrate import add_calibrate_parser
from .compare import add_compare_parser
from .distill import add_distill_parser
from .files import add_demo_parser, add_export_parser, add_import_parser, add_info_parser, add_simulate_parser
from .options import EXIT_DIVERGED, EXIT_USAGE, Parser
from .prior import add_prior_parser
from .progress import EXIT_INTERRUPTED, ctrl_c_stops, finishing_write, terminate_like_ctrl_c
from .reconstruct import add_reconstruct_parser, add_solvers_parser
from .train import add_train_parser
from .validate import add_validate_parser
from .volume import add_reconstruct_volume_parser
from .volume_export import add_export_volume_parser
from .window import add_gui_parser, open_gui

__all__ = ["COMMANDS", "EXIT_DIVERGED", "EXIT_INTERRUPTED", "EXIT_USAGE", "add_solvers_parser", "build_parser",
           "ctrl_c_stops", "finishing_write", "main"]

#: The subcommands in the order ``diffrecon --help`` lists them; a new command is one more entry.
COMMANDS: list[Callable] = [
    add_demo_parser, add_solvers_parser, add_info_parser, add_reconstruct_parser, add_reconstruct_volume_parser,
    add_import_parser,
    add_simulate_parser, add_export_parser, add_export_volume_parser, add_train_parser, add_distill_parser,
    add_validate_parser,
    add_compare_parser, add_calibrate_parser, add_batch_parser, add_prior_parser, add_gui_parser,
]


def build_parser() -> Parser:
    p = Parser(prog="diffrecon", description="Diffusion-model image reconstruction with uncertainty. "
               "Without a command, opens the GUI.")
    p.add_argument("--version", action="version", version=f"diffrecon {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for add in COMMANDS:
        add(sub)
    return p


def _call(args) -> int:
    """Run the command; a module it needs that does not load is one sentence, not a traceback
    (the other commands keep working: each imports what it drives when it runs)."""
    try:
        return int(args.func(args) or 0)
    except ImportError as err:
        module = err.name or "a module it needs"
        raise InputError(f"Command {args.command} is unavailable because {module} does not load ({err}).") from None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``diffrecon`` console script and of ``python main.py``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if not argv:
            return open_gui(None)
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as exit_:  # --help, --version and usage errors; main returns, never exits
            return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
        if not getattr(args, "func", None):
            build_parser().print_help()
            return EXIT_USAGE
        if args.command == "gui":  # a window session reports its own warnings
            return _call(args)
        with terminate_like_ctrl_c(), held_warnings() as held:
            code = _call(args)
        held.show()
        return code
    except DiffreconError as err:
        print(f"diffrecon: {printable(err)}", file=sys.stderr)
        return EXIT_USAGE
    except MemoryError:
        print("diffrecon: out of memory; use smaller settings (fewer samples or a smaller image) or free memory.",
              file=sys.stderr)
        return EXIT_USAGE
    except OSError as err:
        where = f" {err.filename}" if getattr(err, "filename", None) else ""
        print(f"diffrecon: cannot access{printable(where)}: {printable(err.strerror or err)}.", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("diffrecon: interrupted.", file=sys.stderr)
        return EXIT_INTERRUPTED
