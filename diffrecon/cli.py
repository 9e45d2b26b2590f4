"""The ``diffrecon`` command: no arguments opens the GUI; subcommands for everything else.

    diffrecon demo KIND --out FILE [--size N] [--seed S] [--noise SIGMA]
    diffrecon solvers
    diffrecon info FILE
    diffrecon import FILE --out OUT.h5 [--format auto|fastmri|dxchange|nxtomo] [--slice N] [--size N] ...
    diffrecon simulate IMAGE --operator KIND [--option KEY=VALUE ...] --noise SIGMA --out FILE ...
    diffrecon reconstruct FILE --out OUT [--solver NAME] [--steps N] [--samples K] [--seed S] ...
    diffrecon export RESULT.h5 --what mean|std|samples|error --out PATH [--format tiff|png|h5] [--cmap NAME]
    diffrecon train --data DATA --out FOLDER ...          (diffrecon.training)
    diffrecon validate [--solvers A,B] [--out REPORT.md]   (diffrecon.validate)
    diffrecon compare FILE [--solvers A,B] [--steps N,M]   (diffrecon.compare)
    diffrecon gui [FILE] [--reconstruct] [--screenshot OUT.png] [--quit]

Commands that live in other modules are listed in :data:`COMMAND_REGISTRARS`.

Errors a user can cause end as one sentence on stderr and exit code 2, never a traceback.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import os
import re
import sys
import threading
from pathlib import Path
from typing import Callable, Sequence

from . import __version__
from .errors import DiffreconError, InputError, printable
from .interrupts import EXIT_INTERRUPTED, ctrl_c_stops, finishing_write, terminate_like_ctrl_c
from .messages import held_warnings

EXIT_USAGE = 2
EXIT_DIVERGED = 3  # a sample diverged (without --keep-going); the result file is written, flagged

#: Commands defined outside this file: (module, function). ``function(subparsers)`` adds one
#: subcommand whose parser sets ``func`` (``func(args) -> int``); a new command is one more line.
COMMAND_REGISTRARS: list[tuple[str, str]] = [
    ("diffrecon.training", "add_train_parser"),
    ("diffrecon.validate", "add_validate_parser"),
    ("diffrecon.compare", "add_compare_parser"),
    ("diffrecon.calibrate", "add_calibrate_parser"),
]
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


def _at_least(minimum: int):
    """An argparse type: an integer >= ``minimum``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} must be at least {minimum}")
        return value
    return parse


_positive = _at_least(1)
_non_negative = _at_least(0)


