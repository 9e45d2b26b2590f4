"""Evaluation protocol of the bundled prior: diffusion solvers against classical baselines.

    python benchmarks/evaluate_prior.py [--prior default] [--size 128] [--n-test 20] [--n-val 5]
        [--samples 4] [--steps 100] [--device auto] [--tasks ...] [--solvers ...]
        [--time-budget 450] --out DIR

writes DIR/evaluate.json (settings, device, every number), DIR/evaluate.md (the tables for the
README) and DIR/samples_grid.png (unconditional prior samples above real test phantoms).

Protocol (see benchmarks/EVALUATE.md). Seven tasks simulated with the demo conventions of
:mod:`diffrecon.demo` (test measurement ``i`` of a demo kind is exactly ``make_demo(kind, size, i)``);
validation phantoms come from VALIDATION_SEEDS, test phantoms from TEST_SEEDS, both disjoint from
the training seeds. Every method's main parameter is tuned on the validation set by the mean PSNR
of the posterior mean over a small grid (the same protocol for all, baselines included), then
run once per test phantom through :func:`diffrecon.engine.run`, the code path users run.
Results are appended to the JSON as each (task, method) finishes, so a time-out keeps numbers.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from diffrecon import __version__, demo, engine  # noqa: E402
from diffrecon.errors import DiffreconError, InputError, RunError  # noqa: E402
from diffrecon.measurement import Measurement  # noqa: E402
from diffrecon.io.atomic import atomic_write  # noqa: E402
from diffrecon.operators import Denoise, build_operator  # noqa: E402
from diffrecon.phantoms import TEST_SEEDS, VALIDATION_SEEDS, phantom  # noqa: E402
from diffrecon.priors import default_prior_folder, load_prior, prior_weight_hash  # noqa: E402
from diffrecon.runtime import device_name, resolve_device  # noqa: E402
from diffrecon.schedule import make_sigmas  # noqa: E402
from diffrecon.solvers import SOLVERS, SampleRNG  # noqa: E402

DIFFUSION = ("dps", "ddrm", "ddnm", "diffpir")
BASELINES = ("direct", "cg", "tv")
BASELINE_ITERS = 200  # default cg / tv iterations: cheap, and enough for both to settle at 128 x 128


# ------------------------------------------------------------------------------------ tasks
@dataclass(frozen=True)
class Task:
    title: str
    demo_kind: str  # forward model, scale, units and noise convention come from this demo problem
    acceleration: float | None = None  # MRI undersampling (None: the demo's)


TASKS: dict[str, Task] = {
    "ct": Task("Sparse-view CT, 30 views, 1 % noise", "ct"),
    "ct_limited": Task("Limited-angle CT, 90 degrees", "ct_limited"),
    "mri_x4": Task("MRI x4, single coil", "mri", 4.0),
    "mri_x8": Task("MRI x8, single coil", "mri", 8.0),
    "inpaint": Task("Inpainting, 70 % missing", "inpaint"),
    "deblur": Task("Deblurring, Gaussian kernel std 2 px", "deblur"),
    "sr": Task("Super-resolution x4", "sr"),
}


def simulate(task: str, size: int, phantom_seed: int, noise_seed: int) -> Measurement:
    """``y = A x + n`` of ``phantom(size, phantom_seed)`` under ``task``: :func:`diffrecon.demo.make_demo`
    with ``noise_seed`` fixing the random mask and the noise (make_demo's test index does both).
    """
    t = TASKS[task]
    m = demo.make_demo(t.demo_kind, size, noise_seed, phantom_seed=phantom_seed, acceleration=t.acceleration)
    return dataclasses.replace(m, title=f"{t.title} (phantom {phantom_seed})")


def measurements(task: str, size: int, n_val: int, n_test: int) -> tuple[list, list]:
    """The validation set (VALIDATION_SEEDS) and the test set (TEST_SEEDS, demo indices) of a task."""
    val = [simulate(task, size, VALIDATION_SEEDS[i], VALIDATION_SEEDS[i]) for i in range(n_val)]
    test = [simulate(task, size, TEST_SEEDS[i], i) for i in range(n_test)]
    return val, test


# ------------------------------------------------------------------------------------ grids
#: method -> (tuned parameter, grid, how the grid scales with ||A||); the paper default first,
#: since a cut-short tuning keeps the values already tried. The baselines' weights are already
#: relative to the operator and the noise (diffrecon/solvers/classical.py). DPS's zeta is not
#: scaled: at 32 x 32 with 100 steps zeta = 1 was best on CT (||A|| = 3) as on deblurring.
GRIDS: dict[str, tuple[str | None, tuple[float, ...], str]] = {
    "dps": ("zeta", (1.0, 0.3, 3.0), "none"),
    "ddrm": ("eta", (0.85, 0.5, 1.0), "none"),
    "ddnm": ("eta", (0.85, 0.5, 1.0), "none"),
    "diffpir": ("lam", (7.0, 2.0, 25.0), "none"),
    "direct": (None, (), "none"),
    "cg": ("lam", (50.0, 10.0, 200.0, 2.0, 1000.0), "none"),  # relative to sigma^2 (solvers/classical.py)
    "tv": ("lam", (0.5, 0.2, 1.0, 0.1, 2.0, 0.05), "none"),  # relative to sigma ||A||
}


def grid_values(method: str, op_norm: float) -> list[float]:
    """The grid of ``method``'s main parameter for an operator of norm ``op_norm``."""
    _, values, scaling = GRIDS[method]
    factor = op_norm**2 if scaling == "norm2" else 1.0
    return [float(f"{v * factor:.4g}") for v in values]


# ----------------------------------------------------------------------------------- budget
class Budget:
    """A soft time limit on tuning: a grid value is tried only if, after it, every remaining
    test run still fits (at the seconds per run measured so far). Past ``hard`` no new
    (task, method) starts, so a wall-clock limit still finds a complete JSON."""

    def __init__(self, seconds: float | None, hard_factor: float = 1.2):
        now = time.monotonic()
        self.deadline = now + seconds if seconds else math.inf
        self.hard = now + hard_factor * seconds if seconds else math.inf
        self.seconds: dict[str, list[float]] = {}

    def record(self, method: str, seconds: float) -> None:
        self.seconds.setdefault(method, []).append(seconds)

    def per_run(self, method: str) -> float:
        own = self.seconds.get(method)
        if own:
            return float(np.mean(own))
        everything = [s for v in self.seconds.values() for s in v]
        return float(np.mean(everything)) if everything else 0.0

    def may_tune(self, method: str, n_val: int, pending_test: Sequence[tuple[str, int]]) -> bool:
        reserve = sum(n * self.per_run(m) for m, n in pending_test)
        return time.monotonic() + n_val * self.per_run(method) + reserve <= self.deadline

    def exhausted(self) -> bool:
        return time.monotonic() > self.hard


def tune(values: Sequence[float], score: Callable[[float], float], allowed: Callable[[], bool]) -> tuple:
    """Try ``values`` in order while ``allowed()``; return (best value, [(value, score)], cut).

    The best is the highest score (first on ties); with nothing tried, the first value (the
    paper default). A NaN score (a diverged run) never wins.
    """
    tried: list[tuple[float, float]] = []
    for value in values:
        if not allowed():
            break
        tried.append((value, float(score(value))))
    finite = [(v, s) for v, s in tried if math.isfinite(s)]
    best = max(finite, key=lambda vs: vs[1])[0] if finite else (values[0] if values else None)
    return best, tried, len(tried) < len(values)


# ------------------------------------------------------------------------------------- runs
def reconstruct(m: Measurement, method: str, params: dict, args, denoiser, seed: int):
    """One engine run; the Result, or None if it diverged."""
    uses_prior = SOLVERS[method].uses_prior
    cfg = engine.RunConfig(
        solver=method, params=params, steps=args.steps if uses_prior else args.baseline_iters,
        samples=args.samples if uses_prior else 1, seed=seed, prior=args.prior, device=args.device,
        precision=args.precision, keep_samples=0, preview_interval=1e9,
        use_calibration=False,  # the solvers' own std: a stored correction would hide what is measured
    )
    try:
        for event in engine.run(m, cfg, denoiser=denoiser if uses_prior else None):
            if isinstance(event, engine.Finished):
                return event.result
    except RunError:
        return None
    return None


def mean_std(values: Sequence[float]) -> tuple[float | None, float | None]:
    v = [x for x in values if x is not None and math.isfinite(x)]
    if not v:
        return None, None
    return float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0


METRICS = ("psnr", "ssim", "std_error_corr", "coverage90")


def evaluate_pair(task, method, val, test, args, denoiser, budget, pending, bar, op_norm: float) -> dict:
    """Tune ``method`` on ``val``, then measure it on ``test``: one row of the results.

    ``op_norm`` is ||A|| of the task, which scales the grid (:func:`grid_values`)."""
    name, _, _ = GRIDS[method]
    values = grid_values(method, op_norm)

    def run_one(m, value, seed):
        t0 = time.monotonic()
        result = reconstruct(m, method, {name: value} if name else {}, args, denoiser, seed)
        budget.record(method, time.monotonic() - t0)
        bar.update(1)
        return result

    def score(value):
        bar.set_postfix_str(f"{task}/{method} tune {name}={value:g}")
        results = [run_one(m, value, args.seed + VALIDATION_SEEDS[i]) for i, m in enumerate(val)]
        return float("nan") if any(r is None for r in results) else float(np.mean([r.metrics["psnr"] for r in results]))

    best, tried, cut = tune(values, score, lambda: budget.may_tune(method, len(val), pending))
    bar.total -= (len(values) - len(tried)) * len(val)
    bar.refresh()
    bar.set_postfix_str(f"{task}/{method} test")
    per, failures, seconds = [], 0, []
    for i, m in enumerate(test):
        r = run_one(m, best, args.seed + i)
        if r is None:
            failures += 1
            continue
        seconds.append(r.metrics["seconds"])
        per.append({"phantom_seed": TEST_SEEDS[i], **{k: r.metrics.get(k) for k in METRICS}})
    row = {"task": task, "method": method, "kind": "diffusion" if method in DIFFUSION else "baseline",
           "param": name, "value": best, "grid": [{"value": v, "val_psnr": s} for v, s in tried],
           "tuning_cut_by_budget": bool(cut and name), "n_test": len(per), "failures": failures,
           "seconds_per_recon": float(np.mean(seconds)) if seconds else None, "per_phantom": per}
    for k in METRICS:
        row[f"{k}_mean"], row[f"{k}_std"] = mean_std([p[k] for p in per])
    return row


# ---------------------------------------------------------------------------------- summary
def summarize(rows: Sequence[dict]) -> dict[str, dict]:
    """Per task: the best diffusion solver and best baseline by mean test PSNR, whether the
    former beats the latter and by how many dB (positive: diffusion better)."""
    out: dict[str, dict] = {}
    for task in dict.fromkeys(r["task"] for r in rows):
        best = {}
        for kind in ("diffusion", "baseline"):
            scored = [r for r in rows if r["task"] == task and r["kind"] == kind and r["psnr_mean"] is not None]
            best[kind] = max(scored, key=lambda r: r["psnr_mean"]) if scored else None
        d, b = best["diffusion"], best["baseline"]
        margin = d["psnr_mean"] - b["psnr_mean"] if d and b else None
        out[task] = {"best_diffusion": d and d["method"], "best_diffusion_psnr": d and d["psnr_mean"],
                     "best_baseline": b and b["method"], "best_baseline_psnr": b and b["psnr_mean"],
                     "beats_best_baseline": None if margin is None else bool(margin > 0),
                     "margin_db": margin}
    return out


def _fmt(mean, std, digits) -> str:
    if mean is None:
        return "-"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def markdown(report: dict) -> str:
    s = report["settings"]
    summary = report["summary"]
    lines = [
        f"Prior `{s['prior']}` at {s['size']}x{s['size']}, {s['steps']} steps, {s['samples']} samples, "
        f"{s['n_test']} test / {s['n_val']} validation phantoms per task, on "
        f"{' and '.join(s.get('device_names', [s['device_name']]))} "
        f"({report['status']}, {report.get('elapsed_seconds', 0):.0f} s).", "",
        "| Task | Method | Tuned parameter | PSNR (dB) | SSIM | corr(std, \\|err\\|) | 90 % coverage "
        "| vs best baseline (dB) | s / recon |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        base = summary.get(r["task"], {}).get("best_baseline_psnr")
        delta = f"{r['psnr_mean'] - base:+.2f}" if base is not None and r["psnr_mean"] is not None else "-"
        tuned = "-"
        if r["param"]:
            n_grid = len(GRIDS[r["method"]][1])
            cut = f" ({len(r['grid'])}/{n_grid} tried)" if r["tuning_cut_by_budget"] else ""
            tuned = f"{r['param']} = {r['value']:g}{cut}"
        sec = f"{r['seconds_per_recon']:.2f}" if r["seconds_per_recon"] is not None else "-"
        lines.append(f"| {r['task']} | {r['method']} | {tuned} | {_fmt(r['psnr_mean'], r['psnr_std'], 2)} "
                     f"| {_fmt(r['ssim_mean'], r['ssim_std'], 3)} | {_fmt(r['std_error_corr_mean'], r['std_error_corr_std'], 2)} "
                     f"| {_fmt(r['coverage90_mean'], r['coverage90_std'], 2)} | {delta} | {sec} |")
    lines += ["", "| Task | Best diffusion | PSNR (dB) | Best baseline | PSNR (dB) | Beats best baseline | Margin (dB) |",
              "|---|---|---|---|---|---|---|"]
    for task, v in summary.items():
        def num(x):
            return "-" if x is None else f"{x:.2f}"
        beats = {True: "yes", False: "no", None: "-"}[v["beats_best_baseline"]]
        margin = "-" if v["margin_db"] is None else f"{v['margin_db']:+.2f}"
        lines.append(f"| {task} | {v['best_diffusion'] or '-'} | {num(v['best_diffusion_psnr'])} "
                     f"| {v['best_baseline'] or '-'} | {num(v['best_baseline_psnr'])} | {beats} | {margin} |")
    if report.get("skipped"):
        lines += ["", "Not applicable: " + "; ".join(report["skipped"]) + "."]
    return "\n".join(lines) + "\n"


def write_report(out: Path, report: dict) -> None:
    """Both files via a temporary file and a rename, so a kill mid-write leaves the last ones."""
    report["summary"] = summarize(report["results"])
    for name, text in (("evaluate.json", json.dumps(report, indent=1, allow_nan=False, default=_json_default)),
                       ("evaluate.md", markdown(report))):
        atomic_write(out / name, lambda tmp: tmp.write_text(text))


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _finite(obj):
    """NaN / inf -> None everywhere, so the JSON stays strict."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


# ---------------------------------------------------------------------------- prior samples
def prior_samples(denoiser, n: int, steps: int, seed: int, device: torch.device, bf16: bool) -> np.ndarray:
    """``n`` unconditional samples in [0, 1] from the ``ddpm`` solver (Ho et al., NeurIPS 2020, Alg. 2)."""
    sigmas = make_sigmas(steps, denoiser)
    rng = SampleRNG(seed, range(n), device)
    x = float(sigmas[0]) * rng.randn(denoiser.image_shape)

    def den(x, sigma):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            return denoiser(x, sigma).float()

    with torch.no_grad():
        op = Denoise(denoiser.image_shape).to(device)
        info = SOLVERS["ddpm"]
        y = torch.zeros(1, *denoiser.image_shape, device=device)
        for step in info.solve(den, op, y, sigmas, x, params=info.Params(), generator=rng):
            x = step.x
    lo, hi = denoiser.card.value_range
    return ((x.float().cpu().numpy() - lo) / (hi - lo)).clip(0, 1)


def save_grid(path: Path, samples: np.ndarray, phantoms: np.ndarray) -> None:
    """Prior samples in the top row, test phantoms below, with a 2-pixel white gap."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = []
    for images in (samples, phantoms):
        tiles = [np.pad(im[0], 2, constant_values=1.0) for im in images]
        rows.append(np.concatenate(tiles, axis=1))
    atomic_write(path, lambda tmp: plt.imsave(tmp, np.concatenate(rows, axis=0), cmap="gray", vmin=0.0, vmax=1.0))


# --------------------------------------------------------------------------------- estimate
def estimate_seconds(tasks, methods, args, ms_per_eval: float = 2.0) -> float:
    """Predicted wall time: per diffusion step one batched network evaluation (three with the
    gradient of DPS) plus ~0.5 ms of solver work; on CT, whose pseudo-inverse and data step are
    conjugate gradients, 100 (ddnm) or 30 (diffpir) CG iterations of ~0.12 ms per step; per run
    ~0.05 s of set-up and metrics (0.15 s for CT, whose system matrix the engine rebuilds);
    baselines ~0.3 ms per iteration."""
    total = 0.0
    for task in tasks:
        ct = task.startswith("ct")
        setup_s = 0.15 if ct else 0.05
        for method in methods:
            if method == "ddrm" and task.startswith(("ct", "mri")):
                continue  # no SVD: skipped
            runs = len(GRIDS[method][1]) * args.n_val + args.n_test
            if method in DIFFUSION:
                cg_iters = {"ddnm": 100, "diffpir": 30}.get(method, 0) if ct else 0
                per_step = (3 if method == "dps" else 1) * ms_per_eval + 0.5 + 0.12 * cg_iters
                total += runs * (setup_s + args.steps * per_step / 1000)
            else:
                total += runs * (setup_s + args.baseline_iters * 0.3 / 1000)
    return total + 5.0  # prior loading, samples grid


# ------------------------------------------------------------------------------------- main
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--prior", default="default", help="default, gaussian, gmm or a prior folder")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--n-test", type=int, default=20)
    p.add_argument("--n-val", type=int, default=5)
    p.add_argument("--samples", type=int, default=4, help="posterior samples per reconstruction")
    p.add_argument("--steps", type=int, default=100, help="diffusion steps per reconstruction")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="bf16", choices=("bf16", "fp32"))
    p.add_argument("--tasks", nargs="+", default=list(TASKS))
    p.add_argument("--solvers", nargs="+", default=[*DIFFUSION, *BASELINES])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--grid-samples", type=int, default=8, help="prior samples in the PNG (0: no PNG)")
    p.add_argument("--baseline-iters", type=int, default=BASELINE_ITERS, help="cg / tv iterations")
    p.add_argument("--time-budget", type=float, default=420.0,
                   help="seconds; tuning grids are cut to fit, 0 = no limit")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--merge", type=Path, nargs="+", metavar="DIR",
                   help="only combine the evaluate.json of these folders (runs of separate tasks) into --out")
    args = p.parse_args(argv)
    if args.merge:
        return args
    for name, chosen, valid in (("--tasks", args.tasks, TASKS), ("--solvers", args.solvers, GRIDS)):
        bad = [c for c in chosen if c not in valid]
        if bad:
            raise InputError(f"{name} {bad[0]!r} is not known; valid are {', '.join(valid)}.")
    if args.grid_samples < 0:
        raise InputError(f"--grid-samples is {args.grid_samples}; it must be 0 or more.")
    for name in ("size", "n_test", "n_val", "samples", "steps", "baseline_iters"):
        if getattr(args, name) < (8 if name == "size" else 1):
            raise InputError(f"--{name.replace('_', '-')} is {getattr(args, name)}; it must be at least "
                             f"{8 if name == 'size' else 1}.")
    return args


