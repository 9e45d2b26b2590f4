"""The consistency-model solver ``cm`` on the phantom test set and the real-image set, beside the
teacher's solvers (issue 19, part 1).

    python benchmarks/evaluate_consistency.py --cm-prior FOLDER --out DIR [--prior default]
        [--tasks ...] [--n-test 10] [--samples 8] [--nfe 2 4 8] [--images ...] [--time-budget 420]
    python benchmarks/evaluate_consistency.py --smoke --out /tmp/cm_eval      # CPU, tiny, a check

Methods, each one ``diffrecon.engine.run`` with K = ``--samples`` posterior samples (seed 0):
``cm`` with the distilled model at each ``--nfe``; ``cm`` with the teacher itself at the largest
NFE (what the distillation buys); DiffPIR with the teacher at 20 steps (the paper's defaults) and
warm-started from TV at 10. Phantom set: the test phantoms of ``benchmarks/evaluate_prior.py``
(its tasks, demo conventions, ``TEST_SEEDS``); real-image set: the images and tasks of
``benchmarks/real_images.py``. Metrics: PSNR and SSIM of the posterior mean, the engine's 90 %
coverage (``coverage90``, pixels whose truth lies in mean +- z s) and the t-interval coverage of
``real_images.t_coverage`` (small-K honest), seconds per reconstruction (K samples together), the
spread label. Writes DIR/evaluate_consistency.json (appended as it goes) and DIR/evaluate_consistency.md.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import evaluate_prior  # noqa: E402
import real_images  # noqa: E402
from diffrecon import __version__, engine  # noqa: E402
from diffrecon.errors import RunError  # noqa: E402
from diffrecon.io.atomic import atomic_write  # noqa: E402
from diffrecon.priors import load_prior, prior_weight_hash  # noqa: E402
from diffrecon.runtime import device_name, resolve_device  # noqa: E402

METRICS = ("psnr", "ssim", "coverage90", "coverage90_t", "seconds")


def methods(nfe: list[int]) -> list[tuple[str, str, str, dict, int, str]]:
    """(label, prior role, solver, params, steps, warm start)."""
    rows = [(f"cm {k} NFE", "cm", "cm", {}, k, "none") for k in nfe]
    return rows + [(f"cm {max(nfe)} NFE, teacher (not distilled)", "teacher", "cm", {}, max(nfe), "none"),
                   ("diffpir 20", "teacher", "diffpir", {}, 20, "none"),
                   ("diffpir 10 + TV warm start", "teacher", "diffpir", {}, 10, "tv")]


def reconstruct(m, solver: str, params: dict, steps: int, samples: int, warm: str, denoiser, device) -> dict:
    cfg = engine.RunConfig(solver=solver, params=params, steps=steps, samples=samples, seed=0, device=str(device),
                           keep_samples=samples, preview_interval=1e9, warm_start=warm, prior_fit=False,
                           use_calibration=False)
    t0 = time.perf_counter()
    try:
        result = next(e.result for e in engine.run(m, cfg, denoiser=denoiser) if isinstance(e, engine.Finished))
    except RunError as err:
        return {"error": str(err)[:300]}
    out = {k: result.metrics.get(k) for k in ("psnr", "ssim", "coverage90", "nfe")}
    out["seconds"] = time.perf_counter() - t0
    out["coverage90_t"] = real_images.t_coverage(result.samples, m.ground_truth) if result.samples is not None else None
    out["spread"] = result.provenance.get("spread")
    return out


def mean_row(rows: list[dict]) -> dict:
    ok = [r for r in rows if "error" not in r]
    out = {"n": len(ok), "failures": len(rows) - len(ok)}
    for k in METRICS:
        values = [r[k] for r in ok if r.get(k) is not None]
        out[k] = statistics.mean(values) if values else None
    return out


def markdown(report: dict) -> str:
    lines = []
    for name in ("phantoms", "real_images"):
        table = report.get(name) or {}
        if not table:
            continue
        lines += [f"### {name.replace('_', ' ')}", "", "| task | method | PSNR | SSIM | cov90 | cov90 (t) | s / recon |",
                  "|---|---|---|---|---|---|---|"]
        fmt = lambda v, d: "-" if v is None else f"{v:.{d}f}"  # noqa: E731
        for task, by_method in table.items():
            for label, row in by_method.items():
                s = row["summary"]
                lines.append(f"| {task} | {label} | {fmt(s['psnr'], 2)} | {fmt(s['ssim'], 3)} | {fmt(s['coverage90'], 2)} "
                             f"| {fmt(s['coverage90_t'], 2)} | {fmt(s['seconds'], 3)} |")
        lines.append("")
    return "\n".join(lines)


def write(out: Path, report: dict) -> None:
    text, md = json.dumps(report, indent=1, default=float), markdown(report)
    atomic_write(out / "evaluate_consistency.json", lambda tmp: tmp.write_text(text))
    atomic_write(out / "evaluate_consistency.md", lambda tmp: tmp.write_text(md))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cm-prior", default=None, help="the distilled consistency model (a prior folder)")
    ap.add_argument("--prior", default="default", help="its teacher")
    ap.add_argument("--tasks", nargs="*", default=["ct", "ct_limited", "mri_x4", "inpaint", "deblur", "sr"])
    ap.add_argument("--real-tasks", nargs="*", default=["ct", "ct_limited", "mri_x4", "inpaint", "deblur", "sr_x4"])
    ap.add_argument("--images", nargs="*", default=list(real_images.IMAGES))
    ap.add_argument("--n-test", type=int, default=10)
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--nfe", type=int, nargs="+", default=[2, 4, 8])
    ap.add_argument("--time-budget", type=float, default=420.0, help="seconds; no new (task, method) starts past it")
    ap.add_argument("--smoke", action="store_true", help="CPU, 32 x 32 phantoms, one task, plain prior as cm")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    device = resolve_device("cpu" if args.smoke else "auto")
    size = 32 if args.smoke else real_images.SIZE
    if args.smoke:
        torch.set_num_threads(1)
        args.tasks, args.real_tasks, args.images, args.n_test, args.samples, args.nfe = ["inpaint"], [], [], 1, 2, [2]
        args.prior = "procedural-small"
    teacher = load_prior(args.prior, (1, size, size), device=device)
    if args.smoke:
        import dataclasses
        teacher.card = dataclasses.replace(teacher.card, resolution=(size, size))
    cm = load_prior(args.cm_prior, device=device) if args.cm_prior else (teacher if args.smoke else None)
    if cm is None:
        ap.error("--cm-prior is required (a folder written by diffrecon distill)")
    priors = {"cm": cm, "teacher": teacher}
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"device": device_name(device), "torch": torch.__version__, "diffrecon": __version__,
              "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "settings": {k: v for k, v in vars(args).items() if k not in ("out", "cm_prior")},
              "cm_card": json.loads(cm.card.to_json()), "cm_hash": prior_weight_hash(cm),
              "teacher_hash": prior_weight_hash(teacher), "phantoms": {}, "real_images": {}, "status": "running"}
    deadline = time.monotonic() + args.time_budget
    sets = [("phantoms", t, [m for m in evaluate_prior.measurements(t, size, 0, args.n_test)[1]]) for t in args.tasks]
    sets += [("real_images", t, [real_images.simulate(t, real_images.phantom_image() if i == "phantom"
                                                      else real_images.load_image(i), 0, i) for i in args.images])
             for t in args.real_tasks]
    for name, task, ms in sets:
        for label, role, solver, params, steps, warm in methods(args.nfe):
            if time.monotonic() > deadline:
                report["status"] = f"stopped by --time-budget before {name}/{task}/{label}"
                write(args.out, report)
                return 0
            rows = [reconstruct(m, solver, params, steps, args.samples, warm, priors[role], device) for m in ms]
            summary = mean_row(rows)
            report[name].setdefault(task, {})[label] = {"summary": summary, "rows": rows}
            print(f"{name:11s} {task:10s} {label:36s} PSNR {summary['psnr'] or float('nan'):6.2f}  cov90 "
                  f"{summary['coverage90'] or float('nan'):.2f}  {summary['seconds'] or float('nan'):.3f} s", flush=True)
            write(args.out, report)
    report["status"] = "complete"
    write(args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
