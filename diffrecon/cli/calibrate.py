"""``diffrecon calibrate``: measure how far one setting's std is off and store the correction."""
from __future__ import annotations

import argparse
import contextlib
import sys
import threading
from pathlib import Path

from .options import PRESET_DEFAULTS, add_run_options, run_config
from .progress import EXIT_INTERRUPTED, RunBar, ctrl_c_stops, say


def add_calibrate_parser(subparsers) -> argparse.ArgumentParser:
    from ..calibrate import DEFAULT_IMAGES

    c = subparsers.add_parser("calibrate", help="measure how far a solver's std is off for one setting and store "
                                                "the correction")
    c.add_argument("file", type=Path, help="measurement (or result) file: its forward model and noise level")
    add_run_options(c, ("quality", "solver", "steps"), **PRESET_DEFAULTS)
    add_run_options(c, ("samples",), samples=dict(default=8, help="samples per simulated measurement (K, at least 2)"))
    c.add_argument("--images", type=int, default=DEFAULT_IMAGES,
                   help="simulated measurements (at least 2); with --truths, how many of its images are used at most")
    c.add_argument("--truths", type=Path, default=None, metavar="PATH",
                   help="calibrate on your own representative images instead of procedural phantoms: a folder of "
                        "PNG/TIFF images, one (multi-page) PNG/TIFF file, or an HDF5 file with an (N,H,W) or "
                        "(N,C,H,W) stack; each is centre-cropped and resized to the measurement's image size")
    c.add_argument("--dataset", default=None, help="HDF5 dataset of --truths holding the image stack")
    add_run_options(c, ("seed", "prior", "param", "device", "precision", "schedule", "warm_start", "allow_external"),
                    prior=dict(help="default, gaussian, gmm, or a prior folder"))
    c.set_defaults(func=run_calibrate)
    return c


def run_calibrate(args) -> int:
    """``diffrecon calibrate``: 0 when stored, 130 when stopped by Ctrl-C (nothing stored)."""
    from ..calibrate import calibrate
    from ..calibration import store_path
    from ..engine import Finished, Log, Progress
    from ..io import read_measurement

    measurement = read_measurement(args.file, allow_external=args.allow_external)
    config = run_config(args)
    stop = threading.Event()
    cal = None
    with ctrl_c_stops(stop, file=sys.stderr), contextlib.ExitStack() as stack:
        bar = RunBar(stack, "calibrate", total=args.images * args.samples, unit="sample")
        for event in calibrate(measurement, config, args.images, stop=stop, truths=args.truths,
                               dataset=args.dataset, allow_external=args.allow_external):
            if isinstance(event, Log):
                say(f"{event.level}: {event.message}" if event.level != "info" else event.message)
            elif isinstance(event, Finished):
                cal = event.result
            elif isinstance(event, Progress):  # over all images; the bar starts once the settings are checked
                bar.total_hint = event.samples_total  # --truths may hold fewer images than --images
                bar.set(event.samples_done)
        if cal is not None and bar.bar is not None:
            bar.set(bar.bar.total)
    if cal is None:
        return EXIT_INTERRUPTED
    print(f"setting: {cal.setting}")
    print(f"coverage of the 90 % t-interval: {cal.coverage:.3f} uncorrected, {cal.coverage_calibrated:.3f} with "
          f"the std x {cal.scale:.4g} ({cal.n_images} images, K = {cal.samples})")
    print(f"RMS error / (sqrt(1 + 1/K) RMS std): {cal.error_to_std:.3f}")
    if cal.variance_ratio is not None:
        print(f"against the exact posterior: solver / exact variance {cal.variance_ratio:.3f}; exact draws "
              f"cover {cal.exact_coverage:.3f} on the same images")
    print(f"method: {cal.method}")
    print(f"Stored in {store_path()}; reconstructions of this setting now report: {cal.status()}.")
    return 0
