"""``diffrecon export-volume``: a volume result (``reconstruct-volume``'s file or the window's) as
an ImageJ hyperstack TIFF and/or a plain HDF5 volume, with a progress bar over the slices."""
from __future__ import annotations

import contextlib
from pathlib import Path

from ..errors import InputError
from .options import check_out_folder
from .progress import EXIT_INTERRUPTED, RunBar, write_final

_SUFFIXES = {"--tiff": (".tif", ".tiff"), "--h5": (".h5", ".hdf5")}


def add_export_volume_parser(sub) -> None:
    p = sub.add_parser("export-volume",
                       help="export a volume result as an ImageJ hyperstack TIFF and/or an HDF5 volume",
                       description="Write the mean and std of a volume result for other programs: a float32 ImageJ "
                                   "hyperstack TIFF (ZCYX, mean and std as channels, voxel size in the metadata) "
                                   "and/or an HDF5 file with /mean and /std, their units and voxel size.")
    p.add_argument("result", type=Path, help="volume result file (.h5), as reconstruct-volume writes it")
    p.add_argument("--tiff", type=Path, default=None, help="ImageJ hyperstack TIFF to write (.tif)")
    p.add_argument("--h5", type=Path, default=None, help="HDF5 volume to write (.h5)")
    p.set_defaults(func=run_export_volume)


def run_export_volume(args) -> int:
    from ..volume.export import export_h5, export_tiff
    from ..volume.file import read_volume

    targets = [(flag, path, writer) for flag, path, writer in (("--tiff", args.tiff, export_tiff),
                                                               ("--h5", args.h5, export_h5)) if path is not None]
    if not targets:
        raise InputError("export-volume needs --tiff FILE.tif, --h5 FILE.h5 or both.")
    for flag, path, _ in targets:
        if path.suffix.lower() not in _SUFFIXES[flag]:
            raise InputError(f"{flag} {path}: the file name must end in {' or '.join(_SUFFIXES[flag])}.")
        check_out_folder(path, args.result, flag=flag)
    if len(targets) == 2 and targets[0][1].resolve() == targets[1][1].resolve():
        raise InputError("--tiff and --h5 name the same file; give two names.")
    result = read_volume(args.result)
    z = result.mean.shape[0]
    interrupted = False
    for flag, path, writer in targets:
        with contextlib.ExitStack() as stack:
            bar = RunBar(stack, path.name, total=z, unit="slice")
            interrupted |= write_final(path, lambda: writer(path, result, progress=lambda done, _total: bar.set(done)))
        print(f"Wrote {path} ({'ImageJ hyperstack TIFF' if flag == '--tiff' else 'HDF5 volume'}, "
              f"{z} slices of {result.mean.shape[2]} x {result.mean.shape[3]}, mean and std).")
    return EXIT_INTERRUPTED if interrupted else 0
