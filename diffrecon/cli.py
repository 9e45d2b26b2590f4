"""The ``diffrecon`` command: no arguments opens the GUI; subcommands for everything else.

    diffrecon demo KIND --out FILE [--size N] [--seed S] [--noise SIGMA]
    diffrecon solvers
    diffrecon info FILE
    diffrecon reconstruct FILE --out OUT [--solver NAME] [--steps N] [--samples K] [--seed S] ...
    diffrecon gui [FILE] [--reconstruct] [--screenshot OUT.png] [--quit]

Errors a user can cause end as one sentence on stderr and exit code 2, never a traceback.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import re
import signal
import sys
import threading
from pathlib import Path
from typing import Sequence

from . import __version__
from .errors import DiffreconError, InputError

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
_GUI_HINT = ("use the command line instead (diffrecon --help), or set QT_QPA_PLATFORM=offscreen "
             "to run the GUI without a screen")


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (exit 2) like every other user error."""

    def error(self, message: str):  # noqa: D401 - argparse's hook
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see {self.prog} --help).\n")


def _device(text: str) -> str:
    if re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", text):
        return text
    raise argparse.ArgumentTypeError(f"invalid device {text!r}; valid devices are auto, cpu, cuda, cuda:N, mps")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    from .demo import DEMO_KINDS

    p = _Parser(prog="diffrecon", description="Diffusion-model image reconstruction with uncertainty. "
                "Without a command, opens the GUI.")
    p.add_argument("--version", action="version", version=f"diffrecon {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    d = sub.add_parser("demo", help="write a simulated demo measurement")
    d.add_argument("kind", choices=DEMO_KINDS, metavar="KIND", help=f"one of {', '.join(DEMO_KINDS)}")
    d.add_argument("--out", required=True, type=Path, help="measurement file to write (.h5)")
    d.add_argument("--size", type=_positive, default=None, help="image size in pixels (default 128; rf 32)")
    d.add_argument("--seed", type=int, default=None, help="phantom and noise seed (default 0)")
    d.add_argument("--noise", type=float, default=None, help="noise standard deviation in the units of y")
    d.set_defaults(func=_cmd_demo)

    s = sub.add_parser("solvers", help="list the solvers and their parameters")
    s.set_defaults(func=_cmd_solvers)

    i = sub.add_parser("info", help="describe an HDF5 file")
    i.add_argument("file", type=Path)
    i.set_defaults(func=_cmd_info)

    r = sub.add_parser("reconstruct", help="reconstruct a measurement file and write a result file")
    r.add_argument("file", type=Path, help="measurement (or result) file")
    r.add_argument("--out", required=True, type=Path, help="result file to write (.h5)")
    r.add_argument("--solver", default="dps", help="solver name (see diffrecon solvers)")
    r.add_argument("--steps", type=_positive, default=50)
    r.add_argument("--samples", type=_positive, default=4)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--prior", default="default", help="default, gaussian, or a prior folder")
    r.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="solver parameter (repeatable)")
    r.add_argument("--device", type=_device, default="auto", help="auto, cpu, cuda, cuda:N or mps")
    r.add_argument("--precision", choices=("bf16", "fp32"), default="bf16")
    r.add_argument("--batch-size", type=_positive, default=None, help="samples per batch (default: what fits)")
    r.add_argument("--allow-external", action="store_true", help="follow links to other HDF5 files")
    r.set_defaults(func=_cmd_reconstruct)

    g = sub.add_parser("gui", help="open the GUI")
    g.add_argument("file", nargs="?", type=Path)
    g.add_argument("--reconstruct", action="store_true", help="start reconstructing at once")
    g.add_argument("--screenshot", type=Path, help="save a PNG of the window")
    g.add_argument("--quit", action="store_true", help="quit when done (with --reconstruct/--screenshot)")
    g.set_defaults(func=_cmd_gui)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``diffrecon`` console script and of ``python main.py``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if not argv:
            return _open_gui(None)
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as exit_:  # --help, --version and usage errors; main returns, never exits
            return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
        if not getattr(args, "func", None):
            build_parser().print_help()
            return EXIT_USAGE
        return int(args.func(args) or 0)
    except DiffreconError as err:
        print(f"diffrecon: {err}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as err:
        where = f" {err.filename}" if getattr(err, "filename", None) else ""
        print(f"diffrecon: cannot access{where}: {err.strerror or err}.", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("diffrecon: interrupted.", file=sys.stderr)
        return EXIT_INTERRUPTED


# ------------------------------------------------------------------------------ commands
def _cmd_demo(args) -> int:
    from .demo import make_demo
    from .io import write_measurement

    m = make_demo(args.kind, size=args.size, seed=args.seed, noise=args.noise)
    write_measurement(args.out, m)
    print(f"Wrote {args.out}: {m.title} (y {tuple(m.y.shape)} {m.y.dtype}, noise_sigma {m.noise_sigma:.4g}).")
    return 0


def _cmd_info(args) -> int:
    from .io import describe

    print(describe(args.file))
    return 0


def _cmd_solvers(args) -> int:
    from .solvers import SOLVERS

    if not SOLVERS:
        print("No solvers are registered.")
        return 0
    print(f"{'NAME':<12} {'OUTPUT':<16} {'NEEDS':<14} TITLE")
    for name, info in SOLVERS.items():
        defaults = info.Params()
        output = "posterior" if info.is_posterior(defaults) else "point estimate"
        needs = ",".join(sorted(info.needs)) or "-"
        print(f"{name:<12} {output:<16} {needs:<14} {info.title}")
        for f in dataclasses.fields(info.Params):
            lo, hi = f.metadata.get("range", (None, None))
            choices = f.metadata.get("choices")
            valid = ("{" + ", ".join(map(str, choices)) + "}") if choices else \
                (f"[{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}]" if (lo, hi) != (None, None) else "")
            help_ = f.metadata.get("help", "")
            print(f"    {f.name}={getattr(defaults, f.name)!r:<10} {valid:<18} {help_}".rstrip())
    return 0


def _cmd_gui(args) -> int:
    return _open_gui(args.file, reconstruct=args.reconstruct, screenshot=args.screenshot, quit_after=args.quit)


def _open_gui(path, **kw) -> int:
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
                                                or os.environ.get("QT_QPA_PLATFORM")):
        print(f"diffrecon: no display found for the GUI; {_GUI_HINT}.", file=sys.stderr)
        return EXIT_USAGE
    try:
        from .gui.app import run_gui
    except ImportError as err:
        print(f"diffrecon: the GUI cannot start ({err}); install diffrecon[gui] or {_GUI_HINT}.", file=sys.stderr)
        return EXIT_USAGE
    return int(run_gui(path, **kw) or 0)


def _parse_param_args(items: Sequence[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--param {item!r} is not KEY=VALUE; write for example --param zeta=0.5.")
        out[key.strip()] = value.strip()
    return out


def _format_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def _memory_text(memory: dict) -> str:
    for key in ("peak", "allocated", "rss"):
        if memory.get(key):
            return f"{_format_bytes(memory[key])} {key}"
    return "-"


def _cmd_reconstruct(args) -> int:
    from tqdm import tqdm

    from .engine import Finished, Log, Planned, Progress, RunConfig, run
    from .io import read_measurement, write_result
    from .solvers import get_solver, parse_params

    measurement = read_measurement(args.file, allow_external=args.allow_external)
    out_dir = args.out.parent if str(args.out.parent) else Path(".")
    if not out_dir.is_dir():
        raise InputError(f"--out {args.out}: folder {out_dir} does not exist.")
    info = get_solver(args.solver)
    overrides = _parse_param_args(args.param)
    typed = parse_params(info.Params, overrides, args.solver)  # refuse bad values before any work
    config = RunConfig(
        solver=args.solver, params={k: getattr(typed, k) for k in overrides}, steps=args.steps,
        samples=args.samples, seed=args.seed, prior=args.prior, device=args.device,
        precision=args.precision, batch_size=args.batch_size,
    )

    # The first Ctrl-C asks the engine to stop at its next step (it keeps finished samples);
    # a second one interrupts at once.
    stop = threading.Event()

    def _on_sigint(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        tqdm.write("Stopping after the current step (Ctrl-C again to abort) ...", file=sys.stderr)

    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, _on_sigint) if in_main else None
    result, batches = None, [args.samples]
    bar = tqdm(total=args.steps * args.samples, unit="step", desc=args.solver, file=sys.stderr,
               dynamic_ncols=True, leave=True)
    try:
        for event in run(measurement, config, stop=stop):
            if isinstance(event, Planned):
                batches = list(event.batches) or batches
                tqdm.write(f"{event.device}: {len(batches)} batch(es) of {batches}, "
                           f"{event.nfe_per_sample} network evaluations per sample.", file=sys.stderr)
            elif isinstance(event, Progress):
                bar.n = min(bar.total, _steps_done(event, batches))
                bar.set_postfix_str(f"NFE {event.nfe}, mem {_memory_text(event.memory)}", refresh=False)
                bar.refresh()
            elif isinstance(event, Log):
                tqdm.write(f"{event.level}: {event.message}", file=sys.stderr)
            elif isinstance(event, Finished):
                result = event.result
    finally:
        bar.close()
        if in_main:
            signal.signal(signal.SIGINT, previous)

    if result is None or result.n_samples < 1:
        print("diffrecon: stopped before any sample finished; no result written.", file=sys.stderr)
        return EXIT_INTERRUPTED
    if result.measurement is None:
        result.measurement = measurement
    for key, value in result.metrics.items():
        print(f"{key:>24}: {value:.6g}")
    write_result(args.out, result)
    state = "complete" if result.complete else f"stopped early, {result.n_samples} of {args.samples} samples"
    print(f"Wrote {args.out} ({state}).")
    return 0 if result.complete and not stop.is_set() else EXIT_INTERRUPTED


def _steps_done(event, batches: list[int]) -> int:
    """Sample-steps finished: whole samples done plus the running batch's progress."""
    done, start, current = event.samples_done, 0, batches[-1]
    for b in batches:
        if start >= done:
            current = b
            break
        start += b
    return done * event.steps + event.step * current


if __name__ == "__main__":
    sys.exit(main())
