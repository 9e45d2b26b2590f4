"""Simulated demo measurements, one per imaging problem, and the bundled demo files.

``make_demo(kind, size, seed, noise)`` draws a test-set phantom (:func:`diffrecon.phantoms.phantom`
with ``TEST_SEEDS[seed]``, never a training image), scales it to physical units, applies the
forward model and adds white Gaussian noise from a ``torch.Generator`` seeded with ``seed``.
Units chosen:

* ``ct``, ``ct_limited``: linear attenuation 0 to 0.4 1/cm (soft tissue ~0.2, bone ~0.4 at
  ~70 keV), pixels of 0.1 cm, so the sinogram holds dimensionless line integrals; noise 1 % of
  the sinogram's maximum.
* ``mri``, ``mri_multicoil``: magnitude in arbitrary units 0 to 1; noise 2 % of the RMS of the
  measured k-space samples (a real image, so its k-space is Hermitian-symmetric).
* ``inpaint``, ``deblur``, ``sr``, ``denoise`` (microscopy-like intensity): a.u. 0 to 1; noise
  0.01 of the range (denoise: 0.1).
* ``rf``: dimensionless contrast 0 to 1 (relative permittivity minus one), 0.5 cm pixels, 16
  antennas on a circle one image width in radius, 2, 4 and 6 GHz; noise 2 % of the RMS of the
  scattered field.

``python -m diffrecon.demo --write-resources`` regenerates ``diffrecon/resources/demo/<kind>.h5``.
"""
from __future__ import annotations

import argparse
import importlib.resources
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .errors import InputError
from .measurement import Measurement
from .phantoms import TEST_SEEDS, phantom

DEMO_KINDS = ("ct", "ct_limited", "mri", "mri_multicoil", "inpaint", "deblur", "sr", "denoise", "rf")
DEFAULT_SIZE = 128
RF_DEFAULT_SIZE = 32
CT_PIXEL_CM = 0.1
RF_PIXEL_CM = 0.5
RF_FREQUENCIES_HZ = (2e9, 4e9, 6e9)
MRI_ACCELERATION = 4.0
MRI_KINDS = ("mri", "mri_multicoil")


@dataclass(frozen=True)
class _Setup:
    title: str  # may hold {acceleration} (the MRI demos)
    build: Callable[..., object]  # (image_shape, seed[, acceleration]) -> operator
    scale: float  # physical units per phantom unit
    units: str
    pixel_size: float
    pixel_unit: str
    noise_ref: str  # "max" | "rms" | "range": what the relative noise level refers to
    noise_rel: float


def _ct(image_shape, seed):
    from .operators import ParallelBeamCT, sparse_view_angles
    return ParallelBeamCT(image_shape, sparse_view_angles(30), pixel_size=CT_PIXEL_CM)


def _ct_limited(image_shape, seed):
    from .operators import ParallelBeamCT, limited_angle_angles
    return ParallelBeamCT(image_shape, limited_angle_angles(90.0, 60), pixel_size=CT_PIXEL_CM)


def _mri(image_shape, seed, acceleration=MRI_ACCELERATION):
    from .operators import MRI, cartesian_mask
    return MRI(image_shape, cartesian_mask(image_shape[-2:], acceleration=acceleration, seed=seed))


def _mri_multicoil(image_shape, seed, acceleration=MRI_ACCELERATION):
    from .operators import MRI, birdcage_maps, cartesian_mask
    return MRI(image_shape, cartesian_mask(image_shape[-2:], acceleration=acceleration, seed=seed),
               coil_maps=birdcage_maps(image_shape[-2:], 8))


def _inpaint(image_shape, seed):
    from .operators import Inpaint, random_mask
    return Inpaint(image_shape, random_mask(image_shape, 0.7, seed=seed))


def _deblur(image_shape, seed):
    from .operators import Blur, gaussian_kernel
    return Blur(image_shape, gaussian_kernel(13, 2.0))


def _sr(image_shape, seed):
    from .operators import SuperResolution
    return SuperResolution(image_shape, factor=4)