def _seed(text: str) -> int:
    """An argparse type: a seed in 0 .. MAX_SEED, refused before any work."""
    from .limits import MAX_SEED

    value = _non_negative(text)
    if value > MAX_SEED:
        raise argparse.ArgumentTypeError(f"{value} exceeds the largest seed {MAX_SEED}")
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
    d.add_argument("--seed", type=_seed, default=None, help="phantom and noise seed (default 0)")
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
    r.add_argument("--solver", default="diffpir", help="solver name (see diffrecon solvers); default diffpir")
    r.add_argument("--steps", type=_positive, default=50)
    r.add_argument("--samples", type=_positive, default=4)
    r.add_argument("--seed", type=_seed, default=0)
    r.add_argument("--prior", default="default", help="default, gaussian, or a prior folder")
    r.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="solver parameter (repeatable)")
    r.add_argument("--device", type=_device, default="auto", help="auto, cpu, cuda, cuda:N or mps")
    r.add_argument("--precision", choices=("bf16", "fp32"), default="bf16")
    r.add_argument("--schedule", choices=("karras", "vp_uniform", "vp_quadratic", "vp_sde"), default="karras",
                   help="noise levels of the steps: karras (EDM), vp_uniform (DDIM), vp_quadratic (DiffPIR), "
                        "vp_sde (uniform time of the VP SDE)")
    r.add_argument("--compile", choices=("auto", "none", "graphs", "compile"), default="auto",
                   help="how the network runs on CUDA: CUDA graphs, torch.compile, or eagerly; auto compiles "
                        "large networks when the run is long enough to pay for the compile, else graphs")
    r.add_argument("--channels-last", action="store_true", help="channels-last network on CUDA")
    r.add_argument("--checkpointing", action="store_true",
                   help="gradient checkpointing for DPS-type solvers: less memory, about a third more time")
    r.add_argument("--batch-size", type=_positive, default=None, help="samples per batch (default: what fits)")
    r.add_argument("--warm-start", choices=("none", "tv"), default="none",
                   help="tv: start the diffusion from the TV reconstruction noised to a level estimated from its "
                        "error (CCDF); the steps are spent below that level")
    r.add_argument("--sigma-start", type=float, default=None,
                   help="warm-start noise level in the prior's units (default: from the error estimate)")
    r.add_argument("--weight", choices=("manual", "auto"), default="manual",
                   help="auto: choose the solver's data weight by the discrepancy principle first (tv, cg, diffpir, "
                        "dps); the choice is recorded in the result's provenance")
    r.add_argument("--allow-external", action="store_true", help="follow links to other HDF5 files")
    r.add_argument("--on-divergence", choices=("sample", "all", "continue"), default="sample",
                   help="when a sample diverges: stop it and go on with the others (default), stop the run, "
                        "or only report it")
    r.add_argument("--retry-on-divergence", action="store_true",
                   help="after a divergence, run once more with a quarter of the guidance weight (recorded)")
    r.add_argument("--keep-going", action="store_true",
                   help=f"exit 0 even if a sample diverged (default: exit {EXIT_DIVERGED}; the result is flagged)")
    r.set_defaults(func=_cmd_reconstruct)

    _add_import_parser(sub)
    _add_simulate_parser(sub)
    _add_export_parser(sub)
    for module, function in COMMAND_REGISTRARS:
        _register(sub, module, function)

    g = sub.add_parser("gui", help="open the GUI")
    g.add_argument("file", nargs="?", type=Path)
    g.add_argument("--reconstruct", action="store_true", help="start reconstructing at once")
    g.add_argument("--screenshot", type=Path, help="save a PNG of the window")
    g.add_argument("--quit", action="store_true", help="quit when done (with --reconstruct/--screenshot)")
    g.set_defaults(func=_cmd_gui)
    return p


def _register(sub, module: str, function: str) -> None:
    """Add the subcommand of ``module.function``; a module that has not landed yet is skipped,
    one that fails to import becomes a command that says so (the other commands keep working)."""
    try:
        getattr(importlib.import_module(module), function)(sub)
    except ModuleNotFoundError as err:
        if err.name != module:
            _add_unavailable(sub, module, function, err)
    except (ImportError, AttributeError, SyntaxError) as err:
        _add_unavailable(sub, module, function, err)


def _add_unavailable(sub, module: str, function: str, err: Exception) -> None:
    name = function.removeprefix("add_").removesuffix("_parser")
    if name in sub.choices:
        return
    p = sub.add_parser(name, help=f"(unavailable: {module} does not load)", add_help=False)
    p.add_argument("rest", nargs=argparse.REMAINDER)

    def unavailable(args):
        raise InputError(f"Command {name} is unavailable because {module} does not load ({err}).")
    p.set_defaults(func=unavailable)


