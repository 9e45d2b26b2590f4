"""Does ``--compile auto`` choose the faster mode for a large network? (needs a CUDA GPU)

    python benchmarks/auto_compile_check.py --compile auto --steps 600 --out auto.json

One DPS run on 256x256 inpainting with the ADM UNet of the DPS/DDRM/DiffPIR papers (553 M
parameters, random weights, as in bench_deepinv.py), 8 samples in one batch, bf16. Writes the
mode the network ran in, the reason ``auto`` logged, and the run's wall time with the compile
or the graph recording included, with the device name. Run it in pairs on one GPU type: ``auto``
with an empty ``DIFFRECON_CACHE`` against ``compile`` with an empty inductor cache (auto should
take graphs and be faster), and ``auto`` after a ``compile`` run of the same shape (auto should
compile and beat graphs).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_deepinv as bd  # noqa: E402

from diffrecon.engine import Finished, Log, RunConfig, run  # noqa: E402
from diffrecon.priors.adm import ADMConfig  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--compile", choices=("auto", "graphs", "compile"), default="auto")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", ".")) / "auto_compile.json")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("auto_compile_check.py needs a CUDA GPU: on the CPU every mode is eager.")
    device = torch.device("cuda")
    setup = {"config": ADMConfig.imagenet_256_uncond()}
    with tempfile.TemporaryDirectory() as tmp:
        den = bd.build_adm(setup, Path(tmp), device)
    m, _ = bd.problem("inpaint", bd.ground_truth(256, 3, 0), None, device, ours_only=True)
    cfg = RunConfig(solver="dps", params=bd.PARAMS["dps"], steps=args.steps, samples=args.samples,
                    device="cuda", precision="bf16", batch_size=args.samples, keep_samples=0,
                    preview_interval=5.0, compile=args.compile)
    logs = []
    torch.cuda.synchronize()
    start = time.perf_counter()
    for event in run(m, cfg, denoiser=den):
        if isinstance(event, Log):
            logs.append(event.message)
            print(event.message, flush=True)
        elif isinstance(event, Finished):
            result = event.result
    wall = time.perf_counter() - start
    report = {"device": torch.cuda.get_device_name(device), "torch": torch.__version__,
              "compile_setting": args.compile, "mode_ran": result.provenance["compile"],
              "reason": next((s for s in logs if s.startswith("Network:")), None), "logs": logs,
              "steps": args.steps, "samples": args.samples, "wall_seconds": wall,
              "engine_seconds": result.metrics["seconds"],
              "inductor_cache": os.environ.get("TORCHINDUCTOR_CACHE_DIR"), "psnr": result.metrics.get("psnr")}
    bd.write_report(report, args.out)
    print(f"{args.compile}: ran {report['mode_ran']}, {wall:.1f} s for {args.steps} steps x {args.samples} samples",
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
