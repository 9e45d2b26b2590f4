"""Batch runs through each executor: identical results, a summary table, and the scaling with Ray workers.

Writes N demo measurements (deblur, different phantoms), reconstructs them sequentially (this
process), with a local Ray runtime of 1 worker and of 2 workers, checks that every result is
equal bit for bit across the three runs and that each summary table lists every input as done,
and records the wall times as JSON. On a CPU that other programs share, the 2-worker speed-up is
a lower bound. The Ray runs are timed after the runtime has started and each worker has warmed
up (imported torch, loaded the prior) on other inputs.

    python benchmarks/batch_scaling.py --files 20 --size 64 --steps 60 --samples 8 \\
        --json benchmarks/results/batch/scaling_cpu.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from diffrecon import __version__
from diffrecon.batch import read_manifest, run_manifest
from diffrecon.batch.summary import read_h5
from diffrecon.demo import make_demo
from diffrecon.engine import RunConfig
from diffrecon.io import read_result, write_measurement


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=20)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--solver", default="diffpir")
    ap.add_argument("--prior", default="gaussian")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads of the sequential run (a Ray worker of one CPU runs one)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    config = RunConfig(solver=args.solver, steps=args.steps, samples=args.samples, prior=args.prior,
                       device=args.device, prior_fit=False)
    runs = {"sequential": {"executor": "sequential"}, "ray_1_worker": {"executor": "ray", "workers": 1},
            "ray_2_workers": {"executor": "ray", "workers": 2}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "in").mkdir()
        for i in range(args.files):
            write_measurement(tmp / "in" / f"m{i:02d}.h5", make_demo("deblur", size=args.size, seed=i))
        items = {name: read_manifest(tmp / "in", tmp / name) for name in runs}
        # the prior is fitted once at this size (kept on disk); no run pays for it
        run_manifest(items["sequential"][:1], config, tmp / "warm")
        out = {}
        for name, kw in runs.items():
            started = _start(kw, args.size, config)  # Ray: a runtime of this many workers, its workers warmed on other files
            t0 = time.perf_counter()
            summary = run_manifest(items[name], config, tmp / name, **kw)
            seconds = time.perf_counter() - t0
            if started:
                import ray
                ray.shutdown()
            table = read_h5(summary.h5)
            out[name] = {"seconds": round(seconds, 2), "counts": summary.counts, "load_average_1min": os.getloadavg()[0],
                         "summary_rows": len(table["status"]), "summary_all_done": table["status"] == ["done"] * args.files,
                         "mean_psnr": float(np.mean(table["metrics"]["psnr"]))}
            print(f"{name}: {seconds:.1f} s, {summary.counts}", flush=True)
        identical = all(_same(tmp / "sequential" / item.output.name, tmp / name / item.output.name)
                        for name in runs for item in items["sequential"])
    record = {
        "benchmark": "batch_scaling", "date": time.strftime("%Y-%m-%d", time.gmtime()), "software_version": __version__, "device": args.device,
        "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
        "torch_threads_sequential": torch.get_num_threads(), "torch_version": torch.__version__,
        "files": args.files, "size": args.size, "solver": args.solver, "prior": args.prior,
        "steps": args.steps, "samples": args.samples, "runs": out, "identical_results": identical,
        "speedup_2_vs_1_ray_workers": round(out["ray_1_worker"]["seconds"] / out["ray_2_workers"]["seconds"], 2),
        "note": "CPU (2 cores) shared with other programs while measured (see load_average_1min): the speed-up "
                "is a lower bound. Ray runs are timed after the local runtime started and each worker warmed up "
                "on other inputs (start-up, several seconds, is paid once per batch). The sequential run uses "
                "torch_threads_sequential threads, a Ray worker of one CPU one.",
    }
    print(json.dumps(record, indent=1))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(record, indent=1) + "\n")


def _start(kw: dict, size: int, config: RunConfig) -> bool:
    """For a Ray run: start a local runtime of ``workers`` CPUs and let each worker import torch and
    diffrecon and fit-load the prior on throwaway inputs, so the timed run measures throughput, not
    start-up (several seconds, paid once per batch)."""
    if kw.get("executor") != "ray":
        return False
    import ray

    from diffrecon.batch.executors import _connect

    _connect(ray, None, kw["workers"])
    with tempfile.TemporaryDirectory() as warm:
        for i in range(2 * kw["workers"]):
            write_measurement(Path(warm) / f"w{i}.h5", make_demo("deblur", size=size, seed=100 + i))
        run_manifest(read_manifest(warm, Path(warm) / "out"), config, Path(warm) / "out", executor="ray")
    return True


def _same(a: Path, b: Path) -> bool:
    ra, rb = read_result(a), read_result(b)
    return all(np.array_equal(x, y) for x, y in ((ra.mean, rb.mean), (ra.std, rb.std), (ra.samples, rb.samples)))


if __name__ == "__main__":
    main()
