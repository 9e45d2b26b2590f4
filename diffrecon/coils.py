"""Coil sensitivities and k-space helpers for Cartesian MRI (numpy, no torch).

The Fourier transform everywhere is the unitary, centred 2-D DFT that fastMRI and the
``MRI`` operator use: ``fft2c(x) = fftshift(fft2(ifftshift(x), norm="ortho"))``.

Sensitivity estimate (:func:`estimate_coil_maps`): the low-resolution method of
Pruessmann et al., "SENSE: sensitivity encoding for fast MRI", MRM 42 (1999), Sec. "Sensitivity
assessment", in the auto-calibrated form of McKenzie et al., MRM 47 (2002): the fully sampled
centre of k-space (the auto-calibration region, ACS) is kept under a smooth Hann window (no
ringing from a hard cut-off), transformed to low-resolution coil images ``I_c``, and normalised
by their root-sum-of-squares, ``S_c = I_c / sqrt(sum_c |I_c|^2)``. Then ``sum_c |S_c|^2 = 1``
wherever there is signal, and the maps carry the object's smooth (low-resolution) phase, so
the image they define, ``x = sum_c conj(S_c) * coil_image_c``, is close to real and non-negative
(its magnitude is the root-sum-of-squares image).
"""
from __future__ import annotations

import numpy as np

from .errors import InputError


def fft2c(x: np.ndarray) -> np.ndarray:
    """Unitary centred 2-D DFT over the last two axes."""
    axes = (-2, -1)
    return np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x, axes=axes), norm="ortho"), axes=axes)


def ifft2c(k: np.ndarray) -> np.ndarray:
    """Inverse of :func:`fft2c`."""
    axes = (-2, -1)
    return np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(k, axes=axes), norm="ortho"), axes=axes)


def rss(coil_images: np.ndarray, axis: int = 0) -> np.ndarray:
    """Root-sum-of-squares coil combination (Roemer et al., MRM 16 (1990), eq. 29 with unit noise)."""
    return np.sqrt(np.sum(np.abs(coil_images) ** 2, axis=axis))


def sampled_columns(kspace: np.ndarray) -> np.ndarray:
    """Bool ``(W,)``: the phase-encode columns holding any non-zero sample (any coil, any row)."""
    return np.any(kspace != 0, axis=tuple(range(kspace.ndim - 1)))


def calibration_width(columns: np.ndarray) -> int:
    """Width of the contiguous run of sampled columns around the centre column ``W // 2``."""
    w = columns.shape[0]
    centre = w // 2
    if not columns[centre]:
        return 0
    left = centre
    while left > 0 and columns[left - 1]:
        left -= 1
    right = centre
    while right < w - 1 and columns[right + 1]:
        right += 1
    return right - left + 1


def _centred_hann(n: int, width: int) -> np.ndarray:
    """A Hann window of ``width`` samples centred on index ``n // 2``, zero elsewhere."""
    t = np.arange(n) - n // 2
    half = width / 2.0
    win = 0.5 * (1.0 + np.cos(np.pi * np.clip(t / half, -1.0, 1.0)))
    return np.where(np.abs(t) < half, win, 0.0)


def estimate_coil_maps(kspace: np.ndarray, calib_width: int | None = None, *,
                       threshold: float = 0.02) -> np.ndarray:
    """Coil sensitivities ``(coils, H, W)`` complex64 from the auto-calibration region.

    ``kspace`` is ``(coils, H, W)`` with the phase-encode direction along ``W``; ``calib_width``
    is the number of fully sampled central columns (found from the data when None). The window
    is a separable Hann window of that width along ``W`` and the same width (or the full height,
    if smaller) along ``H``. Where the low-resolution image is below ``threshold`` times its
    maximum there is no signal to calibrate on; the maps are set to zero there, which tells the
    reconstruction that no signal comes from the background.
    """
    kspace = np.asarray(kspace)
    if kspace.ndim != 3 or not np.iscomplexobj(kspace):
        raise InputError(f"k-space for coil estimation has shape {kspace.shape} and dtype {kspace.dtype}; "
                         "expected complex (coils, H, W).")
    _, h, w = kspace.shape
    if calib_width is None:
        calib_width = calibration_width(sampled_columns(kspace))
    if calib_width < 4:
        raise InputError(f"k-space has only {calib_width} fully sampled centre columns; coil sensitivity "
                         "estimation needs at least 4 (an auto-calibration region).")
    window = np.outer(_centred_hann(h, min(h, calib_width)), _centred_hann(w, calib_width))
    low = ifft2c(kspace * window)
    combined = rss(low)
    support = combined > threshold * combined.max()
    maps = np.where(support, low / np.maximum(combined, np.finfo(np.float32).tiny), 0)
    return maps.astype(np.complex64)


def combine(coil_images: np.ndarray, coil_maps: np.ndarray) -> np.ndarray:
    """The image the maps define, ``sum_c conj(S_c) I_c`` (the adjoint of the coil expansion)."""
    return np.sum(np.conj(coil_maps) * coil_images, axis=0)


def estimate_noise_sigma(kspace: np.ndarray, columns: np.ndarray | None = None, fraction: float = 0.125) -> float:
    """Noise standard deviation per real component from the k-space corners.

    Signal energy concentrates at the centre of k-space, so the four corner blocks
    (``fraction`` of each side) hold mostly thermal noise. Only sampled columns count. A robust
    scale, ``1.4826 * median(|v - median(v)|)`` over the real and imaginary parts together, keeps
    residual signal from inflating the estimate. Returns 0.0 when the corners are empty.
    """
    kspace = np.asarray(kspace)
    h, w = kspace.shape[-2:]
    if columns is None:
        columns = sampled_columns(kspace)
    rows_c = max(1, int(round(h * fraction)))
    cols_c = max(1, int(round(w * fraction)))
    row_sel = np.zeros(h, bool)
    row_sel[:rows_c] = row_sel[h - rows_c:] = True
    col_sel = np.zeros(w, bool)
    col_sel[:cols_c] = col_sel[w - cols_c:] = True
    col_sel &= columns
    corner = kspace[..., row_sel, :][..., col_sel]
    if corner.size == 0:
        return 0.0
    v = np.concatenate([corner.real.ravel(), corner.imag.ravel()]).astype(np.float64)
    return float(1.4826 * np.median(np.abs(v - np.median(v))))
