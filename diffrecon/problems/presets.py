"""The entries of the problem registry: one :class:`ForwardModel` per operator kind and one
:class:`Problem` per named preset (the demos of ``diffrecon demo`` and the kinds of
``diffrecon simulate``). Units of the demos:

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
"""
from __future__ import annotations

from .. import operators as ops
from ..operators.ct import check_ct_bytes, default_detectors
from .base import Demo, Display, ForwardModel, Option, Problem
from .sampling import CT_RESAMPLING, INPAINT_RESAMPLING, MASK_KINDS, MRI_RESAMPLING

CT_PIXEL_CM = 0.1
RF_PIXEL_CM = 0.5
RF_FREQUENCIES_HZ = (2e9, 4e9, 6e9)
MRI_ACCELERATION = 4.0

# ------------------------------------------------------------------------------ forward models
FORWARD_MODELS: dict[str, ForwardModel] = {m.kind: m for m in (
    ForwardModel("ct", Display("Sinogram", "FBP (direct)", "sinogram"), CT_RESAMPLING),
    ForwardModel("mri", Display("k-space", "Zero-filled", "kspace"), MRI_RESAMPLING),
    ForwardModel("inpaint", Display(), INPAINT_RESAMPLING),
    ForwardModel("blur"),
    ForwardModel("sr"),
    ForwardModel("denoise"),
    ForwardModel("matrix"),
    ForwardModel("rf"),
)}


# ------------------------------------------------------------------------------ operator builders
def _ct_views(shape, n_views: int) -> None:
    """Refuse a geometry too large for memory before its angles are made."""
    h, w = shape[-2:]
    check_ct_bytes(max(int(n_views), 0), default_detectors(h, w), h, w, f"Option n_views={n_views}: ")


def _ct(shape, o, *, noise=0.0, seed=0, pixel_size=1.0):
    _ct_views(shape, o["n_views"])
    return ops.ParallelBeamCT(shape, ops.sparse_view_angles(o["n_views"]), noise_sigma=noise, pixel_size=pixel_size)


def _ct_limited(shape, o, *, noise=0.0, seed=0, pixel_size=1.0):
    _ct_views(shape, o["n_views"])
    angles = ops.limited_angle_angles(o["range_deg"], o["n_views"])
    return ops.ParallelBeamCT(shape, angles, noise_sigma=noise, pixel_size=pixel_size)


def _mri(shape, o, *, noise=0.0, seed=0, pixel_size=1.0):
    hw = tuple(shape[-2:])
    mask = ops.cartesian_mask(hw, o["acceleration"], o["center_fraction"], o["mask_kind"], seed)
    maps = ops.birdcage_maps(hw, o["coils"]) if o["coils"] > 1 else None
    return ops.MRI(shape, mask, coil_maps=maps, noise_sigma=noise)


def _inpaint(shape, o, *, noise=0.0, seed=0, pixel_size=1.0):
    return ops.Inpaint(shape, ops.random_mask(shape, o["fraction_missing"], seed), noise)


def _deblur(shape, o, *, noise=0.0, seed=0, pixel_size=1.0):
    return ops.Blur(shape, ops.gaussian_kernel(o["kernel_size"], o["kernel_std"]), noise)


def _sr(shape, o, *, noise=0.0, seed=0, pixel_size=1.0):
    return ops.SuperResolution(shape, o["factor"], noise)


def _denoise(shape, o, *, noise=0.0, seed=0, pixel_size=1.0):
    return ops.Denoise(shape, noise)


def _rf(shape, o, *, noise=0.0, seed=0, pixel_size=RF_PIXEL_CM):
    # Antennas one image width from the centre: outside the image's half diagonal (0.71 widths).
    pixel_m = pixel_size / 100  # the demo's pixels are in cm
    return ops.RFBorn(shape, RF_FREQUENCIES_HZ, n_antennas=o["n_antennas"], radius_m=shape[-1] * pixel_m,
                      pixel_size_m=pixel_m, noise_sigma=noise)