def evaluate(args) -> dict:
    from tqdm import tqdm

    t_start = time.monotonic()
    device = resolve_device(args.device)
    shape = (1, args.size, args.size)
    denoiser = load_prior(args.prior, shape, device)
    if args.prior == "default" and default_prior_folder() is None:
        print("warning: the bundled prior is not installed; evaluating its Gaussian fallback.", file=sys.stderr)
    if tuple(denoiser.image_shape) != shape:
        raise InputError(f"The prior {args.prior!r} takes {denoiser.image_shape} images; set --size "
                         f"{denoiser.image_shape[-1]} or use the gaussian prior.")
    args.out.mkdir(parents=True, exist_ok=True)
    # baselines first (cheap), then the diffusion solvers, the slowest (ddnm: a CG pseudo-inverse per
    # step on CT) last, so a time budget cuts what matters least
    order = [m for m in (*BASELINES, "dps", "diffpir", "ddrm", "ddnm") if m in args.solvers]
    estimate = estimate_seconds(args.tasks, order, args)
    # where the report is written says nothing about the measurement (and names a machine's folder)
    settings = {k: v for k, v in vars(args).items() if k not in ("out", "merge")}
    settings.update(device_name=device_name(device), torch=torch.__version__, diffrecon=__version__,
                    prior_card=json.loads(denoiser.card.to_json()), prior_hash=prior_weight_hash(denoiser),
                    grids={m: GRIDS[m][:2] for m in order},
                    estimated_seconds_h100=round(estimate, 1))
    report = {"settings": settings, "status": "running",
              "started": datetime.now(timezone.utc).isoformat(timespec="seconds"), "results": []}
    print(f"Estimated {estimate / 60:.1f} min on an H100 (2 ms per batched evaluation); "
          f"time budget {args.time_budget:g} s.", file=sys.stderr)

    if args.grid_samples:
        grid_phantoms = np.stack([phantom(args.size, TEST_SEEDS[i])[None] for i in range(args.grid_samples)])
        samples = prior_samples(denoiser, args.grid_samples, args.steps, args.seed, device,
                                device.type == "cuda" and args.precision == "bf16")
        save_grid(args.out / "samples_grid.png", samples, grid_phantoms)
    write_report(args.out, report)

    sets = {t: measurements(t, args.size, args.n_val, args.n_test) for t in args.tasks}
    pairs, op_norms = [], {}
    for t in args.tasks:
        probe = build_operator(sets[t][1][0].operator).to(device)
        op_norms[t] = float(probe.norm())
        pairs += [(t, m) for m in order if SOLVERS[m].unmet_need(probe) is None]
    settings["operator_norms"] = op_norms
    budget = Budget(args.time_budget)
    total = sum(len(GRIDS[m][1]) * args.n_val + args.n_test for _, m in pairs)
    status = "complete"
    with tqdm(total=total, unit="run", file=sys.stderr, dynamic_ncols=True) as bar:
        for k, (task, method) in enumerate(pairs):
            if budget.exhausted():
                status = f"stopped by the time budget before {task}/{method}"
                break
            pending = [(m, args.n_test) for _, m in pairs[k:]]
            val, test = sets[task]
            row = evaluate_pair(task, method, val, test, args, denoiser, budget, pending, bar, op_norms[task])
            report["results"].append(_finite(row))
            report["elapsed_seconds"] = time.monotonic() - t_start
            write_report(args.out, report)
    report["status"] = status
    report["elapsed_seconds"] = time.monotonic() - t_start
    report["skipped"] = [f"{t}/{m}: {SOLVERS[m].unmet_need(build_operator(sets[t][1][0].operator))}"
                         for t in args.tasks for m in order if (t, m) not in pairs]
    write_report(args.out, report)
    return report


