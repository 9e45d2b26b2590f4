"""Quality per second: PSNR and t-corrected coverage against network evaluations and seconds,
for every solver and step budget, on the CT, MRI and inpainting demos and a real-image subset.

    python benchmarks/quality_per_second.py [--problems demo:ct demo:mri demo:inpaint real:ct:ct ...]
        [--solvers diffpir ddim fvfo ...] [--budgets 5 10 20 50] [--samples 4] [--prior default]
        [--size 128] [--smoke] --out DIR

For each problem, solver and budget (steps) one ``engine.run`` (seed 0, no prior-fit indicator, the
prior loaded once and warmed up) records PSNR of the posterior mean, the fraction of pixels inside
``mean +- t_{K-1} sqrt(1 + 1/K) s`` (90 %, :func:`diffrecon.metrics.coverage`), the network
evaluations per sample the engine counted, the same in full-size equivalents (the engine's
``equivalent_nfe_per_sample``: a call of ``mlem``'s cheaper levels counts its cost), and the wall seconds. Per problem and solver the summary names the
best PSNR and the cheapest setting within 0.3 dB of it, by seconds and by evaluations.

Problems: ``demo:<kind>`` is :func:`diffrecon.demo.make_demo` (phantom 0); ``real:<image>:<task>`` is
``benchmarks/real_images.py``'s image and task (``ct``, ``mr``, ``cell``, ``camera``; ``ct``,
``mri_x4``, ``inpaint``, ...). ``--mlem-family`` runs ``mlem`` over the bundled procedural family
(1/16, 1/4, 1 of the compute) instead of the chosen prior's own levels.

``--smoke``: a CPU check of the script (32 x 32, the ``procedural-small`` prior, five solvers, budgets
2 and 4, 2 samples, one real image); its numbers say nothing about quality. DIR gets ``quality_per_second_<machine>.json`` (settings, machine, every
run, appended as each finishes) and ``.md`` (the summary table).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from real_images import load_image, run as run_one, simulate  # noqa: E402

from diffrecon import __version__  # noqa: E402
from diffrecon.demo import make_demo  # noqa: E402
from diffrecon.io.atomic import atomic_write  # noqa: E402
from diffrecon.operators import build_operator  # noqa: E402
from diffrecon.priors import load_prior  # noqa: E402
from diffrecon.runtime import device_name, resolve_device  # noqa: E402
from diffrecon.solvers import SOLVERS  # noqa: E402
from diffrecon.solvers import mlem  # noqa: E402

PROBLEMS = ("demo:ct", "demo:mri", "demo:inpaint", "real:ct:ct", "real:mr:mri_x4", "real:camera:inpaint")
SOLVER_SET = ("diffpir", "ddim", "dpmpp_2m", "fvfo", "dpmpp_3m_sde", "mlem", "ddnm", "dps")
BUDGETS = (5, 10, 20, 50)
WITHIN_DB = 0.3


def build_problem(spec: str, size: int):
    parts = spec.split(":")
    if parts[0] == "demo" and len(parts) == 2:
        return make_demo(parts[1], size=size)
    if parts[0] == "real" and len(parts) == 3:
        return simulate(parts[2], load_image(parts[1], size), seed=0, name=parts[1])
    raise SystemExit(f"problem {spec!r}: use demo:<kind> or real:<image>:<task>")


def at_size(denoiser, size: int):
    """A fully convolutional prior declared at ``size`` (its card says where it was trained)."""
    if tuple(denoiser.card.resolution) != (size, size) and (denoiser.card.extra or {}).get("any_size"):
        denoiser.card = dataclasses.replace(denoiser.card, resolution=(size, size))
    return denoiser


def machine(device: torch.device) -> dict:
    from cpu_path import machine as cpu_machine

    return {"device": device_name(device), **cpu_machine()}


def summarize(rows: list[dict]) -> list[dict]:
    out = []
    for key in sorted({(r["problem"], r["solver"]) for r in rows if r.get("psnr") is not None}):
        runs = [r for r in rows if (r["problem"], r["solver"]) == key and r.get("psnr") is not None]
        best = max(runs, key=lambda r: r["psnr"])
        good = [r for r in runs if r["psnr"] >= best["psnr"] - WITHIN_DB]
        fast = min(good, key=lambda r: r["seconds"])
        few = min(good, key=lambda r: r["equivalent_nfe"])
        out.append({"problem": key[0], "solver": key[1], "best_psnr": best["psnr"], "best_steps": best["steps"],
                    "cheapest_steps_seconds": fast["steps"], "cheapest_seconds": fast["seconds"],
                    "cheapest_psnr": fast["psnr"], "cheapest_coverage": fast.get("coverage90_t"),
                    "cheapest_steps_nfe": few["steps"], "cheapest_nfe": few["equivalent_nfe"]})
    return out


def markdown(summary: list[dict]) -> str:
    lines = ["| problem | solver | best PSNR (steps) | cheapest within 0.3 dB: steps, s, PSNR, coverage | by evaluations: steps, NFE |",
             "|---|---|---|---|---|"]
    for s in summary:
        cov = "-" if s["cheapest_coverage"] is None else f"{s['cheapest_coverage']:.2f}"
        lines.append(f"| {s['problem']} | {s['solver']} | {s['best_psnr']:.2f} ({s['best_steps']}) | "
                     f"{s['cheapest_steps_seconds']}, {s['cheapest_seconds']:.1f}, {s['cheapest_psnr']:.2f}, {cov} | "
                     f"{s['cheapest_steps_nfe']}, {s['cheapest_nfe']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", nargs="+", default=list(PROBLEMS))
    ap.add_argument("--solvers", nargs="+", default=list(SOLVER_SET))
    ap.add_argument("--budgets", nargs="+", type=int, default=list(BUDGETS))
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--prior", default="default")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--mlem-family", action="store_true")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--tag", default="", help="appended to the file names (e.g. the machine)")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)
    if a.smoke:
        a.problems = ["demo:ct", "demo:mri", "demo:inpaint", "real:ct:ct"] if a.problems == list(PROBLEMS) else a.problems
        a.solvers = ["diffpir", "ddim", "fvfo", "dpmpp_3m_sde", "mlem"] if a.solvers == list(SOLVER_SET) else a.solvers
        a.budgets, a.samples, a.size, a.prior = [2, 4], 2, 32, "procedural-small"
    device = resolve_device(a.device)
    denoiser = at_size(load_prior(a.prior, device=device), a.size)
    family = None
    if a.mlem_family:
        family = mlem.family_levels(device=device)
        for level in family.level_list:
            at_size(level, a.size)
        family.card = denoiser.card if a.prior == "procedural" else family.card
    tag = a.tag or ("cpu" if device.type == "cpu" else device_name(device).split("(")[-1].split()[-1].lower().strip(")"))
    a.out.mkdir(parents=True, exist_ok=True)
    path = a.out / f"quality_per_second_{tag}.json"
    record = {"settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()},
              "machine": machine(device), "version": __version__, "within_db": WITHIN_DB, "runs": []}

    def save():
        record["summary"] = summarize(record["runs"])
        atomic_write(path, lambda tmp: tmp.write_text(json.dumps(record, indent=1)))

    for spec in a.problems:
        m = build_problem(spec, a.size)
        op = build_operator(m.operator)
        run_one(m, "ddim", {}, 1, 1, denoiser=denoiser, prior_fit=False)  # warm-up (threads, allocator, caches)
        for solver in a.solvers:
            reason = SOLVERS[solver].unmet_need(op)
            if reason:
                record["runs"].append({"problem": spec, "solver": solver, "skipped": reason})
                continue
            den = family if (solver == "mlem" and family is not None) else denoiser
            for steps in a.budgets:
                r = run_one(m, solver, {}, steps, a.samples, denoiser=den, prior_fit=False)
                result = r.pop("_result", None)
                row = {"problem": spec, "solver": solver, "steps": steps, "samples": a.samples,
                       **{k: r.get(k) for k in ("psnr", "ssim", "coverage90_t", "seconds", "error")}}
                metrics = result.metrics if result is not None else {}
                row["nfe"] = float(metrics.get("nfe_per_sample", math.nan))
                row["equivalent_nfe"] = float(metrics.get("equivalent_nfe_per_sample", math.nan))  # as the engine counts
                record["runs"].append(row)
                print(f"{spec:<22} {solver:<13} {steps:4d} steps  PSNR {row['psnr'] if row['psnr'] is None else round(row['psnr'], 2)}"
                      f"  cov {row['coverage90_t'] if row['coverage90_t'] is None else round(row['coverage90_t'], 2)}"
                      f"  {row['seconds'] or math.nan:7.2f} s  NFE {row['equivalent_nfe']:.1f}", flush=True)
                save()
    save()
    (a.out / f"quality_per_second_{tag}.md").write_text(markdown(record["summary"]))
    print(markdown(record["summary"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
