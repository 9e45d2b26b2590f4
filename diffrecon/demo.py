"""Simulated demo measurements, one per imaging problem, and the bundled demo files.

``make_demo(kind, size, seed, noise)`` draws a test-set phantom (:func:`diffrecon.phantoms.phantom`
with ``TEST_SEEDS[seed]``, never a training image), scales it to physical units, applies the
forward model and adds white Gaussian noise from a ``torch.Generator`` seeded with ``seed``.
The units and noise of each demo are its entry in :mod:`diffrecon.problems.presets`.

``python -m diffrecon.demo --write-resources`` regenerates ``diffrecon/resources/demo/<kind>.h5``.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib.resources
import math
import sys
from pathlib import Path

import numpy as np
import torch

from .errors import InputError
from .measurement import Measurement
from .phantoms import TEST_SEEDS, phantom
from .problems import PROBLEMS, Demo, demo_names, problem

#: The demos, in order: the problem presets that have a demo (:mod:`diffrecon.problems`).
DEMO_KINDS = demo_names()
MRI_KINDS = tuple(k for k in DEMO_KINDS if PROBLEMS[k].kind == "mri")


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
    if kind not in DEMO_KINDS:
        raise InputError(f"Unknown demo {kind!r}; valid demos are {', '.join(DEMO_KINDS)}.")
    if size is None:
        size = problem(kind).demo.size
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
    drawn = TEST_SEEDS[seed] if phantom_seed is None else int(phantom_seed)
    m = demo_measurement(kind, phantom(int(size), drawn), seed, noise=noise, options=options)
    which = f"test phantom {seed}" if phantom_seed is None else f"phantom {phantom_seed}"
    attrs = {"demo_kind": kind, "demo_seed": seed}
    if phantom_seed is not None:
        attrs["phantom_seed"] = int(phantom_seed)
    return dataclasses.replace(m, title=f"{m.title} (demo, {which})", attrs=attrs)


def demo_measurement(kind: str, image: np.ndarray, seed: int = 0, *, noise: float | None = None,
                     options: dict | None = None) -> Measurement:
    """A measurement of ``image`` ((H, W), values 0 to 1 like a phantom) under demo problem ``kind``:
    scaled to the demo's physical units, measured by the preset's forward model with the demo's
    options (updated by ``options``; random masks seeded with ``seed``) and white noise at the
    demo's relative level (or of standard deviation ``noise``) from a generator seeded with ``seed``."""
    preset = problem(kind)
    setup = preset.demo
    if setup is None:
        raise InputError(f"Problem {kind!r} has no demo; valid demos are {', '.join(DEMO_KINDS)}.")
    options = preset.resolve({**setup.options, **(options or {})})
    image = np.asarray(image)
    op = preset.build((1, *image.shape[-2:]), options, seed=seed, pixel_size=setup.pixel_size)
    gt = (image * setup.scale).astype(np.float32).reshape(1, *image.shape[-2:])
    value_range = (0.0, float(setup.scale))
    with torch.no_grad():
        clean = op.A(torch.from_numpy(gt)[None])
        if noise is None:
            noise = _relative_noise(op, clean, setup, value_range)
        op.noise_sigma = float(noise)
        generator = torch.Generator().manual_seed(seed)
        y = clean + op.noise_like(clean, generator) if noise > 0 else clean
    y = y[0].cpu().numpy().astype(np.complex64 if op.is_complex else np.float32)
    return Measurement(
        y=y, operator=op.to_spec(), noise_sigma=float(noise), units=setup.units, value_range=value_range,
        ground_truth=gt, pixel_size=setup.pixel_size, pixel_unit=setup.pixel_unit,
        title=setup.title.format(**options),
    )


def _relative_noise(op, clean: torch.Tensor, setup: Demo, value_range: tuple[float, float]) -> float:
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
    if kind not in DEMO_KINDS:
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
