"""The command line's parser class, its argument types and the one set of run options.

Every command that runs the engine (``reconstruct``, ``compare``, ``calibrate``, and later
``batch``) adds its run options with :func:`add_run_options`, naming the ones it offers, and turns
the parsed arguments into the engine's settings with :func:`run_config`. A flag is therefore
spelled, typed, checked and documented once; a command differs only in which flags it offers and
in their defaults.
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any, Sequence

from ..errors import InputError

EXIT_USAGE = 2  # every error a user can cause: one sentence on stderr
EXIT_DIVERGED = 3  # a sample diverged (without --keep-going); the result file is written, flagged


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (exit 2) like every other user error."""

    def error(self, message: str):  # noqa: D401 - argparse's hook
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see {self.prog} --help).\n")


# ------------------------------------------------------------------------------ argument types
def device(text: str) -> str:
    if re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", text):
        return text
    raise argparse.ArgumentTypeError(f"invalid device {text!r}; valid devices are auto, cpu, cuda, cuda:N, mps")


def at_least(minimum: int):
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


positive = at_least(1)
non_negative = at_least(0)


def seed(text: str) -> int:
    """An argparse type: a seed in 0 .. MAX_SEED, refused before any work."""
    from ..limits import MAX_SEED

    value = non_negative(text)
    if value > MAX_SEED:
        raise argparse.ArgumentTypeError(f"{value} exceeds the largest seed {MAX_SEED}")
    return value


def int_list(text: str) -> list[int]:
    """An argparse type: comma-separated integers, at least one."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers") from None
    if not values:
        raise argparse.ArgumentTypeError("the list is empty")
    return values


def key_values(items: Sequence[str], flag: str = "--param", example: str = "zeta=0.5") -> dict[str, str]:
    """``["a=1", "b=x"]`` -> ``{"a": "1", "b": "x"}``; anything else is refused naming ``flag``."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"{flag} {item!r} is not KEY=VALUE; write for example {flag} {example}.")
        out[key.strip()] = value.strip()
    return out


# ------------------------------------------------------------------------------ the run options
SCHEDULES = ("karras", "vp_uniform", "vp_quadratic", "vp_sde", "budget")

#: Every run option once: its flags and argparse keywords. ``default`` may be overridden per command.
RUN_OPTIONS: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "solver": (("--solver",), dict(default="diffpir", help="solver name (see diffrecon solvers); default diffpir")),
    "steps": (("--steps",), dict(type=positive, default=50)),
    "quality": (("--quality",), dict(
        choices=("fast", "full"), default="fast",
        help="quality preset: fast (a few-step solver, seconds) or full (DiffPIR, 50 steps); --solver, "
             "--steps and --param override its settings; default fast")),
    "samples": (("--samples",), dict(type=positive, default=4)),
    "seed": (("--seed",), dict(type=seed, default=0)),
    "prior": (("--prior",), dict(default="default", help="default, gaussian, or a prior folder")),
    "param": (("--param",), dict(action="append", default=[], metavar="KEY=VALUE",
                                 help="solver parameter (repeatable)")),
    "device": (("--device",), dict(type=device, default="auto", help="auto, cpu, cuda, cuda:N or mps")),
    "precision": (("--precision",), dict(choices=("bf16", "fp32"), default="bf16")),
    "schedule": (("--schedule",), dict(
        choices=SCHEDULES, default="karras",
        help="noise levels of the steps: karras (EDM), vp_uniform (DDIM), vp_quadratic (DiffPIR), "
             "vp_sde (uniform time of the VP SDE), budget (levels searched for this prior, forward model, "
             "solver and number of steps, about 80 solver runs the first time, then cached)")),
    "compile": (("--compile",), dict(
        choices=("auto", "none", "graphs", "compile"), default="auto",
        help="how the network runs on CUDA: CUDA graphs, torch.compile, or eagerly; auto compiles "
             "large networks when the run is long enough to pay for the compile, else graphs")),
    "channels_last": (("--channels-last",), dict(action="store_true", help="channels-last network on CUDA")),
    "checkpointing": (("--checkpointing",), dict(
        action="store_true",
        help="gradient checkpointing for DPS-type solvers: less memory, about a third more time")),
    "batch_size": (("--batch-size",), dict(type=positive, default=None,
                                           help="samples per batch (default: what fits)")),
    "warm_start": (("--warm-start",), dict(
        choices=("none", "tv"), default=None,
        help="tv: start the diffusion from the TV reconstruction noised to a level estimated from its "
             "error (CCDF); the steps are spent below that level, and the spread is a seed spread; "
             "none: from noise. Default: the quality preset's (fast: tv, full: none), else none")),
    "sigma_start": (("--sigma-start",), dict(
        type=float, default=None,
        help="warm-start noise level in the prior's units (default: from the error estimate)")),
    "weight": (("--weight",), dict(
        choices=("manual", "auto"), default="manual",
        help="auto: choose the solver's data weight by the discrepancy principle first (tv, cg, diffpir, "
             "dps); the choice is recorded in the result's provenance")),
    "allow_external": (("--allow-external",), dict(action="store_true", help="follow links to other HDF5 files")),
    "on_divergence": (("--on-divergence",), dict(
        choices=("sample", "all", "continue"), default="sample",
        help="when a sample diverges: stop it and go on with the others (default), stop the run, "
             "or only report it")),
    "retry_on_divergence": (("--retry-on-divergence",), dict(
        action="store_true",
        help="after a divergence, run once more with a quarter of the guidance weight (recorded)")),
    "keep_going": (("--keep-going",), dict(
        action="store_true",
        help=f"exit 0 even if a sample diverged (default: exit {EXIT_DIVERGED}; the result is flagged)")),
}

