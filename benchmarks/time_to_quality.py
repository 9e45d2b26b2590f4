"""Time to quality on one GPU (issue 19, part 2), and the ADM network's share of the bf16 peak.

    python benchmarks/time_to_quality.py --out $OUT/ttq.json [--cm-prior FOLDER] [--sections ...]
    python benchmarks/time_to_quality.py --smoke --out /tmp/ttq.json      # CPU, tiny, under a minute

Sections (each recorded in the JSON as it finishes; an error is recorded and the rest goes on):

1. ``matmul``: the measured bf16 matrix rate (``bench_deepinv.matmul_rate``), the peak below.
2. ``reference``: 1000-step DPS (its posterior mode, whose step does not depend on the
   projector's units; ``--ref-paper``: the paper's step), K = 8 posterior samples, on 256 x 256
   sparse-view CT (60 parallel-beam views, 0.1 cm pixels, 1 % noise; :func:`ct_problem`) of held-out phantoms with a
   trained prior (``--prior``, default ``procedural``: fully convolutional, trained on 256 x 256
   images); the PSNR of its posterior mean sets the quality bar, ``reference - 0.3 dB``.
3. ``ours``: for each setting (solver, parameters, warm start; the consistency model ``cm`` with
   ``--cm-prior``), the step ladder from the cheapest up until the mean of K = 8 samples reaches
   the bar: wall seconds of ``engine.run`` (after a warm-up run of the same shape, so graph
   recording and compiling are not counted on either side), PSNR, evaluations.
4. ``deepinv``: the same for deepinv's ``DPS`` (1000 steps too: the issue's 40x baseline) and
   ``DiffPIR`` as shipped, with the same network (wrapped, bf16) on the identical problem (our
   projector as a deepinv ``LinearPhysics``). Skipped, saying so, when deepinv is not installed.
5. ``throughput``: one evaluation of the ADM network (``imagenet_256_uncond``, 553 M parameters,
   random seeded weights) at K = 8 and 16 samples per batch, plain and with DPS's gradient, in
   each ``--modes`` (eager, CUDA graphs, torch.compile, channels-last): milliseconds per sample
   and the fraction of the measured bf16 peak (FLOPs x K (x3 with the gradient) / seconds / peak).

The summary names the fastest setting of each side that reached the bar, their ratio, and the
ratio to deepinv's 1000-step DPS (goals: >= 5x and >= 40x).
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_deepinv import (CT_VIEWS, NOISE, Clock, _timed_calls, build_adm, ground_truth, import_deepinv,  # noqa: E402
                           make_deepinv_wrappers, matmul_rate, run_theirs, write_report)
from bench_deepinv import section as bench_section  # noqa: E402
from diffrecon import engine  # noqa: E402
from diffrecon.measurement import Measurement  # noqa: E402
from diffrecon.operators import ParallelBeamCT, sparse_view_angles  # noqa: E402
from diffrecon.metrics import psnr  # noqa: E402
from diffrecon.priors import load_prior  # noqa: E402
from diffrecon.priors.adm import ADMConfig, ADMUNet, count_flops  # noqa: E402
from diffrecon.runtime import device_name  # noqa: E402
from diffrecon.schedule import make_sigmas  # noqa: E402
from diffrecon.solvers import SOLVERS  # noqa: E402

TOLERANCE_DB = 0.3
#: our settings: (label, solver, params, warm start, step ladder); "cm" rows need --cm-prior
#: DPS and DiffPIR in their posterior modes (the registry's posterior_mode: DPS's likelihood step, whose length
#: does not depend on the projector's units; DiffPIR's perturbed data step) besides the papers' defaults
DPS_POSTERIOR = dict(SOLVERS["dps"].posterior_mode)
DIFFPIR_POSTERIOR = dict(SOLVERS["diffpir"].posterior_mode)
OURS = (
    ("cm", "cm", {}, "none", (2, 4, 8)),
    ("cm + TV warm start", "cm", {}, "tv", (2, 4, 8)),
    ("diffpir + TV warm start", "diffpir", {}, "tv", (5, 10, 20, 50)),
    ("diffpir posterior mode + TV", "diffpir", DIFFPIR_POSTERIOR, "tv", (5, 10, 20, 50)),
    ("diffpir", "diffpir", {}, "none", (10, 20, 50, 100)),
    ("dps posterior mode", "dps", DPS_POSTERIOR, "none", (100, 200, 500)),
)
#: deepinv's settings as shipped: (label, its sampler in bench_deepinv.run_theirs, step ladder)
THEIRS = (("deepinv DiffPIR", "diffpir", (10, 20, 50, 100, 200)), ("deepinv DPS", "dps", (100, 250, 500, 1000)))


def settings(args) -> dict:
    if args.smoke:
        torch.set_num_threads(1)  # tiny tensors: thread hand-offs cost more than they give
        return {"size": 32, "k": 2, "phantoms": 1, "ref_steps": 4, "ladder_cap": 3, "prior": "procedural-small",
                "adm": dataclasses.replace(ADMConfig.ffhq_256(), image_size=32, model_channels=32, channel_mult=(1, 2),
                                           num_head_channels=16),
                "throughput_ks": (2,), "repeats": 1}
    return {"size": args.size, "k": args.samples, "phantoms": args.phantoms, "ref_steps": 1000, "ladder_cap": None,
            "prior": args.prior, "adm": ADMConfig.imagenet_256_uncond(), "throughput_ks": tuple(args.throughput_ks),
            "repeats": args.repeats}


def at_size(denoiser, size: int):
    """A fully convolutional prior run at ``size`` x ``size`` (the card states the network's input size)."""
    denoiser.card = dataclasses.replace(denoiser.card, resolution=(size, size))
    return denoiser


# ------------------------------------------------------------------------------------ runs
def run_ours(m, denoiser, solver, params, steps, k, warm, device) -> dict:
    """One reconstruction's wall seconds and PSNR. The divergence guard only reports (its count is
    recorded): DPS kicks its estimate far out at its second step and comes back with enough steps
    (diffrecon/guard.py), further out with the procedural priors than the guard allows."""
    cfg = engine.RunConfig(solver=solver, params=params, steps=steps, samples=k, seed=0, device=str(device),
                           precision="bf16", batch_size=k, keep_samples=0, preview_interval=1e9, warm_start=warm,
                           prior_fit=False, use_calibration=False, on_divergence="continue")
    diverged, result = 0, None
    with Clock(device) as clock:
        for e in engine.run(m, cfg, denoiser=denoiser):
            diverged += len(e.divergences) if isinstance(e, engine.Diverged) else 0
            result = e.result if isinstance(e, engine.Finished) else result
    return {"seconds": clock.seconds, "nfe": result.metrics["nfe"], "diverged_samples": diverged,
            "psnr": psnr(result.mean, m.ground_truth, data_range=1.0)}


def ladder(label, steps_list, call, bar: float | None, cap: int | None) -> dict:
    """Run ``call(steps)`` up the ladder until the PSNR reaches ``bar``; warm-up first; ``cap``: one rung of at
    most ``cap`` steps."""
    if cap is not None:  # the smoke check: one short rung
        steps_list = [min(steps_list[0], cap)]
    call(min(2, steps_list[0]))  # warm-up: graphs, compiled kernels, the allocator
    tried = []
    for steps in steps_list:
        r = call(steps)
        r["steps"], r["meets_bar"] = steps, bar is not None and r["psnr"] >= bar
        tried.append(r)
        print(f"  {label:28s} {steps:5d} steps  PSNR {r['psnr']:6.2f}  {r['seconds']:8.3f} s"
              f"{'  meets the bar' if r['meets_bar'] else ''}", flush=True)
        if r["meets_bar"]:
            break
    best = next((r for r in tried if r["meets_bar"]), None)
    return {"label": label, "tried": tried, "best": best}


def ct_problem(x: np.ndarray, dinv, device, seed: int):
    """``(ours: Measurement, theirs: (y, physics) or None)``: ``bench_deepinv.problem``'s CT (60 views,
    noise 1 % of the sinogram's maximum) with the demo's 0.1 cm pixels (attenuation in 1/cm, ||A|| ~ 10
    instead of ~90: DPS's paper step diverges on the latter), the identical problem on both sides."""
    op = ParallelBeamCT(x.shape, sparse_view_angles(CT_VIEWS), pixel_size=0.1)
    xt = torch.from_numpy(x)[None]
    clean = op.A(xt)
    op.noise_sigma = NOISE * float(clean.abs().max())
    y = clean + op.noise_sigma * torch.randn(clean.shape, generator=torch.Generator().manual_seed(seed))
    m = Measurement(y=y[0].numpy(), operator=op.to_spec(), noise_sigma=op.noise_sigma, value_range=(0.0, 1.0),
                    ground_truth=x)
    if dinv is None:
        return m, None
    shared = op.to(device)
    physics = dinv.physics.LinearPhysics(A=shared.A, A_adjoint=shared.A_adjoint,
                                         noise_model=dinv.physics.GaussianNoise(op.noise_sigma))
    return m, (y.to(device), physics)


def problems(setup, dinv, device) -> list:
    return [ct_problem(ground_truth(setup["size"], 1, i), dinv, device, i) for i in range(setup["phantoms"])]


def mean_of(rows: list[dict]) -> dict:
    out = {"seconds": statistics.mean(r["seconds"] for r in rows), "psnr": statistics.mean(r["psnr"] for r in rows)}
    for key in ("nfe", "diverged_samples"):
        if key in rows[0]:
            out[key] = statistics.mean(r[key] for r in rows)
    return out


def reference_section(setup, probs, den, device, params: dict) -> dict:
    rows = [run_ours(m, den, "dps", params, setup["ref_steps"], setup["k"], "none", device) for m, _ in probs]
    out = {"steps": setup["ref_steps"], "samples": setup["k"], "params": params, **mean_of(rows), "per_phantom": rows}
    out["bar_psnr"] = out["psnr"] - TOLERANCE_DB
    if out.get("diverged_samples"):
        out["warning"] = (f"the reference diverged ({out['diverged_samples']:g} samples per phantom left the guard's "
                          "bounds): its PSNR is no quality bar; run with --prior default --size 128")
        print(f"WARNING: {out['warning']}", flush=True)
    print(f"reference: DPS {setup['ref_steps']} steps, K = {setup['k']}: PSNR {out['psnr']:.2f} dB in "
          f"{out['seconds']:.1f} s; bar {out['bar_psnr']:.2f} dB", flush=True)
    return out


def ours_section(setup, probs, den, cm, bar, device) -> list[dict]:
    rows = []
    for label, solver, params, warm, steps_list in OURS:
        prior = cm if solver == "cm" else den
        if prior is None:
            rows.append({"label": label, "skipped": "no --cm-prior given"})
            continue
        rows.append(ladder(label, steps_list, lambda s: mean_of([run_ours(m, prior, solver, params, s, setup["k"],
                                                                          warm, device) for m, _ in probs]),
                           bar, setup["ladder_cap"]))
    return rows


def deepinv_section(setup, probs, den, dinv, bar, device) -> list[dict]:
    Autocast, FromOurs = make_deepinv_wrappers(dinv)
    net = Autocast(FromOurs(den), torch.bfloat16 if device.type == "cuda" else None).to(device)
    lo, hi = den.card.value_range
    rows = []
    for label, sampler, steps_list in THEIRS:
        def call(steps):
            out = []
            for m, theirs in probs:
                r = run_theirs(dinv, net, theirs, sampler, steps, setup["k"], device, make_sigmas(steps, den),
                               range_width=float(hi - lo))
                out.append({"seconds": r["seconds"], "psnr": psnr(r["mean"], m.ground_truth, data_range=1.0)})
            return mean_of(out)
        rows.append(ladder(label, steps_list, call, bar, setup["ladder_cap"]))
    return rows


def throughput_section(setup, device, rate: float | None, modes) -> list[dict]:
    cfg = setup["adm"]
    with tempfile.TemporaryDirectory() as tmp:
        den = build_adm({"config": cfg}, Path(tmp), device)
    size = cfg.image_size
    with torch.device("meta"):
        flops = count_flops(ADMUNet(cfg), (1, cfg.in_channels, size, size))
    rows = []
    for k in setup["throughput_ks"]:
        x = torch.randn(k, cfg.in_channels, size, size, device=device, generator=torch.Generator(device).manual_seed(0))
        sigma = torch.full((k,), 0.5, device=device)
        for mode in modes:
            base, channels_last = mode.removesuffix("+cl"), mode.endswith("+cl")
            for grad in (False, True):
                row = {"K": k, "mode": mode, "gradient": grad, "flops_per_evaluation": flops}
                try:
                    den.accelerate(base, channels_last)

                    def call():
                        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                            if not grad:
                                with torch.no_grad():
                                    return den(x, sigma)
                            xi = x.detach().requires_grad_(True)
                            return torch.autograd.grad(den(xi, sigma).square().sum(), xi)[0]

                    first, per_call = _timed_calls(call, device, setup["repeats"] * 3)
                    work = flops * k * (3 if grad else 1)
                    row.update({"ms_per_sample": 1e3 * per_call / k, "first_call_seconds": first,
                                "fraction_of_peak": work / per_call / rate if rate else None})
                except Exception as err:  # a mode that fails here is a result too
                    row["error"] = f"{type(err).__name__}: {str(err)[:300]}"
                finally:
                    if den.network_call is not None:
                        den.network_call.release()
                rows.append(row)
                frac = row.get("fraction_of_peak")
                print(f"  ADM K={k:3d} {mode:11s} {'grad ' if grad else 'plain'} "
                      + (row["error"][:100] if "error" in row else
                         f"{row['ms_per_sample']:8.2f} ms/sample  {'n/a' if frac is None else f'{100 * frac:.0f} %'} "
                         "of the bf16 peak"), flush=True)
    return rows


def summary(report: dict) -> dict:
    def fastest(rows):
        done = [r for r in rows or [] if isinstance(r, dict) and r.get("best")]
        return min(done, key=lambda r: r["best"]["seconds"]) if done else None

    ours, theirs = fastest(report.get("ours")), fastest(report.get("deepinv"))
    ref = report.get("reference") if isinstance(report.get("reference"), dict) else {}
    out = {"reference_warning": ref.get("warning"), "ours_best": ours and {"label": ours["label"], **ours["best"]},
           "deepinv_best": theirs and {"label": theirs["label"], **theirs["best"]}}
    dps_1000 = next((t for r in report.get("deepinv") or [] if isinstance(r, dict) and r.get("label") == "deepinv DPS"
                     for t in r["tried"] if t["steps"] == 1000), None)
    if ours and theirs:
        out["speedup_vs_deepinv_best"] = theirs["best"]["seconds"] / ours["best"]["seconds"]
    if ours and dps_1000:
        out["speedup_vs_deepinv_dps_1000"] = dps_1000["seconds"] / ours["best"]["seconds"]
    return out


# ------------------------------------------------------------------------------------ main
SECTIONS = ("matmul", "reference", "ours", "deepinv", "throughput")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--smoke", action="store_true", help="CPU, 32 x 32, tiny networks: a check of the script")
    ap.add_argument("--prior", default="procedural", help="the trained prior (fully convolutional, run at --size)")
    ap.add_argument("--cm-prior", default=None, help="a consistency model distilled from --prior (for the cm rows)")
    ap.add_argument("--ref-paper", action="store_true",
                    help="the reference DPS with the paper's step (default: its posterior mode, the likelihood step)")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--samples", type=int, default=8, help="K, posterior samples per reconstruction")
    ap.add_argument("--phantoms", type=int, default=1, help="held-out phantoms (TEST_SEEDS) averaged per setting")
    ap.add_argument("--throughput-ks", type=int, nargs="+", default=[8, 16])
    ap.add_argument("--modes", default="graphs,compile", help="throughput modes: none, graphs, compile, +cl suffix")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--sections", default=",".join(SECTIONS))
    args = ap.parse_args(argv)
    chosen = [s for s in args.sections.split(",") if s]
    if set(chosen) - set(SECTIONS):
        ap.error(f"unknown sections {sorted(set(chosen) - set(SECTIONS))}; valid: {', '.join(SECTIONS)}")
    device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    setup = settings(args)
    report = {"device": device_name(device), "torch": torch.__version__, "smoke": args.smoke, "sections": chosen,
              "settings": {k: (dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v) for k, v in setup.items()},
              "prior": setup["prior"], "cm_prior": args.cm_prior and Path(args.cm_prior).name,
              "tolerance_db": TOLERANCE_DB}
    started = time.perf_counter()

    def section(name, fn, *a):  # bench_deepinv's: errors recorded, the JSON rewritten; then the summary
        bench_section(report, name, args.out, fn, *a)
        report["summary"] = summary(report)
        write_report(report, args.out)

    if "matmul" in chosen or "throughput" in chosen:
        section("matmul", matmul_rate, device, args.smoke)
    dinv = None
    if "deepinv" in chosen:
        try:
            dinv = import_deepinv(report)
        except ImportError as err:
            report["deepinv"] = {"skipped": f"deepinv is not installed here ({err}); install its wheel with "
                                            "pip install --no-deps .whl/deepinv-0.5.0-py3-none-any.whl"}
            print(report["deepinv"]["skipped"], flush=True)
    if {"reference", "ours", "deepinv"} & set(chosen):
        den = at_size(load_prior(setup["prior"], device=device), setup["size"])
        cm = at_size(load_prior(args.cm_prior, device=device), setup["size"]) if args.cm_prior else None
        if args.smoke and cm is None:
            cm = den  # the cm code path with a plain prior: a check of the script, not a result
        probs = problems(setup, dinv, device)
        section("reference", reference_section, setup, probs, den, device, {} if args.ref_paper else DPS_POSTERIOR)
        bar = report["reference"].get("bar_psnr") if isinstance(report["reference"], dict) else None
        if "ours" in chosen:
            section("ours", ours_section, setup, probs, den, cm, bar, device)
        if dinv is not None:
            section("deepinv", deepinv_section, setup, probs, den, dinv, bar, device)
    if "throughput" in chosen:
        rate = report["matmul"].get("flops_per_second") if isinstance(report.get("matmul"), dict) else None
        section("throughput", throughput_section, setup, device, rate, args.modes.split(","))
    report["total_seconds"] = time.perf_counter() - started
    report["summary"] = summary(report)
    write_report(report, args.out)
    print(f"summary {report['summary']}\ntotal {report['total_seconds']:.0f} s; wrote {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
