"""Where CPU time goes in the default CT reconstruction, and what makes the network faster on a CPU.

    python benchmarks/cpu_path.py [--steps 3] [--samples 4] [--reps 5] --out FILE.json

1. ``profile``: the CT demo (128 x 128, 30 views) with the run's defaults (DiffPIR, bundled prior)
   for ``--steps`` steps and ``--samples`` samples under ``torch.profiler``: the operators with the
   most CPU time, and the shares of the network (convolutions, norms, activations), the forward
   model and the rest.
2. ``network``: one evaluation of the prior at the run's batch, in turn (interleaved, median of
   ``--reps``): eager fp32 under ``no_grad`` (the baseline), ``inference_mode``, channels-last,
   bf16 autocast (with its largest deviation from fp32 in the clean estimate), and one thread
   against all.

Writes JSON with the machine (CPU model, cores, torch threads, torch version) and prints a table.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from diffrecon import engine  # noqa: E402
from diffrecon.demo import make_demo  # noqa: E402
from diffrecon.priors import load_prior  # noqa: E402


def machine() -> dict:
    model = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": model, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "platform": platform.platform()}


def profile(steps: int, samples: int) -> dict:
    from torch.profiler import ProfilerActivity, profile as torch_profile

    m = make_demo("ct")
    cfg = engine.RunConfig(steps=steps, samples=samples, device="cpu", prior_fit=False, preview_interval=1e9)
    den = load_prior("default")
    list(engine.run(m, engine.RunConfig(steps=1, samples=1, device="cpu", prior_fit=False), denoiser=den))  # warm
    t0 = time.perf_counter()
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in engine.run(m, cfg, denoiser=den):
            pass
    wall = time.perf_counter() - t0
    rows = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in rows) or 1
    groups = {"network": ("conv", "mkldnn", "group_norm", "native_group_norm", "silu", "addmm", "upsample",
                          "linear", "cat", "add_", "mul", "sin", "cos", "exp"),
              "forward model": ("grid_sampler", "bmm", "mm", "fft", "index", "scatter", "gather", "matmul")}
    share = {g: 0.0 for g in (*groups, "other")}
    for e in rows:
        name = e.key.lower()
        g = next((k for k, keys in groups.items() if any(s in name for s in keys)), "other")
        share[g] += e.self_cpu_time_total / total
    top = [{"op": e.key, "self_ms": e.self_cpu_time_total / 1e3, "calls": e.count,
            "share": e.self_cpu_time_total / total} for e in rows[:15]]
    return {"steps": steps, "samples": samples, "wall_s": wall, "top": top, "share": share}


def network(samples: int, reps: int) -> dict:
    den = load_prior("default")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(samples, 1, 128, 128, generator=g) * 0.5 + 0.3 * torch.randn(samples, 1, 128, 128, generator=g)
    sigma = 0.3
    net = den.unet

    def eager():
        with torch.no_grad():
            return den(x, sigma)

    def inference():
        with torch.inference_mode():
            return den(x, sigma)

    def channels_last():
        net.to(memory_format=torch.channels_last)
        try:
            with torch.no_grad():
                s = torch.full((x.shape[0],), sigma)
                x_t = (x / (1 + s.square()).sqrt().reshape(-1, 1, 1, 1)).contiguous(memory_format=torch.channels_last)
                eps = net(x_t, den.timestep(s)).sample.float().contiguous()
                return x - s.reshape(-1, 1, 1, 1) * eps
        finally:
            net.to(memory_format=torch.contiguous_format)

    def bf16():
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            return den(x, sigma)

    def one_thread():
        n = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return eager()
        finally:
            torch.set_num_threads(n)

    variants = {"eager fp32 no_grad": eager, "inference_mode": inference, "channels_last": channels_last,
                "bf16 autocast": bf16, "1 thread": one_thread}
    ref = eager()
    out = {k: {"max_abs_diff": float((fn() - ref).abs().max())} for k, fn in variants.items()}  # also warms up
    times = {k: [] for k in variants}
    for _ in range(reps):
        for k, fn in variants.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    base = statistics.median(times["eager fp32 no_grad"])
    for k in variants:
        out[k].update(median_s=statistics.median(times[k]), all_s=times[k], ratio=statistics.median(times[k]) / base)
    return {"batch": samples, "image": [1, 128, 128], "variants": out}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--sections", default="profile,network")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)
    rec = {"machine": machine(), "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if "profile" in a.sections:
        rec["profile"] = profile(a.steps, a.samples)
        print(f"profile: {a.steps} steps x {a.samples} samples, {rec['profile']['wall_s']:.1f} s; shares",
              {k: round(v, 3) for k, v in rec["profile"]["share"].items()})
        for r in rec["profile"]["top"]:
            print(f"  {r['op']:<40} {r['self_ms']:9.1f} ms {r['calls']:6d} calls {100 * r['share']:5.1f} %")
    if "network" in a.sections:
        rec["network"] = network(a.samples, a.reps)
        for k, v in rec["network"]["variants"].items():
            print(f"  {k:<22} {v['median_s'] * 1e3:8.1f} ms  x{v['ratio']:.2f}  max|diff| {v['max_abs_diff']:.2e}")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(rec, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
