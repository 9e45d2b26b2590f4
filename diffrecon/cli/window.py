"""``diffrecon gui`` (and ``diffrecon`` without a command): open the window.

The one place where the command line reaches the other front end, and only inside
:func:`open_gui`, when a window is asked for: importing the command line never imports Qt. The
import contracts in pyproject.toml allow exactly this edge (``diffrecon.cli.window ->
diffrecon.gui.app``) and no other between the two front ends.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from .options import EXIT_USAGE

_GUI_HINT = ("use the command line instead (diffrecon --help), or set QT_QPA_PLATFORM=offscreen "
             "to run the GUI without a screen")


def add_gui_parser(sub) -> None:
    g = sub.add_parser("gui", help="open the GUI")
    g.add_argument("file", nargs="?", type=Path)
    g.add_argument("--reconstruct", action="store_true", help="start reconstructing at once")
    g.add_argument("--screenshot", type=Path, help="save a PNG of the window")
    g.add_argument("--quit", action="store_true", help="quit when done (with --reconstruct/--screenshot)")
    g.set_defaults(func=run_gui_command)


def run_gui_command(args) -> int:
    return open_gui(args.file, reconstruct=args.reconstruct, screenshot=args.screenshot, quit_after=args.quit)


def open_gui(path, **kw) -> int:
    """Run the window on ``path`` (None: empty); exit 2 with one sentence where it cannot start."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
                                                or os.environ.get("QT_QPA_PLATFORM")):
        print(f"diffrecon: no display found for the GUI; {_GUI_HINT}.", file=sys.stderr)
        return EXIT_USAGE
    try:
        from ..gui.app import run_gui
    except ImportError as err:
        print(f"diffrecon: the GUI cannot start ({err}); install diffrecon[gui] or {_GUI_HINT}.", file=sys.stderr)
        return EXIT_USAGE
    return int(run_gui(path, **kw) or 0)