def _denoise(image_shape, seed):
    from .operators.identity import Denoise
    return Denoise(image_shape)


def _rf(image_shape, seed):
    from .operators import RFBorn
    # Antennas one image width from the centre: outside the image's half diagonal (0.71 widths).
    width_m = image_shape[-1] * RF_PIXEL_CM / 100
    return RFBorn(image_shape, RF_FREQUENCIES_HZ, n_antennas=16, radius_m=width_m, pixel_size_m=RF_PIXEL_CM / 100)


_SETUPS: dict[str, _Setup] = {
    "ct": _Setup("Sparse-view CT, 30 views", _ct, 0.4, "1/cm", CT_PIXEL_CM, "cm", "max", 0.01),
    "ct_limited": _Setup("Limited-angle CT, 90 degrees, 60 views", _ct_limited, 0.4, "1/cm", CT_PIXEL_CM, "cm",
                         "max", 0.01),
    "mri": _Setup("Single-coil MRI, random Cartesian x{acceleration:g}", _mri, 1.0, "a.u.", 1.0, "mm", "rms", 0.02),
    "mri_multicoil": _Setup("8-coil MRI (birdcage maps), random Cartesian x{acceleration:g}", _mri_multicoil, 1.0, "a.u.",
                            1.0, "mm", "rms", 0.02),
    "inpaint": _Setup("Inpainting, 70 % of pixels missing", _inpaint, 1.0, "a.u.", 1.0, "px", "range", 0.01),
    "deblur": _Setup("Deblurring, Gaussian kernel std 2 px", _deblur, 1.0, "a.u.", 1.0, "px", "range", 0.01),
    "sr": _Setup("Super-resolution x4", _sr, 1.0, "a.u.", 1.0, "px", "range", 0.01),
    "denoise": _Setup("Denoising, noise 0.1 of the range", _denoise, 1.0, "a.u.", 1.0, "px", "range", 0.1),
    "rf": _Setup("RF inverse scattering (Born), 16 antennas, 2/4/6 GHz", _rf, 1.0, "1", RF_PIXEL_CM, "cm", "rms", 0.02),
}


