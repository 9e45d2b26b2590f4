"""The file commands: ``demo``, ``info``, ``import``, ``simulate`` and ``export``."""
from __future__ import annotations

import sys
from pathlib import Path

from ..errors import InputError, printable
from .options import check_out_folder, key_values, non_negative, positive, seed
from .progress import EXIT_INTERRUPTED, status, write_final
from .volume import distance, row_range, run_demo_volume, run_import_rows


def add_demo_parser(sub) -> None:
    from ..demo import DEMO_KINDS

    d = sub.add_parser("demo", help="write a simulated demo measurement")
    d.add_argument("kind", choices=(*DEMO_KINDS, "volume"), metavar="KIND",
                   help=f"one of {', '.join(DEMO_KINDS)}, or volume (a phantom volume measured slice by slice)")
    d.add_argument("--out", required=True, type=Path, help="measurement file to write (.h5)")
    d.add_argument("--size", type=positive, default=None, help="image size in pixels (default 128; rf 32; volume 32)")
    d.add_argument("--seed", type=seed, default=None, help="phantom and noise seed (default 0)")
    d.add_argument("--noise", type=float, default=None, help="noise standard deviation in the units of y")
    d.add_argument("--slices", type=positive, default=8, help="volume: number of slices (default 8)")
    d.add_argument("--problem", choices=DEMO_KINDS, default="ct", metavar="KIND",
                   help="volume: the demo problem measuring each slice (default ct)")
    d.add_argument("--z-spacing", type=distance, default=None,
                   help="volume: distance between slices in pixels (default 1)")
    d.set_defaults(func=run_demo)


def add_info_parser(sub) -> None:
    i = sub.add_parser("info", help="describe an HDF5 file")
    i.add_argument("file", type=Path)
    i.set_defaults(func=run_info)


def add_import_parser(sub) -> None:
    from ..io import IMPORT_FORMATS

    p = sub.add_parser("import", help="import a fastMRI, Data Exchange or NXtomo file as a measurement",
                       description="Import one slice of a file in a format scientists already have and write a "
                                   "diffrecon measurement file (see docs/importers.md).")
    p.add_argument("file", type=Path, help="fastMRI k-space, APS Data Exchange or NeXus NXtomo HDF5 file")
    p.add_argument("--out", required=True, type=Path, help="measurement file to write (.h5)")
    p.add_argument("--format", choices=("auto", *IMPORT_FORMATS), default="auto",
                   help="file format (default: from the file's layout)")
    p.add_argument("--slice", type=non_negative, default=None,
                   help="fastMRI slice or tomography detector row (default: the middle one)")
    p.add_argument("--rows", type=row_range, default=None, metavar="A:B",
                   help="slices or detector rows A to B-1 as one volume measurement file (B excluded)")
    p.add_argument("--size", type=positive, default=None, help="image size in pixels (default: as stored)")
    p.add_argument("--acceleration", type=float, default=None,
                   help="retrospective undersampling factor for fully sampled fastMRI k-space")
    p.add_argument("--center-fraction", type=float, default=None,
                   help="fully sampled centre fraction of the retrospective mask")
    p.add_argument("--seed", type=seed, default=0, help="seed of the retrospective mask (default 0)")
    p.add_argument("--allow-external", action="store_true", help="follow links to other HDF5 files")
    p.set_defaults(func=run_import)


def add_simulate_parser(sub) -> None:
    from ..problems import options_help, simulate_names

    kinds = simulate_names()
    options = "; ".join(f"{kind}: {options_help(kind)}" for kind in kinds)
    p = sub.add_parser("simulate", help="simulate a measurement of an image (TIFF, PNG, HDF5, DICOM, NIfTI)",
                       description=f"Simulate y = A x + noise from a ground-truth image. "
                                   f"Options (defaults): {options}.")
    p.add_argument("image", type=Path, help="ground-truth image: .tif, .png, an HDF5 file, a DICOM file or folder of "
                                            "slices, or a NIfTI volume (these carry their units and pixel size)")
    p.add_argument("--operator", required=True, choices=kinds, metavar="KIND",
                   help=f"forward model: {', '.join(kinds)}")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="forward-model option (repeatable), e.g. --option n_views=60")
    p.add_argument("--noise", required=True, type=float, help="noise standard deviation in the image's units")
    p.add_argument("--out", required=True, type=Path, help="measurement file to write (.h5)")
    p.add_argument("--seed", type=seed, default=0, help="seed of the mask and the noise (default 0)")
    p.add_argument("--dataset", default=None, help="dataset holding the image in an HDF5 file")
    p.add_argument("--units", default=None, help="unit of the image values (default a.u., or the DICOM/NIfTI file's)")
    p.add_argument("--pixel-size", type=float, default=None,
                   help="pixel pitch (default 1, or the DICOM/NIfTI file's); CT line integrals are image units "
                        "times this length")
    p.add_argument("--pixel-unit", default=None, help="unit of the pixel pitch (default px, or the DICOM/NIfTI file's)")
    p.add_argument("--slice", type=non_negative, default=None,
                   help="slice of a TIFF stack, DICOM series or NIfTI volume (default the middle one)")
    p.add_argument("--modality", choices=("auto", "ct", "other"), default=None,
                   help="DICOM/NIfTI: ct converts Hounsfield units to attenuation in 1/cm (auto: from the DICOM "
                        "header; NIfTI is other unless given)")
    p.add_argument("--mu-water", type=float, default=None,
                   help="DICOM/NIfTI CT: attenuation of water in 1/cm for the Hounsfield conversion (default 0.193)")
    p.add_argument("--size", type=positive, default=None,
                   help="resample the image to SIZE x SIZE first (the bundled prior was trained at 128; other sizes run on patches)")
    p.add_argument("--allow-external", action="store_true", help="follow links to other HDF5 files")
    p.set_defaults(func=run_simulate)


