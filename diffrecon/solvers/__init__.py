"""Solvers: one algorithm per module, each exporting ``INFO``; ``SOLVERS`` is the registry."""
from __future__ import annotations

from ..errors import InputError
from ._common import SampleRNG, SolverInfo, Step, parse_params, validate_params

SOLVERS: dict[str, SolverInfo] = {}


def get_solver(name: str) -> SolverInfo:
    try:
        return SOLVERS[name]
    except KeyError:
        raise InputError(f"Unknown solver {name!r}; valid solvers are {', '.join(SOLVERS)}.") from None


__all__ = ["SOLVERS", "SampleRNG", "SolverInfo", "Step", "get_solver", "parse_params", "validate_params"]