def _add_import_parser(sub) -> None:
    from .io import IMPORT_FORMATS

    p = sub.add_parser("import", help="import a fastMRI, Data Exchange or NXtomo file as a measurement",
                       description="Import one slice of a file in a format scientists already have and write a "
                                   "diffrecon measurement file (see docs/importers.md).")
    p.add_argument("file", type=Path, help="fastMRI k-space, APS Data Exchange or NeXus NXtomo HDF5 file")
    p.add_argument("--out", required=True, type=Path, help="measurement file to write (.h5)")
    p.add_argument("--format", choices=("auto", *IMPORT_FORMATS), default="auto",
                   help="file format (default: from the file's layout)")
    p.add_argument("--slice", type=_non_negative, default=None,
                   help="fastMRI slice or tomography detector row (default: the middle one)")
    p.add_argument("--size", type=_positive, default=None, help="image size in pixels (default: as stored)")
    p.add_argument("--acceleration", type=float, default=None,
                   help="retrospective undersampling factor for fully sampled fastMRI k-space")
    p.add_argument("--center-fraction", type=float, default=None,
                   help="fully sampled centre fraction of the retrospective mask")
    p.add_argument("--seed", type=_seed, default=0, help="seed of the retrospective mask (default 0)")
    p.add_argument("--allow-external", action="store_true", help="follow links to other HDF5 files")
    p.set_defaults(func=_cmd_import)


def _add_simulate_parser(sub) -> None:
    from .io.importers import SIMULATE_OPTIONS

    options = "; ".join(f"{kind}: {', '.join(f'{k}={v}' for k, v in o.items()) or '-'}"
                        for kind, o in SIMULATE_OPTIONS.items())
    p = sub.add_parser("simulate", help="simulate a measurement of an image (TIFF, PNG, HDF5)",
                       description=f"Simulate y = A x + noise from a ground-truth image. "
                                   f"Options (defaults): {options}.")
    p.add_argument("image", type=Path, help="ground-truth image: .tif, .png or an HDF5 file")
    p.add_argument("--operator", required=True, choices=tuple(SIMULATE_OPTIONS), metavar="KIND",
                   help=f"forward model: {', '.join(SIMULATE_OPTIONS)}")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="forward-model option (repeatable), e.g. --option n_views=60")
    p.add_argument("--noise", required=True, type=float, help="noise standard deviation in the image's units")
    p.add_argument("--out", required=True, type=Path, help="measurement file to write (.h5)")
    p.add_argument("--seed", type=_seed, default=0, help="seed of the mask and the noise (default 0)")
    p.add_argument("--dataset", default=None, help="dataset holding the image in an HDF5 file")
    p.add_argument("--units", default="a.u.", help="unit of the image values (default a.u.)")
    p.add_argument("--pixel-size", type=float, default=1.0,
                   help="pixel pitch (default 1); CT line integrals are image units times this length")
    p.add_argument("--pixel-unit", default="px", help="unit of the pixel pitch (default px)")
    p.add_argument("--size", type=_positive, default=None,
                   help="resample the image to SIZE x SIZE first (the bundled prior takes 128)")
    p.add_argument("--allow-external", action="store_true", help="follow links to other HDF5 files")
    p.set_defaults(func=_cmd_simulate)


def _add_export_parser(sub) -> None:
    from .io.export import FORMATS, WHAT

    p = sub.add_parser("export", help="export a map of a result file as TIFF, PNG or HDF5",
                       description="Export the data (not screen pixels) of a result: float32 TIFF for ImageJ, "
                                   "colour-mapped PNG with a scale bar, or plain HDF5.")
    p.add_argument("result", type=Path, help="result file (.h5)")
    p.add_argument("--what", required=True, choices=WHAT, help="posterior mean, std, the stored samples, or "
                   "the signed error mean - ground truth")
    p.add_argument("--out", required=True, type=Path, help="file to write")
    p.add_argument("--format", choices=FORMATS, default=None, help="tiff, png or h5 (default: from --out's suffix)")
    p.add_argument("--cmap", default="viridis", help="colour map of the PNG (default viridis)")
    p.set_defaults(func=_cmd_export)


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
        if args.command == "gui":  # a window session reports its own warnings
            return int(args.func(args) or 0)
        with terminate_like_ctrl_c(), held_warnings() as held:
            code = int(args.func(args) or 0)
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