def add_export_parser(sub) -> None:
    from ..io.export import FORMATS, WHAT

    p = sub.add_parser("export", help="export a map of a result file as TIFF, PNG or HDF5",
                       description="Export the data (not screen pixels) of a result: float32 TIFF for ImageJ, "
                                   "colour-mapped PNG with a scale bar, or plain HDF5.")
    p.add_argument("result", type=Path, help="result file (.h5)")
    p.add_argument("--what", required=True, choices=WHAT, help="posterior mean, std, the stored samples, or "
                   "the signed error mean - ground truth")
    p.add_argument("--out", required=True, type=Path, help="file to write")
    p.add_argument("--format", choices=FORMATS, default=None, help="tiff, png or h5 (default: from --out's suffix)")
    p.add_argument("--cmap", default="viridis", help="colour map of the PNG (default viridis)")
    p.set_defaults(func=run_export)


# ------------------------------------------------------------------------------ the commands
def _summary(m) -> str:
    gt = ", with ground truth" if m.ground_truth is not None else ""
    return printable(f"{m.title} ({m.operator.kind}, image {tuple(m.operator.image_shape)}, y {tuple(m.y.shape)} "
                     f"{m.y.dtype}, noise_sigma {m.noise_sigma:.4g}{gt})")


def run_demo(args) -> int:
    from ..demo import make_demo
    from ..io import write_measurement

    check_out_folder(args.out)
    if args.kind == "volume":
        return run_demo_volume(args)
    m = make_demo(args.kind, size=args.size, seed=args.seed, noise=args.noise)
    interrupted = write_final(args.out, lambda: write_measurement(args.out, m))
    print(f"Wrote {args.out}: {m.title} (y {tuple(m.y.shape)} {m.y.dtype}, noise_sigma {m.noise_sigma:.4g}).")
    return EXIT_INTERRUPTED if interrupted else 0


def run_info(args) -> int:
    from ..io import describe

    print("\n".join(printable(line) for line in describe(args.file).splitlines()))
    return 0


def run_import(args) -> int:
    from ..io import detect_import_format, import_file, write_measurement

    check_out_folder(args.out, args.file)
    fmt = args.format
    if fmt == "auto":
        fmt = detect_import_format(args.file, allow_external=args.allow_external)
    status(f"Importing {args.file} ({fmt}) ...")
    if args.rows is not None:
        return run_import_rows(args, fmt)
    m = import_file(args.file, fmt, slice=args.slice, size=args.size, acceleration=args.acceleration,
                    center_fraction=args.center_fraction, seed=args.seed, allow_external=args.allow_external)
    interrupted = write_final(args.out, lambda: write_measurement(args.out, m))
    print(f"Wrote {args.out}: {_summary(m)}.")
    source = str(m.attrs.get("noise_source", ""))
    print(f"{'warning: ' if source.startswith('not estimated') else ''}noise_sigma from {source}.",
          file=sys.stderr if source.startswith("not estimated") else sys.stdout)
    return EXIT_INTERRUPTED if interrupted else 0


def run_simulate(args) -> int:
    from ..io import importers, write_measurement
    from ..io.importers.physical import physical_format
    from ..problems import parse_options

    check_out_folder(args.out, args.image)
    if args.pixel_size is not None and not (args.pixel_size > 0 and args.pixel_size < float("inf")):
        raise InputError(f"--pixel-size {args.pixel_size:g} is invalid; expected a positive number.")
    options = parse_options(args.operator, key_values(args.option, "--option", "n_views=60"))
    status(f"Simulating {args.operator} from {args.image} ...")
    if physical_format(args.image) is not None:  # DICOM / NIfTI: their units and pixel size unless overridden
        m = importers.open(args.image, operator=args.operator, options=options, noise=args.noise, seed=args.seed,
                           size=args.size, slice=args.slice, modality=args.modality, mu_water=args.mu_water,
                           units=args.units, pixel_size=args.pixel_size, pixel_unit=args.pixel_unit,
                           allow_external=args.allow_external)
    else:
        if args.modality is not None or args.mu_water is not None:
            raise InputError(f"--modality and --mu-water apply to DICOM and NIfTI images, not to {args.image}.")
        image = importers.read_image(args.image, args.dataset, allow_external=args.allow_external, slice=args.slice)
        m = importers.simulate(image, args.operator, options, noise=args.noise, seed=args.seed,
                               units=args.units or "a.u.", pixel_size=args.pixel_size or 1.0,
                               pixel_unit=args.pixel_unit or "px", size=args.size,
                               title=f"{args.image.name} simulated {args.operator}")
    interrupted = write_final(args.out, lambda: write_measurement(args.out, m))
    print(f"Wrote {args.out}: {_summary(m)}.")
    return EXIT_INTERRUPTED if interrupted else 0


def run_export(args) -> int:
    from ..io.export import _FORMAT_OF_SUFFIX, export_result

    by_suffix = _FORMAT_OF_SUFFIX.get(args.out.suffix.lower())
    fmt = args.format or by_suffix
    if fmt is None:
        raise InputError(f"--out {args.out} has no image suffix; give --format tiff, png or h5 "
                         "(or the suffix .tif, .png or .h5).")
    if by_suffix is not None and by_suffix != fmt:
        raise InputError(f"--out {args.out} has the suffix of {by_suffix} but --format is {fmt}; make them agree.")
    check_out_folder(args.out, args.result)
    written = []
    interrupted = write_final(args.out, lambda: written.append(
        export_result(args.result, args.what, fmt, args.out, cmap=args.cmap)))
    print(f"Wrote {written[0]} ({args.what}, {fmt}).")
    return EXIT_INTERRUPTED if interrupted else 0
