"""Where does a solver step spend its time on the GPU? Times the prior's network (forward and
forward+backward, bf16 and fp32), the forward model, and one engine run, then prints the top
CUDA kernels of a profiled DPS run.

    python benchmarks/profile_step.py [--kind ct] [--solver dps] [--samples 4]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from diffrecon import engine  # noqa: E402
from diffrecon.demo import make_demo  # noqa: E402
from diffrecon.operators import build_operator  # noqa: E402
from diffrecon.priors import load_prior  # noqa: E402


def cuda_ms(fn, reps=20):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(reps):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / reps


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kind", default="ct")
    ap.add_argument("--solver", default="dps")
    ap.add_argument("--samples", type=int, default=4)
    args = ap.parse_args()
    dev = torch.device("cuda")
    m = make_demo(args.kind, size=128, seed=0)
    op = build_operator(m.operator).to(dev)
    den = load_prior("default", (1, 128, 128), device=dev)
    x = torch.randn(args.samples, 1, 128, 128, device=dev)
    print("device", torch.cuda.get_device_name(0))
    for dtype in (torch.bfloat16, None):
        def fwd():
            with torch.no_grad(), torch.autocast("cuda", dtype=dtype or torch.float32, enabled=dtype is not None):
                den(x, 1.0)

        def fwd_bwd():
            xi = x.detach().requires_grad_(True)
            with torch.autocast("cuda", dtype=dtype or torch.float32, enabled=dtype is not None):
                out = den(xi, 1.0)
            torch.autograd.grad(out.float().square().sum(), xi)
        name = "bf16" if dtype else "fp32"
        print(f"network {name}: forward {cuda_ms(fwd):.2f} ms, forward+backward {cuda_ms(fwd_bwd):.2f} ms (batch {args.samples})")
    y = op.A(x)
    print(f"operator {args.kind}: A {cuda_ms(lambda: op.A(x)):.2f} ms, A_adjoint {cuda_ms(lambda: op.A_adjoint(y)):.2f} ms, "
          f"A_pinv {cuda_ms(lambda: op.A_pinv(y), reps=3):.2f} ms")
    cfg = engine.RunConfig(solver=args.solver, steps=50, samples=args.samples, device="cuda")
    list(engine.run(m, cfg, denoiser=den))
    for ev in engine.run(m, cfg, denoiser=den):
        if isinstance(ev, engine.Finished):
            per_step = ev.result.metrics["seconds"] / 50 * 1e3
            print(f"engine {args.solver}: {per_step:.2f} ms per step (batch {args.samples}), PSNR {ev.result.metrics.get('psnr', 0):.2f}")
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]) as prof:
        list(engine.run(m, engine.RunConfig(**{**cfg.__dict__, "steps": 10}), denoiser=den))
    print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=12, max_name_column_width=60))
    print(prof.key_averages().table(sort_by="cpu_time_total", row_limit=8, max_name_column_width=60))
    return 0


if __name__ == "__main__":
    sys.exit(main())