# ------------------------------------------------------------------------------ commands
def _cmd_demo(args) -> int:
    from .demo import make_demo
    from .io import write_measurement

    _check_out_folder(args.out)
    m = make_demo(args.kind, size=args.size, seed=args.seed, noise=args.noise)
    interrupted = _write_final(args.out, lambda: write_measurement(args.out, m))
    print(f"Wrote {args.out}: {m.title} (y {tuple(m.y.shape)} {m.y.dtype}, noise_sigma {m.noise_sigma:.4g}).")
    return EXIT_INTERRUPTED if interrupted else 0


def _status(message: str) -> None:
    """A progress line for a human at a terminal; pipes and logs get only the result."""
    if sys.stderr.isatty():
        print(message, file=sys.stderr, flush=True)


def _check_out_folder(out: Path, *inputs: Path) -> None:
    """Refuse a folder, an unwritable place or an input file as ``--out`` before any work."""
    from .io.atomic import check_output

    check_output(out, inputs=inputs)


def _write_final(out: Path, write: Callable[[], object]) -> bool:
    """Run ``write()``, which a first Ctrl-C or SIGTERM lets complete; True when one came."""
    with finishing_write(out) as state:
        write()
    if state.interrupted:
        print(f"diffrecon: interrupted while writing {out}; the write completed first.", file=sys.stderr)
    return state.interrupted


def _check_result_suffix(out: Path) -> None:
    """A result is an HDF5 file; an image suffix is refused before any work, not written as HDF5."""
    if out.suffix.lower() not in (".h5", ".hdf5", ".nxs"):
        raise InputError(f"--out {out}: reconstruct writes an HDF5 result file (.h5, .hdf5 or .nxs); write "
                         f"{out.with_suffix('.h5').name} and export images from it with "
                         f"'diffrecon export {out.with_suffix('.h5').name} --what mean --out {out.name}'.")


def _summary(m) -> str:
    gt = ", with ground truth" if m.ground_truth is not None else ""
    return printable(f"{m.title} ({m.operator.kind}, image {tuple(m.operator.image_shape)}, y {tuple(m.y.shape)} "
            f"{m.y.dtype}, noise_sigma {m.noise_sigma:.4g}{gt})")


def _cmd_import(args) -> int:
    from .io import detect_import_format, import_file, write_measurement

    _check_out_folder(args.out, args.file)
    fmt = args.format
    if fmt == "auto":
        fmt = detect_import_format(args.file, allow_external=args.allow_external)
    _status(f"Importing {args.file} ({fmt}) ...")
    m = import_file(args.file, fmt, slice=args.slice, size=args.size, acceleration=args.acceleration,
                    center_fraction=args.center_fraction, seed=args.seed, allow_external=args.allow_external)
    interrupted = _write_final(args.out, lambda: write_measurement(args.out, m))
    print(f"Wrote {args.out}: {_summary(m)}.")
    source = str(m.attrs.get("noise_source", ""))
    print(f"{'warning: ' if source.startswith('not estimated') else ''}noise_sigma from {source}.",
          file=sys.stderr if source.startswith("not estimated") else sys.stdout)
    return EXIT_INTERRUPTED if interrupted else 0


def _option_value(kind: str, key: str, text: str, default):
    """``text`` as the type of the option's default (an unknown key stays text; simulate names it)."""
    if default is None or isinstance(default, float):
        if default is None and text.lower() in ("none", "auto"):
            return None
        try:
            return float(text)
        except ValueError:
            pass
    elif isinstance(default, int):
        try:
            return int(text)
        except ValueError:
            pass
    else:
        return text
    want = "an integer" if isinstance(default, int) else "a number" + (" or none" if default is None else "")
    raise InputError(f"--option {key}={text}: {key} of {kind} must be {want}.")


