"""Qt-free helpers that turn measurements and results into 2-D arrays for display.

Kept apart from the widgets so what the window shows is testable without a screen.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..measurement import Measurement
from ..session import direct_reconstruction, read_file


@dataclass
class View:
    """One image to show: a 2-D float array, a panel title and the unit for its colour bar."""

    title: str
    image: np.ndarray
    unit: str = ""


COMPLEX_MODES = ("magnitude", "phase", "real", "imaginary", "log magnitude")


def first_slice(a: np.ndarray) -> np.ndarray:
    """First channel/coil/slice of ``a`` as a 2-D array, complex kept complex."""
    a = np.asarray(a)
    while a.ndim > 2:
        a = a[0]
    return a[None, :] if a.ndim == 1 else a


def complex_part(a: np.ndarray, mode: str = "magnitude") -> np.ndarray:
    """One real view of complex data as float32 (silx's magnitude/phase/real/imaginary choice);
    ``log magnitude`` is log10(|a| + eps) with eps 1e-6 of the maximum, for k-space."""
    a = np.asarray(a)
    if mode == "phase":
        out = np.angle(a)
    elif mode == "real":
        out = a.real
    elif mode == "imaginary":
        out = a.imag if np.iscomplexobj(a) else np.zeros(a.shape)
    elif mode == "log magnitude":
        mag = np.abs(a)
        out = np.log10(mag + 1e-6 * max(float(mag.max(initial=0.0)), 1e-30))
    elif mode == "magnitude":
        out = np.abs(a) if np.iscomplexobj(a) else a
    else:
        raise ValueError(f"unknown complex view {mode!r}; valid views are {', '.join(COMPLEX_MODES)}")
    return np.ascontiguousarray(out, dtype=np.float32)


def to_2d(a: np.ndarray, mode: str = "magnitude") -> np.ndarray:
    """First channel/slice of ``a`` as a 2-D float32 image; complex as ``mode`` (see complex_part)."""
    return complex_part(first_slice(a), mode)


def measurement_views(measurement: Measurement, reconstruct=None) -> tuple[View, View | None]:
    """The measurement as users expect to see it, and its direct reconstruction (None on failure);
    ``reconstruct()`` computes the latter (default: :func:`diffrecon.session.direct_reconstruction`)."""
    from ..problems import display_of

    shown = display_of(measurement)
    y = np.asarray(measurement.y)
    # a sinogram is shown real; k-space and images keep complex data (the panel offers the views)
    image = to_2d(y) if shown.mode == "sinogram" else first_slice(y)
    first = View(shown.title, image, measurement.units if shown.in_image_units else "")
    direct_title = shown.direct_title
    try:
        x = reconstruct() if reconstruct is not None else direct_reconstruction(measurement)
        direct = View(direct_title, first_slice(x), measurement.units)
    except Exception:  # a display nicety: a failing direct inverse must not block opening a file
        direct = None
    return first, direct


def default_measurement() -> Measurement:
    """The bundled CT demo, so the first click on Reconstruct works without any file."""
    from .. import demo

    try:
        path = demo.demo_path("ct")
        if path is not None and Path(path).exists():
            return read_file(path).measurement
    except Exception:  # fall back to generating it: the bundled file is a convenience
        pass
    try:
        return demo.make_demo("ct", size=64, seed=0)
    except Exception:  # no CT operator in this installation: any demo beats an empty window
        for kind in demo.DEMO_KINDS:
            try:
                return demo.make_demo(kind, size=64, seed=0)
            except Exception:
                continue
        raise


def error_map(mean: np.ndarray, truth: np.ndarray | None) -> np.ndarray | None:
    if truth is None or np.shape(truth) != np.shape(mean):
        return None
    return np.asarray(mean, np.float32) - np.asarray(truth, np.float32)


def read_if_result(path: str | Path):
    """The :class:`~diffrecon.measurement.Result` in ``path`` if it is a result file, else None."""
    from ..errors import InputError
    from ..io import read_result
    from ..session.opening import diffrecon_kind

    try:
        kind = diffrecon_kind(Path(path))
    except InputError:
        return None
    return read_result(path) if kind == "result" else None