def make_demo(kind: str, size: int | None = None, seed: int | None = None, noise: float | None = None,
              *, phantom_seed: int | None = None, acceleration: float | None = None) -> Measurement:
    """A simulated measurement of test phantom ``seed`` (default 0) under demo problem ``kind``.

    ``seed`` picks the phantom ``TEST_SEEDS[seed]`` and seeds the random mask and the noise.
    ``phantom_seed`` draws ``phantom(size, phantom_seed)`` instead (a validation phantom, say);
    ``seed`` then only seeds the mask and the noise and may be any integer >= 0. ``noise``
    overrides the noise standard deviation, in the units of ``y``; ``size`` None means 128 (32
    for ``rf``, whose Born operator is a dense matrix); ``acceleration`` (MRI demos only, default
    4) is the undersampling factor of the Cartesian mask.
    """
    if kind not in _SETUPS:
        raise InputError(f"Unknown demo {kind!r}; valid demos are {', '.join(DEMO_KINDS)}.")
    setup = _SETUPS[kind]
    if size is None:
        size = RF_DEFAULT_SIZE if kind == "rf" else DEFAULT_SIZE
    if size < 8 or size > 1024:
        raise InputError(f"Demo size {size} is out of range; valid sizes are 8 to 1024 pixels.")
    seed = 0 if seed is None else int(seed)
    if phantom_seed is None and not 0 <= seed < len(TEST_SEEDS):
        raise InputError(f"Demo seed {seed} is out of range; valid seeds are 0 to {len(TEST_SEEDS) - 1}.")
    if seed < 0:
        raise InputError(f"Demo seed {seed} is negative; valid seeds are integers >= 0.")
    if noise is not None and not (math.isfinite(noise) and noise >= 0):
        raise InputError(f"Demo noise {noise} is invalid; it must be a finite number >= 0.")
    options = {}
    if acceleration is not None:
        if kind not in MRI_KINDS:
            raise InputError(f"Demo acceleration applies to the MRI demos ({', '.join(MRI_KINDS)}), not to {kind!r}.")
        if not (math.isfinite(acceleration) and acceleration >= 1):
            raise InputError(f"Demo acceleration {acceleration} is invalid; it must be a finite number >= 1.")
        options["acceleration"] = float(acceleration)
    image_shape = (1, int(size), int(size))
    try:
        op = setup.build(image_shape, seed, **options)
    except ImportError as err:
        raise InputError(f"Demo {kind!r} needs a forward model this installation lacks ({err}).") from None

    drawn = TEST_SEEDS[seed] if phantom_seed is None else int(phantom_seed)
    gt = (phantom(int(size), drawn) * setup.scale).astype(np.float32)[None]
    value_range = (0.0, float(setup.scale))
    with torch.no_grad():
        clean = op.A(torch.from_numpy(gt)[None])
        if noise is None:
            noise = _relative_noise(op, clean, setup, value_range)
        op.noise_sigma = float(noise)
        generator = torch.Generator().manual_seed(seed)
        y = clean + op.noise_like(clean, generator) if noise > 0 else clean
    y = y[0].cpu().numpy().astype(np.complex64 if op.is_complex else np.float32)
    spec = op.to_spec()
    title = setup.title.format(acceleration=options.get("acceleration", MRI_ACCELERATION))
    which = f"test phantom {seed}" if phantom_seed is None else f"phantom {phantom_seed}"
    attrs = {"demo_kind": kind, "demo_seed": seed}
    if phantom_seed is not None:
        attrs["phantom_seed"] = int(phantom_seed)
    return Measurement(
        y=y, operator=spec, noise_sigma=float(noise), units=setup.units, value_range=value_range,
        ground_truth=gt, pixel_size=setup.pixel_size, pixel_unit=setup.pixel_unit,
        title=f"{title} (demo, {which})", attrs=attrs,
    )


def _relative_noise(op, clean: torch.Tensor, setup: _Setup, value_range: tuple[float, float]) -> float:
    if setup.noise_ref == "range":
        return setup.noise_rel * (value_range[1] - value_range[0])
    magnitude = clean.abs()
    if setup.noise_ref == "max":
        return setup.noise_rel * float(magnitude.max())
    mask = op.measured()
    if mask is not None:
        magnitude = magnitude[0][mask.expand_as(magnitude[0])]
    return setup.noise_rel * float(magnitude.square().mean().sqrt())


# ------------------------------------------------------------------------------ bundled files
def demo_path(kind: str) -> Path:
    """The bundled demo file of ``kind`` (``diffrecon/resources/demo/<kind>.h5``)."""
    if kind not in _SETUPS:
        raise InputError(f"Unknown demo {kind!r}; valid demos are {', '.join(DEMO_KINDS)}.")
    path = Path(str(importlib.resources.files("diffrecon") / "resources" / "demo" / f"{kind}.h5"))
    if not path.is_file():
        raise InputError(f"Bundled demo file {path} is missing; regenerate it with "
                         "python -m diffrecon.demo --write-resources.")
    return path


def write_resources(folder: Path | None = None, kinds=DEMO_KINDS) -> list[Path]:
    """Regenerate the bundled demo files (128 x 128; rf 32 x 32), seed 0."""
    from .io import write_measurement

    folder = Path(folder) if folder else Path(str(importlib.resources.files("diffrecon"))) / "resources" / "demo"
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for kind in kinds:
        path = folder / f"{kind}.h5"
        write_measurement(path, make_demo(kind, size=None))
        written.append(path)
    return written


def _main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m diffrecon.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--write-resources", action="store_true", help="regenerate the bundled demo files")
    parser.add_argument("--folder", type=Path, default=None, help="write there instead of the package")
    args = parser.parse_args(argv)
    if not args.write_resources:
        parser.print_help()
        return 2
    for path in write_resources(args.folder):
        print(f"{path.name}: {path.stat().st_size / 1024:.0f} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(_main())