def _cmd_simulate(args) -> int:
    from .io import write_measurement
    from .io.importers import SIMULATE_OPTIONS, read_image, simulate

    _check_out_folder(args.out, args.image)
    if not (args.pixel_size > 0 and args.pixel_size < float("inf")):
        raise InputError(f"--pixel-size {args.pixel_size:g} is invalid; expected a positive number.")
    defaults = SIMULATE_OPTIONS[args.operator]
    options = {key: _option_value(args.operator, key, value, defaults.get(key, ""))
               for key, value in _parse_key_values(args.option, "--option", "n_views=60").items()}
    image = read_image(args.image, args.dataset, allow_external=args.allow_external)
    _status(f"Simulating {args.operator} from {args.image} {tuple(image.shape)} ...")
    m = simulate(image, args.operator, options, noise=args.noise, seed=args.seed, units=args.units,
                 pixel_size=args.pixel_size, pixel_unit=args.pixel_unit, size=args.size,
                 title=f"{args.image.name} simulated {args.operator}")
    interrupted = _write_final(args.out, lambda: write_measurement(args.out, m))
    print(f"Wrote {args.out}: {_summary(m)}.")
    return EXIT_INTERRUPTED if interrupted else 0


def _cmd_export(args) -> int:
    from .io.export import _FORMAT_OF_SUFFIX, export_result

    by_suffix = _FORMAT_OF_SUFFIX.get(args.out.suffix.lower())
    fmt = args.format or by_suffix
    if fmt is None:
        raise InputError(f"--out {args.out} has no image suffix; give --format tiff, png or h5 "
                         "(or the suffix .tif, .png or .h5).")
    if by_suffix is not None and by_suffix != fmt:
        raise InputError(f"--out {args.out} has the suffix of {by_suffix} but --format is {fmt}; make them agree.")
    _check_out_folder(args.out, args.result)
    written = []
    interrupted = _write_final(args.out, lambda: written.append(
        export_result(args.result, args.what, fmt, args.out, cmap=args.cmap)))
    print(f"Wrote {written[0]} ({args.what}, {fmt}).")
    return EXIT_INTERRUPTED if interrupted else 0


def _cmd_info(args) -> int:
    from .io import describe

    print("\n".join(printable(line) for line in describe(args.file).splitlines()))
    return 0


def _cmd_solvers(args) -> int:
    from .solvers import SOLVERS

    if not SOLVERS:
        print("No solvers are registered.")
        return 0
    from .solvers.labels import switches_text

    print(f"{'NAME':<12} {'SPREAD':<16} {'NEEDS':<14} TITLE")
    for name, info in SOLVERS.items():
        defaults = info.Params()
        output = info.spread_of(defaults).text
        needs = ",".join(sorted(info.needs)) or "-"
        print(f"{name:<12} {output:<16} {needs:<14} {info.title}")
        for f in dataclasses.fields(info.Params):
            lo, hi = f.metadata.get("range", (None, None))
            choices = f.metadata.get("choices")
            valid = ("{" + ", ".join(map(str, choices)) + "}") if choices else \
                (f"[{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}]" if (lo, hi) != (None, None) else "")
            help_ = f.metadata.get("help", "")
            print(f"    {f.name}={getattr(defaults, f.name)!r:<10} {valid:<18} {help_}".rstrip())
        for switch in switches_text(info):
            print(f"    spread with {switch}")
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


