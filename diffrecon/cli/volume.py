"""``diffrecon reconstruct-volume``: several measurement files of one forward model (one per
slice, in z order) reconstructed together as a volume; mean and std volumes in one HDF5 file."""
from __future__ import annotations

import argparse
import contextlib
import math
import sys
import threading
from pathlib import Path

from ..errors import InputError
from .options import add_run_options, check_out_folder, positive, run_config
from .progress import EXIT_INTERRUPTED, RunBar, ctrl_c_stops, say, write_final

def _weight(text: str) -> float:
    """An argparse type: a finite number >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"{value} must be a finite number >= 0")
    return value


_OPTIONS = ("steps", "samples", "seed", "prior", "param", "device", "precision", "schedule", "allow_external")


def add_reconstruct_volume_parser(sub) -> None:
    r = sub.add_parser("reconstruct-volume", help="reconstruct a stack of slice measurements as one volume "
                                                  "(DiffPIR, coupled along z)")
    r.add_argument("files", type=Path, nargs="+", help="measurement files, one per slice, in z order (at least 2)")
    r.add_argument("--out", required=True, type=Path, help="volume file to write (.h5): mean and std (Z, C, H, W)")
    r.add_argument("--lam-z", type=_weight, default=1.0,
                   help="weight of the z-difference term relative to the prior's (0: slice by slice; default 1)")
    r.add_argument("--slice-batch", type=positive, default=None,
                   help="slices the prior denoises at once (default: all)")
    add_run_options(r, _OPTIONS)
    r.set_defaults(func=run_reconstruct_volume)


def run_reconstruct_volume(args) -> int:
    from ..engine import Log, Planned, Progress
    from ..io import read_measurement
    from ..volume import VolumeFinished, reconstruct_volume, write_volume

    check_out_folder(args.out, *args.files)
    if args.out.suffix.lower() not in (".h5", ".hdf5"):
        raise InputError(f"--out {args.out}: reconstruct-volume writes an HDF5 file (.h5 or .hdf5).")
    if len(args.files) < 2:
        raise InputError(f"reconstruct-volume needs at least 2 slice files (got {len(args.files)}).")
    slices = [read_measurement(path, allow_external=args.allow_external) for path in args.files]
    config = run_config(args)
    stop = threading.Event()
    result = None
    with ctrl_c_stops(stop, file=sys.stderr), contextlib.ExitStack() as stack:
        bar = RunBar(stack, "volume")
        bar.start_run(args.samples, args.steps)
        for event in reconstruct_volume(slices, config, lam_z=args.lam_z, slice_batch=args.slice_batch, stop=stop):
            if isinstance(event, Planned):
                bar.planned(event)
            elif isinstance(event, Progress):
                bar.progress(event, f"NFE {event.nfe}")
            elif isinstance(event, Log):
                say(f"{event.level}: {event.message}")
            elif isinstance(event, VolumeFinished):
                result = event.result
    if result is None:
        print("diffrecon: stopped before any sample finished; no volume written.", file=sys.stderr)
        return EXIT_INTERRUPTED
    for key, value in result.metrics.items():
        print(f"{key:>24}: {value:.6g}")
    interrupted = write_final(args.out, lambda: write_volume(args.out, result))
    state = "complete" if result.complete else f"stopped early, {result.n_samples} of {args.samples} samples"
    print(f"Wrote {args.out} ({len(slices)} slices, {state}).")
    return EXIT_INTERRUPTED if stop.is_set() or interrupted or not result.complete else 0
