"""Where an imported measurement's noise level comes from: estimated from the data, or refused.

An importer never writes ``noise_sigma = 0`` silently. It estimates the level from what the file
holds (a flat-field series, the detector background, the k-space corners) and records how in the
measurement attribute ``noise_source``; where nothing in the file can tell, the level stays 0 and
``noise_source`` says that it was not estimated and that the user must set it.
"""
from __future__ import annotations

import numpy as np

#: Fraction of detector bins on each side of a sinogram read as background (outside the object).
EDGE_FRACTION = 0.05
#: Background bins whose median line integral exceeds this are not empty (transmission < ~98 %).
MAX_BACKGROUND = 0.02
NOT_ESTIMATED = "not estimated"


def robust_std(values: np.ndarray) -> float:
    """``1.4826 * median(|v - median(v)|)``: the standard deviation of Gaussian noise, robust to outliers."""
    v = np.asarray(values, dtype=np.float64).ravel()
    return float(1.4826 * np.median(np.abs(v - np.median(v)))) if v.size else 0.0


def from_flat_fields(flats: np.ndarray, dark: np.ndarray | None, sino: np.ndarray) -> tuple[float, str] | None:
    """Noise of ``y = -log T`` from a series of flat fields ``(frames, columns)`` (raw counts).

    Photon noise: one frame's relative variance ``r = var(F_i) / (F - D)^2`` at full beam grows to
    ``r / T`` at transmission ``T``; dividing by the mean of ``n`` flats adds ``r / n``. The
    returned level is that of a ray at the sinogram's median transmission. None with fewer than 2 frames.
    """
    flats = np.asarray(flats, dtype=np.float64)
    if flats.ndim != 2 or flats.shape[0] < 2:
        return None
    beam = flats.mean(axis=0) - (0.0 if dark is None else dark)
    ok = beam > 0
    if not ok.any():
        return None
    rel_var = float(np.median(flats[:, ok].var(axis=0, ddof=1) / beam[ok] ** 2))
    inv_t = float(np.median(np.exp(np.clip(sino, None, 50.0))))
    sigma = float(np.sqrt(rel_var * (inv_t + 1.0 / flats.shape[0])))
    if not sigma > 0:
        return None  # identical flats: a copied frame, not a measurement of the noise
    return sigma, f"flat fields ({flats.shape[0]} frames, photon noise at the median transmission)"


def from_background(sino: np.ndarray) -> tuple[float, str] | None:
    """Noise from the detector bins at both edges of a sinogram ``(angles, bins)`` when the object
    never reaches them (their line integrals scatter about 0); None otherwise."""
    n = sino.shape[-1]
    k = max(2, int(round(EDGE_FRACTION * n)))
    edges = np.concatenate([sino[:, :k], sino[:, n - k:]], axis=1)
    sigma = robust_std(edges)
    # an offset hidden in the noise cannot be told from it; a larger one is the object (or a bad flat)
    if not sigma > 0 or abs(float(np.median(edges))) > max(MAX_BACKGROUND, sigma):
        return None
    return sigma, f"detector background ({2 * k} edge bins outside the object, MAD)"


def tomography_noise(sino: np.ndarray, flats: np.ndarray | None, dark: np.ndarray | None) -> tuple[float, str]:
    """(noise_sigma, noise_source) of a sinogram before rebinning: flat fields, else background, else refused."""
    found = (from_flat_fields(flats, dark, sino) if flats is not None else None) or from_background(sino)
    if found is not None:
        return found
    return 0.0, (f"{NOT_ESTIMATED}: no series of 2 or more flat fields and no empty detector bins at the "
                 "edges; set the noise level yourself")


def rebinned_noise(sigma: float, n_in: int, n_out: int) -> float:
    """Averaging ``n_in / n_out`` independent bins into one lowers the noise by its square root."""
    return float(sigma / np.sqrt(max(n_in / n_out, 1.0)))


def kspace_noise(sigma: float) -> tuple[float, str]:
    """(noise_sigma, noise_source) of a k-space corner estimate (0: refused, and said so)."""
    if sigma > 0:
        return sigma, "k-space corners (sampled columns, MAD)"
    return 0.0, (f"{NOT_ESTIMATED}: the k-space corners are empty or noiseless (zero-padded or simulated "
                 "data); set the noise level yourself")


def is_estimated(source: str) -> bool:
    return bool(source) and not source.startswith(NOT_ESTIMATED)


def describe_noise_source(attrs: dict) -> str:
    """Where a measurement's noise level came from, for the window and ``diffrecon info``."""
    source = str(attrs.get("noise_source", "") or "")
    if source:
        return source
    if "demo_kind" in attrs or "simulated" in attrs:
        return "simulated: the noise added to the data"
    return "not recorded in the file"