def _parse_key_values(items: Sequence[str], flag: str = "--param", example: str = "zeta=0.5") -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"{flag} {item!r} is not KEY=VALUE; write for example {flag} {example}.")
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

    from .calibration import status_text
    from .engine import Finished, Log, Planned, Preparing, Progress, RunConfig, run
    from .guard import Diverged, divergence_of, metric_notes, summary
    from .io import read_measurement, write_result
    from .solvers.labels import spread_text
    from .solvers import get_solver, parse_params

    _check_out_folder(args.out, args.file)
    _check_result_suffix(args.out)
    measurement = read_measurement(args.file, allow_external=args.allow_external)
    info = get_solver(args.solver)
    overrides = _parse_key_values(args.param)
    typed = parse_params(info.Params, overrides, args.solver)  # refuse bad values before any work
    config = RunConfig(
        solver=args.solver, params={k: getattr(typed, k) for k in overrides}, steps=args.steps,
        samples=args.samples, seed=args.seed, prior=args.prior, device=args.device,
        precision=args.precision, schedule=args.schedule, batch_size=args.batch_size, compile=args.compile,
        channels_last=args.channels_last, checkpointing=args.checkpointing,
        on_divergence=args.on_divergence, retry_on_divergence=args.retry_on_divergence,
        warm_start=args.warm_start, sigma_start=args.sigma_start,
    )
    weight_choice = None
    if args.weight == "auto":
        from .weights import choose_weight
        _status(f"Choosing the {args.solver} data weight by the discrepancy principle ...")
        weight_choice = choose_weight(measurement, config, progress=lambda k, n, v, r: _status(
            f"  trial {k}: value {v:.4g}, residual ratio {r:.3f}"))
        config = dataclasses.replace(config, params={**config.params, weight_choice.param: weight_choice.value},
                                     weight_choice=weight_choice.provenance())
        _status(f"Chose {weight_choice.param} = {weight_choice.value:.4g} (residual ratio "
                f"{weight_choice.residual_ratio:.3f}).")

    stop = threading.Event()
    result, batches = None, [args.samples]
    with ctrl_c_stops(stop, file=sys.stderr), contextlib.ExitStack() as stack:
        bar = None  # shown once the run is planned: a refused setting prints its sentence alone
        fitting = None
        for event in run(measurement, config, stop=stop):
            if isinstance(event, Planned):
                bar = stack.enter_context(tqdm(total=args.steps * args.samples, unit="step", desc=args.solver,
                                               file=sys.stderr, dynamic_ncols=True, leave=True))
                batches = list(event.batches) or batches
                tqdm.write(f"{event.device}: {len(batches)} batch(es) of {batches}, "
                           f"{event.nfe_per_sample} network evaluations per sample.", file=sys.stderr)
            elif isinstance(event, Progress):
                bar.n = min(bar.total, _steps_done(event, batches))
                bar.set_postfix_str(f"NFE {event.nfe}, mem {_memory_text(event.memory)}", refresh=False)
                bar.refresh()
            elif isinstance(event, Log):
                tqdm.write(f"{event.level}: {event.message}", file=sys.stderr)
            elif isinstance(event, Preparing):  # fitting a prior at a new size, before the plan
                fitting = fitting or stack.enter_context(tqdm(total=event.total, desc="fitting the prior",
                                                              file=sys.stderr, dynamic_ncols=True, leave=False))
                fitting.n = event.done
                fitting.set_postfix_str(event.what, refresh=True)
            elif isinstance(event, Diverged):
                tqdm.write(f"warning: {event.message}", file=sys.stderr)
            elif isinstance(event, Finished):
                result = event.result

    if result is None or result.n_samples < 1:
        print("diffrecon: stopped before any sample finished; no result written.", file=sys.stderr)
        return EXIT_INTERRUPTED
    if result.measurement is None:
        result.measurement = measurement
    notes = metric_notes(result)
    for key, value in result.metrics.items():
        print(f"{key:>24}: {value:.6g}" + (f"  ({notes[key]})" if key in notes else ""))
    print(f"{'std':>24}: {spread_text(result.spread)}, {status_text(result.provenance)}")
    interrupted = _write_final(args.out, lambda: write_result(args.out, result))
    diverged = divergence_of(result)
    state = ("diverged" if diverged else "complete" if result.complete else
             f"stopped early, {result.n_samples} of {args.samples} samples")
    print(f"Wrote {args.out} ({state}).")
    if summary(result):
        print(f"diffrecon: {summary(result)}", file=sys.stderr)
    if stop.is_set() or interrupted or not (result.complete or diverged):
        return EXIT_INTERRUPTED
    return EXIT_DIVERGED if diverged and not args.keep_going else 0


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
