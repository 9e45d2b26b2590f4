"""Exercise every GPU code path of the engine on a CUDA device and record what happened.

    python benchmarks/gpu_check.py [--out benchmarks/results/gpu_check.json]

1. every solver on every demo kind, on CUDA and on the CPU (Gaussian prior, fp32 both):
   the two means agree, and CUDA gives the same result twice (reproducibility);
2. a diffusers UNet prior (random weights) in bf16 autocast and fp32: finite results, time;
3. out-of-memory recovery: a memory cap makes the first batch fail; the engine halves it.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from diffrecon import engine  # noqa: E402
from diffrecon.demo import DEMO_KINDS, make_demo  # noqa: E402
from diffrecon.engine import Finished, Log, RunConfig  # noqa: E402
from diffrecon.errors import InputError  # noqa: E402
from diffrecon.solvers import SOLVERS  # noqa: E402


def finish(measurement, cfg, **kw):
    logs, result = [], None
    for ev in engine.run(measurement, cfg, **kw):
        if isinstance(ev, Log):
            logs.append(ev.message)
        if isinstance(ev, Finished):
            result = ev.result
    return result, logs


def solver_matrix(rows, kinds=DEMO_KINDS):
    for kind in kinds:
        m = make_demo(kind, size=32 if kind == "rf" else 64, seed=0)
        for name in SOLVERS:
            cfg = RunConfig(solver=name, steps=20, samples=4, seed=3, prior="gaussian", precision="fp32")
            try:
                t = time.perf_counter()
                gpu, _ = finish(m, RunConfig(**{**cfg.__dict__, "device": "cuda"}))
                t_gpu = time.perf_counter() - t
            except InputError as err:
                rows.append({"kind": kind, "solver": name, "skipped": str(err)})
                continue
            again, _ = finish(m, RunConfig(**{**cfg.__dict__, "device": "cuda"}))
            cpu, _ = finish(m, RunConfig(**{**cfg.__dict__, "device": "cpu"}))
            scale = float(np.abs(cpu.mean).max()) or 1.0
            rows.append({
                "kind": kind, "solver": name, "finite": bool(np.isfinite(gpu.mean).all() and np.isfinite(gpu.std).all()),
                "gpu_vs_cpu_max_rel": float(np.abs(gpu.mean - cpu.mean).max() / scale),
                "gpu_repeat_identical": bool(np.array_equal(gpu.samples, again.samples)),
                "psnr_gpu": gpu.metrics.get("psnr"), "psnr_cpu": cpu.metrics.get("psnr"),
                "seconds_gpu_first": t_gpu, "seconds_gpu": again.metrics["seconds"], "seconds_cpu": cpu.metrics["seconds"],
            })
            print(f"{kind:14s} {name:8s} rel {rows[-1]['gpu_vs_cpu_max_rel']:.2e} same {rows[-1]['gpu_repeat_identical']} "
                  f"psnr {rows[-1]['psnr_gpu']:.2f}/{rows[-1]['psnr_cpu']:.2f} t {again.metrics['seconds']:.2f}s vs cpu {cpu.metrics['seconds']:.2f}s",
                  flush=True)


def unet_prior(folder: Path, size: int) -> Path:
    from diffusers import UNet2DModel

    from diffrecon.priors import PriorCard, save_diffusers_prior

    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=size, in_channels=1, out_channels=1, layers_per_block=2,
                       block_out_channels=(64, 128, 128, 256),
                       down_block_types=("DownBlock2D",) * 3 + ("AttnDownBlock2D",),
                       up_block_types=("AttnUpBlock2D",) + ("UpBlock2D",) * 3)
    card = PriorCard(name="random-unet", resolution=(size, size), channels=1, value_range=(-1.0, 1.0),
                     sigma_min=0.01, sigma_max=157.0,
                     schedule={"kind": "vp_linear", "beta_start": 1e-4, "beta_end": 0.02, "timesteps": 1000},
                     training_data="none (random weights, for timing)")
    return save_diffusers_prior(unet, card, folder)


def unet_runs(rows, folder: Path):
    m = make_demo("ct", size=128, seed=0)
    for solver in ("dps", "ddnm", "diffpir"):
        for precision in ("bf16", "fp32"):
            cfg = RunConfig(solver=solver, steps=20, samples=8, prior=str(folder), device="cuda", precision=precision)
            finish(m, cfg)  # warm-up
            torch.cuda.synchronize()
            res, _ = finish(m, cfg)
            rows.append({"solver": solver, "precision": precision, "finite": bool(np.isfinite(res.mean).all()),
                         "seconds_per_sample": res.metrics["seconds_per_sample"],
                         "peak_memory_bytes": res.metrics["peak_memory_bytes"]})
            print(f"unet128 {solver:8s} {precision} {res.metrics['seconds_per_sample']*1e3:.1f} ms/sample "
                  f"peak {res.metrics['peak_memory_bytes']/2**20:.0f} MiB finite {rows[-1]['finite']}", flush=True)


def oom_recovery(folder: Path) -> dict:
    m = make_demo("ct", size=128, seed=0)
    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.empty_cache()
    torch.cuda.set_per_process_memory_fraction(3 * 2**30 / total)  # a 3 GiB card
    try:
        cfg = RunConfig(solver="dps", steps=3, samples=256, prior=str(folder), device="cuda", precision="fp32")
        res, logs = finish(m, cfg)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
    out = {"samples_done": res.n_samples if res else 0, "logs": logs,
           "batches_after_halving": [l for l in logs if "Out of GPU memory" in l]}
    print("oom recovery:", out["samples_done"], "samples;", len(out["batches_after_halving"]), "halvings", flush=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.environ.get("OUT", "."), "gpu_check.json"))
    ap.add_argument("--sections", default="solvers,unet,oom", help="comma-separated: solvers, unet, oom")
    ap.add_argument("--prior", default=None, help="a prior folder (default: a random-weight UNet)")
    ap.add_argument("--kinds", default=",".join(DEMO_KINDS), help="demo kinds of the solvers section")
    args = ap.parse_args()
    assert torch.cuda.is_available(), "needs a CUDA GPU"
    sections = set(args.sections.split(","))
    report = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "solvers": [], "unet": []}
    if "solvers" in sections:
        solver_matrix(report["solvers"], args.kinds.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.prior) if args.prior else unet_prior(Path(tmp) / "unet", 128)
        report["prior"] = str(folder.name)
        if "unet" in sections:
            unet_runs(report["unet"], folder)
        if "oom" in sections:
            report["oom"] = oom_recovery(folder)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1))
    bad = [r for r in report["solvers"] if "skipped" not in r and not (r["finite"] and r["gpu_repeat_identical"])]
    print(f"{len(report['solvers'])} solver/kind pairs, {len(bad)} not finite or not reproducible")
    return 0


if __name__ == "__main__":
    sys.exit(main())
