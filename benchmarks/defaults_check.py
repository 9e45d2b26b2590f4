"""Compare solver settings on the bundled demos (PSNR, SSIM, t-coverage, residual, time) and record JSON.

    python benchmarks/defaults_check.py --out results/defaults_check.json [--device cuda] [--phantoms 3]

Used to decide a solver's defaults: each named setting (a solver and parameter overrides) runs on
the CT, MRI and inpainting demos of several phantoms (test seeds), with the same seeds, the
default prior and the engine's defaults otherwise. The JSON holds every run and the means.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from diffrecon.demo import make_demo  # noqa: E402
from diffrecon.engine import Finished, RunConfig, run  # noqa: E402
from diffrecon.io.atomic import atomic_write  # noqa: E402
from diffrecon.runtime import device_name, resolve_device  # noqa: E402

SETTINGS = {
    "diffpir (paper defaults)": ("diffpir", {}),
    "diffpir (posterior mode)": ("diffpir", {"lam": 1.0, "zeta": 1.0, "perturb": True, "r_variance": "prior"}),
    "dps (paper defaults)": ("dps", {}),
    "dps (posterior mode)": ("dps", {"step_rule": "likelihood", "variance_correction": True}),
}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.environ.get("OUT", "."), "defaults_check.json"))
    ap.add_argument("--device", default="auto")
    ap.add_argument("--phantoms", type=int, default=3)
    ap.add_argument("--kinds", default="ct,mri,inpaint")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--prior", default="default")
    ap.add_argument("--settings", default=",".join(SETTINGS), help="names from SETTINGS, comma-separated")
    args = ap.parse_args()
    runs = []
    for kind in args.kinds.split(","):
        for p in range(args.phantoms):
            m = make_demo(kind, 128, p)
            for name in args.settings.split(","):
                solver, params = SETTINGS[name]
                cfg = RunConfig(solver=solver, params=params, steps=args.steps, samples=args.samples, seed=0,
                                prior=args.prior, device=args.device, use_calibration=False)
                t0 = time.perf_counter()
                result = next(e.result for e in run(m, cfg) if isinstance(e, Finished))
                row = {"kind": kind, "phantom": p, "setting": name, "solver": solver, "params": params,
                       "seconds": time.perf_counter() - t0,
                       **{k: float(v) for k, v in result.metrics.items()
                          if k in ("psnr", "ssim", "coverage90", "residual_ratio", "nfe_per_sample")},
                       "diverged": bool(result.provenance.get("divergence"))}
                runs.append(row)
                print(json.dumps(row), flush=True)
    means = {}
    for kind in args.kinds.split(","):
        for name in args.settings.split(","):
            rows = [r for r in runs if r["kind"] == kind and r["setting"] == name]
            means[f"{kind} | {name}"] = {k: float(np.mean([r.get(k, np.nan) for r in rows]))
                                         for k in ("psnr", "ssim", "coverage90", "residual_ratio", "seconds")}
    report = {"device": device_name(resolve_device(args.device)), "torch": torch.__version__,
              "steps": args.steps, "samples": args.samples, "prior": args.prior, "phantoms": args.phantoms,
              "command": " ".join(sys.argv), "means": means, "runs": runs}
    atomic_write(args.out, lambda tmp: Path(tmp).write_text(json.dumps(report, indent=1)))
    for key, v in means.items():
        print(f"{key:55s} PSNR {v['psnr']:.2f}  SSIM {v['ssim']:.3f}  cov90 {v['coverage90']:.3f}  "
              f"res {v['residual_ratio']:.2f}  {v['seconds']:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
