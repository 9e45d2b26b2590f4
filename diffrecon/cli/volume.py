"""``diffrecon reconstruct-volume``: a volume measurement file (or several measurement files of one
forward model, one per slice, in z order) reconstructed as one volume; mean and std volumes in
one HDF5 file. Also the volume parts of ``import --rows`` and ``demo volume``."""
from __future__ import annotations

import argparse
import contextlib
import math
import sys
import threading
from pathlib import Path

from ..errors import InputError
from .options import add_run_options, check_out_folder, positive, run_config, with_posterior_mode
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


def distance(text: str) -> float:
    """An argparse type: a finite number > 0."""
    value = _weight(text)
    if value == 0:
        raise argparse.ArgumentTypeError("0 is not a distance; it must be above 0")
    return value


def row_range(text: str) -> tuple[int, int]:
    """An argparse type: ``A:B``, rows A to B - 1 (B excluded, as in Python)."""
    first, sep, end = text.partition(":")
    try:
        a, b = int(first), int(end)
    except ValueError:
        a = b = -1
    if not sep or a < 0 or b < a + 2:
        raise argparse.ArgumentTypeError(f"{text!r} is not a range A:B of at least 2 rows (0 <= A, A + 2 <= B; "
                                         "B excluded)")
    return a, b


_OPTIONS = ("solver", "steps", "samples", "seed", "prior", "param", "device", "precision", "schedule",
            "allow_external")


def add_reconstruct_volume_parser(sub) -> None:
    r = sub.add_parser("reconstruct-volume", help="reconstruct a volume measurement (or slice measurements of one "
                                                  "forward model) as one volume, coupled along z")
    r.add_argument("files", type=Path, nargs="+",
                   help="one volume measurement file (diffrecon import --rows, diffrecon demo volume), or "
                        "measurement files, one per slice, in z order (at least 2)")
    r.add_argument("--out", required=True, type=Path, help="volume file to write (.h5): mean and std (Z, C, H, W)")
    r.add_argument("--rows", type=row_range, default=None, metavar="A:B",
                   help="slices A to B-1 of a volume measurement file (default: all)")
    r.add_argument("--lam-z", type=_weight, default=None,
                   help="weight of the z-difference term relative to the prior's (0: slice by slice; default: "
                        "1 / z_spacing^2)")
    r.add_argument("--z-spacing", type=distance, default=None,
                   help="distance between slices in pixels (default: the volume file's, else 1)")
    r.add_argument("--posterior", action="store_true",
                   help="DiffPIR's posterior path (lam=1, zeta=1, perturb, r_variance=prior) instead of its defaults")
    r.add_argument("--slice-batch", type=positive, default=None,
                   help="slices the prior denoises at once (default: the engine's batch plan; halved when "
                        "memory runs out)")
    add_run_options(r, _OPTIONS, solver=dict(help="diffpir, dds or ddnm (default diffpir)"))
    r.set_defaults(func=run_reconstruct_volume)


def _read_slices(args):
    """The volume of ``args.files``: one volume measurement file, or slice files."""
    from ..io import read_measurement
    from ..volume import VolumeMeasurement, is_volume_measurement, read_volume_measurement

    if len(args.files) == 1 and is_volume_measurement(args.files[0]):
        return read_volume_measurement(args.files[0], rows=args.rows, allow_external=args.allow_external)
    if args.rows is not None:
        raise InputError("--rows selects slices of one volume measurement file; give one such file, or the "
                         "slice files without --rows.")
    if len(args.files) < 2:
        raise InputError(f"reconstruct-volume needs one volume measurement file or at least 2 slice files; "
                         f"{args.files[0]} is not a volume measurement.")
    return VolumeMeasurement([read_measurement(p, allow_external=args.allow_external) for p in args.files])


