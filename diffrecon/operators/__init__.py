"""Forward models. ``OPERATORS`` maps a kind (as stored in files) to its class."""
from __future__ import annotations

from ..errors import InputError
from .base import LinearOperator, OperatorSpec, residual_norm
from .blur import Blur, gaussian_kernel, motion_kernel
from .ct import ParallelBeamCT, limited_angle_angles, sparse_view_angles
from .identity import Denoise
from .inpaint import Inpaint, box_mask, random_mask
from .matrix import MatrixOperator
from .mri import MRI, birdcage_maps, cartesian_mask
from .rf import RFBorn
from .superres import SuperResolution

OPERATORS: dict[str, type[LinearOperator]] = {
    cls.kind: cls
    for cls in (Denoise, Inpaint, Blur, SuperResolution, ParallelBeamCT, MRI, MatrixOperator, RFBorn)
}


def build_operator(spec: OperatorSpec) -> LinearOperator:
    """The operator a spec describes; unknown kinds are refused with the list of valid ones."""
    try:
        cls = OPERATORS[spec.kind]
    except KeyError:
        raise InputError(
            f"Unknown forward model {spec.kind!r}; valid kinds are {', '.join(sorted(OPERATORS))}."
        ) from None
    return cls.from_spec(spec)


__all__ = [
    "LinearOperator", "OperatorSpec", "OPERATORS", "build_operator", "residual_norm",
    "Denoise", "Inpaint", "Blur", "SuperResolution", "ParallelBeamCT", "MRI", "MatrixOperator", "RFBorn",
    "random_mask", "box_mask", "gaussian_kernel", "motion_kernel", "sparse_view_angles",
    "limited_angle_angles", "cartesian_mask", "birdcage_maps",
]