# ------------------------------------------------------------------------------ options
_N_VIEWS = Option("n_views", 30, int, low=1, help="projection angles")
_MRI_OPTIONS = (
    Option("acceleration", MRI_ACCELERATION, float, low=1, help="k-space points over measured ones"),
    Option("center_fraction", None, float, low=0, high=1, open_low=True, optional=True,
           help="fully sampled centre fraction (none: 0.32 / acceleration)"),
    Option("mask_kind", "random", str, choices=MASK_KINDS, help="columns drawn at random or equally spaced"),
    Option("coils", 1, int, low=1, help="receive coils (birdcage sensitivities when more than 1)"),
)


def _demo(title, scale, units, pixel_size, pixel_unit, noise_ref, noise_rel, size=128, **options) -> Demo:
    return Demo(title, scale, units, pixel_size, pixel_unit, noise_ref, noise_rel, options, size)


# ------------------------------------------------------------------------------ problems
#: Named problems in the order ``diffrecon demo`` lists them.
PROBLEMS: dict[str, Problem] = {p.name: p for p in (
    Problem("ct", "ct", _ct, (_N_VIEWS,),
            _demo("Sparse-view CT, {n_views} views", 0.4, "1/cm", CT_PIXEL_CM, "cm", "max", 0.01), single_channel=True),
    Problem("ct_limited", "ct", _ct_limited,
            (Option("range_deg", 120.0, float, low=0, high=180, open_low=True, help="angular range in degrees"),
             Option("n_views", 60, int, low=1, help="projection angles")),
            _demo("Limited-angle CT, {range_deg:g} degrees, {n_views} views", 0.4, "1/cm", CT_PIXEL_CM, "cm", "max", 0.01,
                  range_deg=90.0), single_channel=True),
    Problem("mri", "mri", _mri, _MRI_OPTIONS,
            _demo("Single-coil MRI, random Cartesian x{acceleration:g}", 1.0, "a.u.", 1.0, "mm", "rms", 0.02),
            single_channel=True),
    Problem("mri_multicoil", "mri", _mri, _MRI_OPTIONS,
            _demo("8-coil MRI (birdcage maps), random Cartesian x{acceleration:g}", 1.0, "a.u.", 1.0, "mm", "rms",
                  0.02, coils=8), simulate=False, single_channel=True),
    Problem("inpaint", "inpaint", _inpaint,
            (Option("fraction_missing", 0.5, float, low=0, high=1, open_high=True, help="fraction of pixels missing"),),
            _demo("Inpainting, 70 % of pixels missing", 1.0, "a.u.", 1.0, "px", "range", 0.01, fraction_missing=0.7)),
    Problem("deblur", "blur", _deblur,
            (Option("kernel_size", 9, int, low=1, help="Gaussian kernel side in pixels"),
             Option("kernel_std", 2.0, float, low=0, open_low=True, help="Gaussian kernel std in pixels")),
            _demo("Deblurring, Gaussian kernel std 2 px", 1.0, "a.u.", 1.0, "px", "range", 0.01, kernel_size=13)),
    Problem("sr", "sr", _sr, (Option("factor", 4, int, choices=(2, 4), help="downsampling factor"),),
            _demo("Super-resolution x4", 1.0, "a.u.", 1.0, "px", "range", 0.01)),
    Problem("denoise", "denoise", _denoise, (),
            _demo("Denoising, noise 0.1 of the range", 1.0, "a.u.", 1.0, "px", "range", 0.1)),
    Problem("rf", "rf", _rf, (Option("n_antennas", 16, int, low=1, help="antennas on the circle"),),
            _demo("RF inverse scattering (Born), 16 antennas, 2/4/6 GHz", 1.0, "1", RF_PIXEL_CM, "cm", "rms", 0.02,
                  size=32), simulate=False, single_channel=True),
)}
