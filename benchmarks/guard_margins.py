"""How close each step of a run comes to the divergence guard's thresholds (diffrecon.guard).

    python benchmarks/guard_margins.py --demo ct --solver dps --steps 10 20 30 [--samples 1] [--prior default]

For every step and sample: the noise level of the estimate, and the range and residual checks'
values divided by their thresholds (above 1 the check fires). On the CPU, a few minutes for the
bundled prior at 128 x 128.
"""
from __future__ import annotations

import argparse

import torch

from diffrecon.demo import make_demo
from diffrecon.engine import RunConfig, _batch_start, prepare
from diffrecon.guard import DivergenceGuard


def margins(demo: str, solver: str, steps: int, samples: int, prior: str, params: dict) -> list[tuple]:
    m = make_demo(demo)
    setup = prepare(m, RunConfig(solver=solver, steps=steps, samples=samples, prior=prior, device="cpu",
                                 params=params))
    prior_range = setup.denoiser.card.value_range if setup.info.uses_prior else (0.0, 1.0)
    guard = DivergenceGuard(setup.op, setup.y, setup.sigmas, prior_range, setup.norm.scale, solver, setup.params)
    rng, x_init, y = _batch_start(setup, 0, range(samples))
    rows = []
    with torch.no_grad():
        for step in setup.info.solve(setup.denoiser, setup.op, y, setup.sigmas, x_init, params=setup.params,
                                     generator=rng):
            sigma = float(setup.sigmas[step.i])
            finite, range_margin, residual_margin, _, _ = guard.margins(step.x, step.x0_hat, sigma)
            rows.append((step.i + 1, sigma, finite.tolist(), range_margin.tolist(), residual_margin.tolist()))
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--demo", default="ct")
    p.add_argument("--solver", default="dps")
    p.add_argument("--steps", type=int, nargs="+", default=[10, 20, 30])
    p.add_argument("--samples", type=int, default=1)
    p.add_argument("--prior", default="default")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE")
    args = p.parse_args()
    params = {k: float(v) for k, v in (item.split("=", 1) for item in args.param)}
    for steps in args.steps:
        print(f"\n{args.solver}, {steps} steps, {args.demo} demo, prior {args.prior}: step, sigma, "
              "range / threshold, residual / threshold (per sample; > 1 fires)")
        for step, sigma, finite, rng, res in margins(args.demo, args.solver, steps, args.samples, args.prior, params):
            flag = "" if all(finite) else "  non-finite"
            print(f"{step:4d} {sigma:9.3f}  " + " ".join(f"{v:6.2f}" for v in rng) + "   "
                  + " ".join(f"{v:6.2f}" for v in res) + flag, flush=True)


if __name__ == "__main__":
    main()
