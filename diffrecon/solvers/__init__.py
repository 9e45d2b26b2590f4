"""Solvers: one algorithm per module, each exporting ``INFO``; ``SOLVERS`` is the registry."""
from __future__ import annotations

from ..errors import InputError
from . import (cg, consistency, daps, ddim, ddnm, ddpm, ddrm, dds, diffpir, direct, dpmpp_2m, dpmpp_3m_sde, dps, fvfo,
               mlem, pigdm, pnp_admm, reddiff, reference, tv)
from ._common import SampleRNG, SolverInfo, Step, parse_params, validate_params

#: Diffusion solvers first, then the classical baselines (the order menus show).
SOLVERS: dict[str, SolverInfo] = {
    m.INFO.name: m.INFO for m in (dps, ddrm, ddnm, diffpir, dds, pigdm, daps, reddiff, pnp_admm, ddim, dpmpp_2m,
                                  fvfo, dpmpp_3m_sde, mlem, ddpm, reference, consistency, direct, cg, tv)
}


def get_solver(name: str) -> SolverInfo:
    try:
        return SOLVERS[name]
    except KeyError:
        raise InputError(f"Unknown solver {name!r}; valid solvers are {', '.join(SOLVERS)}.") from None


__all__ = ["SOLVERS", "SampleRNG", "SolverInfo", "Step", "get_solver", "parse_params", "validate_params"]