#: What ``reconstruct`` offers: all of them, in this order.
ALL = tuple(RUN_OPTIONS)


def add_run_options(parser: argparse.ArgumentParser, names: Sequence[str], **overrides: dict[str, Any]) -> None:
    """Add the run options ``names`` (keys of :data:`RUN_OPTIONS`) to ``parser``; ``overrides`` maps
    a name to argparse keywords that replace the shared ones for this command (a default, a help)."""
    for name in names:
        flags, kwargs = RUN_OPTIONS[name]
        parser.add_argument(*flags, **{**kwargs, **overrides.get(name, {})})
    parser.set_defaults(run_options=(*(parser.get_default("run_options") or ()), *names))


#: ``add_run_options`` overrides for a command that offers ``--quality``: solver and steps default
#: to the preset's (None until :func:`run_config` resolves the preset).
PRESET_DEFAULTS: dict[str, dict[str, Any]] = {
    "solver": dict(default=None, help="solver name (see diffrecon solvers); default: the --quality preset's"),
    "steps": dict(type=positive, default=None, help="default: the --quality preset's"),
}

#: RunConfig fields set from the option of the same name when a command offers it.
_CONFIG_FIELDS = ("solver", "steps", "samples", "seed", "prior", "device", "precision", "schedule", "compile",
                  "channels_last", "checkpointing", "batch_size", "warm_start", "sigma_start", "on_divergence",
                  "retry_on_divergence")


def run_config(args: argparse.Namespace, **fields: Any):
    """The engine's settings from the run options in ``args`` (those the command offers; the others
    keep the engine's defaults) and ``fields``. ``--param`` values are parsed with the solver's
    parameter types here, so a bad value is refused before any work."""
    from ..engine import RunConfig

    offered = set(getattr(args, "run_options", ()))
    values = {name: getattr(args, name) for name in _CONFIG_FIELDS if name in offered}
    if values.get("warm_start", "") is None:  # not given: the preset's, or the engine's default
        del values["warm_start"]
        if values.get("schedule") == "budget":  # the budget schedule is searched for runs from noise
            values["warm_start"] = "none"
    if "param" in offered:
        from ..solvers import get_solver, parse_params

        solver = values.get("solver") or (_preset_solver(args.quality) if "quality" in offered else RunConfig.solver)
        overrides = key_values(args.param)
        typed = parse_params(get_solver(solver).Params, overrides, solver)
        values["params"] = {k: getattr(typed, k) for k in overrides}
    if "quality" in offered:  # the preset's solver, steps and params where none were given
        from ..engine.presets import resolve

        values.update(resolve(args.quality, values.get("solver"), values.get("steps"), values.get("params"),
                              values.get("warm_start")))
    return RunConfig(**{**values, **fields})


def with_posterior_mode(config, args):
    """``config`` with its solver's posterior-mode parameters (``--posterior``) under the ``--param``
    values given (not under a preset's), from noise unless ``--warm-start`` was given (a warm start
    makes the spread a seed spread), or InputError naming the solvers that have one."""
    import dataclasses

    from ..errors import InputError
    from ..solvers import SOLVERS, get_solver

    mode = dict(get_solver(config.solver).posterior_mode)
    if not mode:
        with_mode = ", ".join(name for name, info in SOLVERS.items() if info.posterior_mode)
        raise InputError(f"--posterior: {config.solver} has no posterior mode; solvers with one are {with_mode}.")
    given = set(key_values(args.param)) if getattr(args, "param", None) else set()
    params = {**mode, **{k: v for k, v in dict(config.params or {}).items() if k in given}}
    warm = config.warm_start if getattr(args, "warm_start", None) is not None else "none"
    return dataclasses.replace(config, params=params, warm_start=warm)


def _preset_solver(name: str) -> str:
    from ..engine.presets import preset

    return preset(name)["solver"]


def check_out_folder(out: Path, *inputs: Path, flag: str = "--out") -> None:
    """Refuse a folder, an unwritable place or an input file as ``--out`` before any work."""
    from ..io.atomic import check_output

    check_output(out, inputs=inputs, flag=flag)