def run_reconstruct_volume(args) -> int:
    from ..engine import Log, Planned, Progress
    from ..volume import VolumeFinished, reconstruct_volume, write_volume
    from ..volume.file import with_geometry

    check_out_folder(args.out, *args.files)
    if args.out.suffix.lower() not in (".h5", ".hdf5"):
        raise InputError(f"--out {args.out}: reconstruct-volume writes an HDF5 file (.h5 or .hdf5).")
    config = run_config(args)
    if args.posterior:
        if config.solver != "diffpir":
            raise InputError(f"--posterior is DiffPIR's posterior path; it does not apply to --solver {config.solver}.")
        config = with_posterior_mode(config, args)
    volume = _read_slices(args)
    stop = threading.Event()
    result = None
    with ctrl_c_stops(stop, file=sys.stderr), contextlib.ExitStack() as stack:
        bar = RunBar(stack, "volume")
        bar.start_run(args.samples, args.steps)
        for event in reconstruct_volume(volume, config, lam_z=args.lam_z, z_spacing=args.z_spacing,
                                        slice_batch=args.slice_batch, stop=stop):
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
    first = volume.slices[0] if hasattr(volume, "slices") else volume[0]
    z_pixels = args.z_spacing if args.z_spacing is not None else getattr(volume, "z_spacing", 1.0)
    result = with_geometry(result, z_spacing=float(z_pixels) * first.pixel_size, pixel_size=first.pixel_size,
                           pixel_unit=first.pixel_unit)  # the exports' voxel size
    interrupted = write_final(args.out, lambda: write_volume(args.out, result))
    state = "complete" if result.complete else f"stopped early, {result.n_samples} of {args.samples} samples"
    print(f"Wrote {args.out} ({len(volume.slices)} slices, {config.solver}, lam_z {result.provenance['lam_z']:g}, "
          f"{state}).")
    return EXIT_INTERRUPTED if stop.is_set() or interrupted or not result.complete else 0


def run_import_rows(args, fmt: str) -> int:
    """``diffrecon import FILE --rows A:B``: rows A .. B-1 as one volume measurement file."""
    from ..volume import import_volume, write_volume_measurement

    if args.slice is not None:
        raise InputError("--slice and --rows exclude each other: --slice imports one slice, --rows a range.")
    volume = import_volume(args.file, args.rows, fmt, allow_external=args.allow_external, size=args.size,
                           acceleration=args.acceleration, center_fraction=args.center_fraction,
                           seed=args.seed if args.acceleration is not None else None)
    first = volume.slices[0]
    interrupted = write_final(args.out, lambda: write_volume_measurement(args.out, volume.slices,
                                                                         z_spacing=volume.z_spacing))
    print(f"Wrote {args.out}: {len(volume.slices)} slices (rows {args.rows[0]} to {args.rows[1] - 1}) of "
          f"{first.operator.kind}, image {tuple(first.operator.image_shape)}, slices {volume.z_spacing:.4g} px apart, "
          f"noise_sigma {first.noise_sigma:.4g}.")
    source = str(first.attrs.get("noise_source", ""))
    print(f"{'warning: ' if source.startswith('not estimated') else ''}noise_sigma from {source}.",
          file=sys.stderr if source.startswith("not estimated") else sys.stdout)
    return EXIT_INTERRUPTED if interrupted else 0


def run_demo_volume(args) -> int:
    """``diffrecon demo volume``: a small phantom volume measured slice by slice, as one volume measurement file."""
    from ..volume import volume_demo, write_volume_measurement

    z_spacing = args.z_spacing if args.z_spacing is not None else 1.0
    slices = volume_demo(args.slices, args.size or 32, kind=args.problem, seed=args.seed or 0, noise=args.noise,
                         z_spacing=z_spacing)
    interrupted = write_final(args.out, lambda: write_volume_measurement(args.out, slices, z_spacing=z_spacing))
    first = slices[0]
    print(f"Wrote {args.out}: phantom volume of {len(slices)} slices, {args.problem} "
          f"(image {tuple(first.operator.image_shape)}, y {tuple(first.y.shape)} per slice, slices {z_spacing:g} px "
          f"apart, noise_sigma {first.noise_sigma:.4g}).")
    return EXIT_INTERRUPTED if interrupted else 0
