"""Host synchronisations per solver step on a GPU (issue 8: solver arithmetic stays on the device).

    python benchmarks/sync_check.py [--out sync.json]

Runs each diffusion solver on the bundled prior (128x128, 4 samples, CUDA graphs, bf16) on
inpainting and sparse-view CT: two warm-up steps, then steps under
``torch.cuda.set_sync_debug_mode("warn")``, counting the warnings (each is one point where the
host waits for the GPU). Prints a table and writes JSON with the device name.
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from diffrecon import demo, engine  # noqa: E402
from diffrecon.runtime import Counter, CountingDenoiser  # noqa: E402

SOLVERS = ("dps", "ddrm", "ddnm", "diffpir", "dds", "pigdm", "daps", "reddiff", "ddim", "ddpm", "dpmpp_2m")


def count(solver: str, kind: str, steps: int) -> dict:
    m = demo.make_demo(kind, 128, 0)
    cfg = engine.RunConfig(solver=solver, steps=20, samples=4, device="cuda")
    setup = engine.prepare(m, cfg)
    if setup.info.unmet_need(setup.op):
        return {"skipped": setup.info.unmet_need(setup.op)}
    rng, x_init, y = engine._batch_start(setup, 0, range(4))
    den = CountingDenoiser(setup.denoiser, Counter(), setup.autocast, setup.device)
    per_step, sites = [], {}
    with torch.no_grad():
        it = setup.info.solve(den, setup.op, y, setup.sigmas, x_init, params=setup.params, generator=rng)
        for k in range(2 + steps):
            if k < 2:
                next(it)
                continue
            torch.cuda.synchronize()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                torch.cuda.set_sync_debug_mode("warn")
                try:
                    next(it)
                finally:
                    torch.cuda.set_sync_debug_mode("default")
            syncs = [w for w in caught if "synchroniz" in str(w.message)]
            per_step.append(len(syncs))
            for w in syncs:
                where = f"{Path(w.filename).name}:{w.lineno}"
                sites[where] = sites.get(where, 0) + 1
    return {"syncs_per_step": per_step, "sites": sites}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("sync.json"))
    ap.add_argument("--steps", type=int, default=3)
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("sync_check: needs a CUDA GPU", file=sys.stderr)
        return 2
    report = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "rows": []}
    for kind in ("inpaint", "ct"):
        for solver in SOLVERS:
            try:
                row = {"task": kind, "solver": solver, **count(solver, kind, args.steps)}
            except Exception as err:  # a check records failures and goes on
                row = {"task": kind, "solver": solver, "error": f"{type(err).__name__}: {err}"}
            report["rows"].append(row)
            print(f"{kind:8s} {solver:9s} {row.get('syncs_per_step', row.get('skipped', row.get('error')))} "
                  f"{row.get('sites', '')}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
