"""The fast preset (warm-started from TV, as the front ends run it, and from noise) against the full
one on the CT, MRI and inpainting demos, in one run on this machine's CPU: seconds, PSNR and
t-coverage of the default reconstruction (a warm-started spread is a seed spread).

    python benchmarks/fast_default_cpu.py --out benchmarks/results/quality_per_second/fast_default_cpu.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality_per_second import build_problem, machine  # noqa: E402
from real_images import run as run_one  # noqa: E402

from diffrecon.engine.presets import PRESETS  # noqa: E402
from diffrecon.io.atomic import atomic_write  # noqa: E402
from diffrecon.priors import load_prior  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", nargs="+", default=["demo:ct", "demo:mri", "demo:inpaint"])
    ap.add_argument("--candidates", nargs="*", default=[], help="extra SOLVER:STEPS settings to time beside the presets")
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)
    denoiser = load_prior("default", device="cpu")
    settings = [(name, p["solver"], p["steps"], p["params"], p["warm_start"]) for name, p in PRESETS.items()]
    settings += [(f"{name}_noise", p["solver"], p["steps"], p["params"], "none") for name, p in PRESETS.items()
                 if p["warm_start"] != "none"]
    settings += [(c, c.split(":")[0], int(c.split(":")[1]), {}, "none") for c in a.candidates]
    record = {"machine": machine(torch.device("cpu")), "samples": a.samples, "runs": []}
    for spec in a.problems:
        m = build_problem(spec, 128)
        run_one(m, "ddim", {}, 1, 1, denoiser=denoiser, prior_fit=False)  # warm-up
        for name, solver, steps, params, warm in settings:
            r = run_one(m, solver, params, steps, a.samples, warm=warm, denoiser=denoiser, prior_fit=False)
            row = {"problem": spec, "setting": name, "solver": solver, "steps": steps, "warm_start": warm,
                   **{k: r.get(k) for k in ("psnr", "coverage90_t", "seconds")}}
            record["runs"].append(row)
            print(json.dumps(row), flush=True)
            atomic_write(a.out, lambda tmp: tmp.write_text(json.dumps(record, indent=1)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
