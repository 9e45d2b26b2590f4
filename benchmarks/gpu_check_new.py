"""Run this release's new GPU paths once on CUDA and record what happened (JSON).

    python benchmarks/gpu_check_new.py --out $OUT/gpu_check_new.json

1. the posterior modes whose r_t^2 is read off the denoiser (DiffPIR, PiGDM, DAPS) with the bundled
   prior on the CT demo; 2. EDM and score-SDE NCSN++ priors (random weights, written as the tests
   write them) through the engine; 3. the budget schedule (Gaussian prior); 4. a volume (the
   three volume solvers and the posterior path) and its export.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from diffrecon import engine  # noqa: E402
from diffrecon.demo import make_demo  # noqa: E402
from diffrecon.engine import Finished, RunConfig  # noqa: E402
from diffrecon.runtime import device_name  # noqa: E402
from diffrecon.solvers import SOLVERS  # noqa: E402


def finish(m, cfg):
    for ev in engine.run(m, cfg):
        if isinstance(ev, Finished):
            return ev.result
    raise RuntimeError("no result")


def summary(result, seconds):
    return {"psnr": result.metrics.get("psnr"), "finite": bool(np.isfinite(result.mean).all()),
            "std_max": float(result.std.max()), "nfe": result.metrics.get("nfe"), "seconds": round(seconds, 2)}


def timed(fn):
    t = time.perf_counter()
    try:
        out = fn()
        return {**out, "seconds": round(time.perf_counter() - t, 2)} if isinstance(out, dict) else out
    except Exception as exc:  # noqa: BLE001 - recorded
        return {"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()[-1500:]}


def posterior_modes(record):
    m = make_demo("ct", seed=0)
    for name in ("diffpir", "pigdm", "daps"):
        def go(name=name):
            cfg = RunConfig(solver=name, params=dict(SOLVERS[name].posterior_mode), steps=20, samples=4, seed=0,
                            device="cuda", prior="default")
            t = time.perf_counter()
            return summary(finish(m, cfg), time.perf_counter() - t)
        record[f"posterior_{name}"] = timed(go)


def sde_priors(record, tmp):
    try:
        import test_prior_formats_sde as t  # the tests' writers of random-weight networks
    except ImportError as exc:
        record["edm_prior"] = record["ncsnpp_prior"] = {"error": f"test helpers not importable: {exc}"}
        return

    def edm():
        path, _ = t._write_edm(tmp)
        r = finish(make_demo("ct", size=16, seed=0), RunConfig(solver="diffpir", steps=4, samples=2, device="cuda",
                                                                prior=str(path), precision="fp32"))
        return summary(r, 0)

    def ncsnpp():
        d = tmp / "ncsnpp"
        d.mkdir()
        path, _e, _r = t._write_ncsnpp(d)
        r = finish(make_demo("ct", size=16, seed=0), RunConfig(solver="diffpir", steps=4, samples=2, device="cuda",
                                                                prior=str(path), precision="fp32"))
        return summary(r, 0)
    record["edm_prior"] = timed(edm)
    record["ncsnpp_prior"] = timed(ncsnpp)


def budget(record):
    def go():
        m = make_demo("inpaint", size=16, seed=0)
        r = finish(m, RunConfig(solver="fvfo", steps=5, samples=4, device="cuda", prior="gaussian",
                                schedule="budget", precision="fp32"))
        return {**summary(r, 0), "budget_schedule": {k: v for k, v in (r.provenance or {}).get("budget_schedule", {}).items()
                                                      if k != "levels"}}
    record["budget_schedule"] = timed(go)


def volumes(record, tmp):
    from diffrecon.cli import main

    demo = tmp / "vol.h5"
    main(["demo", "volume", "--out", str(demo), "--slices", "8", "--size", "64", "--z-spacing", "2"])
    for solver, extra in (("diffpir", []), ("diffpir", ["--posterior"]), ("dds", []), ("ddnm", [])):
        out = tmp / f"v_{solver}{len(extra)}.h5"
        key = f"volume_{solver}" + ("_posterior" if extra else "")
        record[key] = timed(lambda: {"exit": main(["reconstruct-volume", str(demo), "--out", str(out), "--solver", solver,
                                                   "--prior", "default", "--steps", "10", "--samples", "2",
                                                   "--device", "cuda", *extra])})
        torch.cuda.reset_peak_memory_stats()
    record["volume_export"] = timed(lambda: {"exit": main(["export-volume", str(tmp / "v_diffpir0.h5"), "--tiff",
                                                           str(tmp / "v.tif"), "--h5", str(tmp / "v_export.h5")])})


def main_(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)
    record = {"device": device_name(torch.device("cuda")), "torch": torch.__version__}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for section in (posterior_modes, lambda r: sde_priors(r, tmp), budget, lambda r: volumes(r, tmp)):
            section(record)
            a.out.write_text(json.dumps(record, indent=1, default=str))
    print(json.dumps({k: ({kk: vv for kk, vv in v.items() if kk != "trace"} if isinstance(v, dict) else v)
                      for k, v in record.items()}, indent=1, default=str))
    return 0 if not any(isinstance(v, dict) and "error" in v for v in record.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main_())