def merge(folders: Sequence[Path], out: Path) -> dict:
    """One report from the reports of runs over separate tasks (run side by side on one GPU), or
    of re-runs: a (task, method) measured again in a later folder replaces the earlier row in
    place. Results in task order, the settings of the first with the union of tasks and solvers,
    the longest elapsed time; status complete only when every (task, solver) pair has a row or
    is not applicable, otherwise the missing pairs are named."""
    reports = []
    for folder in folders:
        path = folder / "evaluate.json"
        try:
            reports.append(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError) as err:
            raise InputError(f"{path} cannot be read as an evaluation report ({err}).") from None
    hashes = {r["settings"].get("prior_hash") for r in reports}
    if len(hashes) > 1:
        raise InputError(f"The reports in {', '.join(map(str, folders))} evaluated different prior weights; "
                         "merge only runs of one prior.")
    settings = dict(reports[0]["settings"])
    tasks = [t for t in TASKS if any(t in r["settings"]["tasks"] for r in reports)]
    solvers = [m for m in GRIDS if any(m in r["settings"].get("solvers", ()) for r in reports)]
    settings["tasks"], settings["solvers"] = tasks, solvers
    settings["operator_norms"] = {k: v for r in reports for k, v in r["settings"].get("operator_norms", {}).items()}
    settings["merged_from"] = len(reports)
    settings.pop("out", None), settings.pop("merge", None)
    settings["device_names"] = sorted({r["settings"].get("device_name", "?") for r in reports})
    rows: dict[tuple[str, str], dict] = {}
    for r in reports:
        for row in r["results"]:
            rows[(row["task"], row["method"])] = row  # dicts keep the first position of a key
    results = sorted(rows.values(), key=lambda row: tasks.index(row["task"]))
    skipped = list(dict.fromkeys(s for r in reports for s in r.get("skipped", [])))
    not_applicable = {s.split(":")[0] for s in skipped}
    missing = []
    for t in tasks:
        for m in solvers:
            if (t, m) in rows or f"{t}/{m}" in not_applicable:
                continue
            # a run cut short never wrote its list of inapplicable pairs: ask the solver
            op = build_operator(simulate(t, settings["size"], VALIDATION_SEEDS[0], VALIDATION_SEEDS[0]).operator)
            need = SOLVERS[m].unmet_need(op) if m in SOLVERS else None
            if need:
                skipped.append(f"{t}/{m}: {need}")
            else:
                missing.append(f"{t}/{m}")
    report = {"settings": settings, "status": f"missing {', '.join(missing)}" if missing else "complete",
              "started": min(r["started"] for r in reports), "results": results,
              "elapsed_seconds": max(r.get("elapsed_seconds", 0.0) for r in reports),
              "skipped": skipped}
    out.mkdir(parents=True, exist_ok=True)
    write_report(out, report)
    for folder in folders:
        grid = folder / "samples_grid.png"
        if grid.is_file() and not (out / "samples_grid.png").exists():
            data = grid.read_bytes()
            atomic_write(out / "samples_grid.png", lambda tmp: tmp.write_bytes(data))
    return report


def main(argv=None) -> int:
    try:
        args = parse_args(argv)
        report = merge(args.merge, args.out) if args.merge else evaluate(args)
    except DiffreconError as err:
        print(f"evaluate_prior: {err}", file=sys.stderr)
        return 2
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
