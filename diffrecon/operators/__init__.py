"""Forward models. ``OPERATORS`` maps a kind (as stored in files) to its class."""
from __future__ import annotations

from ..errors import InputError
from .base import LinearOperator, OperatorSpec, residual_norm
from .identity import Denoise

OPERATORS: dict[str, type[LinearOperator]] = {cls.kind: cls for cls in (Denoise,)}


def build_operator(spec: OperatorSpec) -> LinearOperator:
    """The operator a spec describes; unknown kinds are refused with the list of valid ones."""
    try:
        cls = OPERATORS[spec.kind]
    except KeyError:
        raise InputError(
            f"Unknown forward model {spec.kind!r}; valid kinds are {', '.join(sorted(OPERATORS))}."
        ) from None
    return cls.from_spec(spec)


__all__ = ["LinearOperator", "OperatorSpec", "OPERATORS", "build_operator", "residual_norm"]
