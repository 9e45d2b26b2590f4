"""Real-image evaluation: diffusion solvers against fairly and oracle-tuned baselines on real
images that shipped inside public Python packages and never served as training data.

    python benchmarks/real_images.py --out DIR [--images ct mr cell camera phantom] [--tasks ...]
        [--methods tv cg default default_noise diffpir dps_warm ...] [--prior NAME|FOLDER]
        [--steps 50] [--warm-steps 10] [--samples 4] [--size 128] [--device auto]
        [--figures ct:ct cell:inpaint ...] [--order image:task ...] [--part K/N]
    python benchmarks/real_images.py --merge A.json B.json ... --out DIR
    python benchmarks/real_images.py --export-npz images.npz

writes DIR/real_images.json (settings, device, every number; rewritten atomically after each
run, and read back on a restart with the same ``--prior`` so finished runs are skipped),
DIR/real_images.md (the tables, :mod:`real_images_report`) and DIR/real_IMAGE_TASK.png for each
``--figures`` pair (truth | TV | default mean | default std | two default samples).
``--part K/N`` runs only the image x task pairs whose index is K modulo N (N processes sharing
one GPU, each with its own ``--out``); ``--merge`` unites their JSON files and redraws the tables.

Methods (``--methods``):

* ``tv``, ``cg``: weight by the discrepancy principle (:mod:`diffrecon.weights`, no ground truth;
  ``tv_fair``) and oracle-tuned (best PSNR over the discrepancy trials and two values beside the
  best: the upper bound a user cannot reach; ``tv_oracle``).
* ``default``: the front ends' default configuration (the ``fast`` quality preset's solver,
  steps, parameters and warm start, :mod:`diffrecon.engine.presets`); ``default_noise``: the same
  from noise (``warm_start="none"``).
* any solver of the registry (``diffpir``, ``dps``, ``ddrm``, ...) at its registry defaults with
  ``--steps`` steps from noise; ``NAME_warm``: warm-started, ``--warm-steps`` steps. A solver that
  does not apply to a task (``ddrm`` needs an SVD) is recorded as ``{"error": ...}``.

The default list is tv, cg, default, default_noise and every registry solver that uses the prior
and whose spread at its defaults is a posterior or seed spread (:mod:`diffrecon.solvers.labels`),
less ``reference`` (an exact sampler that needs thousands of steps) and ``cm`` (made for a
distilled consistency model): point estimates (pnp_admm), prior samplers (ddpm) and the
classical baselines are left out. Every diffusion method uses the prior ``--prior`` (default:
the bundled one), the public ``RunConfig.prior`` path of ``diffrecon reconstruct --prior``.

Images (``--size``, default 128, scaled to [0, 1] by their own 0.5 / 99.5 % percentiles, which
defines the ground truth; the measurement files state no value range):

* ``ct``: pydicom's ``CT_small.dcm`` (a 128 x 128 CT slice), HU clipped to [-1000, 1000].
* ``mr``: pydicom's ``MR_small.dcm`` (64 x 64 MR slice), resampled to 128 x 128.
* ``cell``: scikit-image's ``cell`` (phase-contrast microscopy), central 512 x 512 crop resampled.
* ``camera``: scikit-image's ``camera`` (a natural photograph), resampled.
* ``phantom``: a held-out test phantom (``TEST_SEEDS[0]``) of the procedural family (the control).

Tasks use the demo conventions of :mod:`diffrecon.demo` (units, pixel size, relative noise), plus
x2 super-resolution. Per run: PSNR (dB, peak = the truth's range) and SSIM of the sample mean,
seconds (the whole engine run, loading the prior as ``diffrecon reconstruct`` does included), ``coverage90_t`` (the fraction of pixels in mean +- t_{K-1} sqrt(1 + 1/K) s over the K
samples, s the sample std: 90 % if the samples were exact posterior draws), ``ratio_quantiles``
(the 0..100 % percentiles of |truth - mean| / (t_{K-1} sqrt(1 + 1/K) s), from which the coverage
after a std calibration fitted elsewhere follows), the prior-fit indicator before and after and
the warm start's provenance. The std is the raw sample std (``use_calibration=False``).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import real_images_report as report_md  # noqa: E402

from diffrecon import __version__, engine  # noqa: E402
from diffrecon.engine import presets  # noqa: E402
from diffrecon.errors import DiffreconError, InputError  # noqa: E402
from diffrecon.measurement import Measurement  # noqa: E402
from diffrecon.operators import (MRI, Blur, Inpaint, ParallelBeamCT, SuperResolution, cartesian_mask,  # noqa: E402
                                 gaussian_kernel, limited_angle_angles, random_mask, sparse_view_angles)
from diffrecon.runtime import device_name, resolve_device  # noqa: E402
from diffrecon.weights import choose_weight  # noqa: E402

SIZE = 128
CT_PIXEL_CM = 0.1


# ------------------------------------------------------------------------------------ images
def _unit(a: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(a, [0.5, 99.5])
    return np.clip((a - lo) / max(hi - lo, 1e-12), 0.0, 1.0).astype(np.float32)


def _resize(a: np.ndarray, size: int) -> np.ndarray:
    from skimage.transform import resize
    return resize(a.astype(np.float64), (size, size), order=1, anti_aliasing=a.shape[0] > size, mode="edge")


def load_image(name: str, size: int = SIZE) -> np.ndarray:
    """A real image as float32 ``(size, size)`` in [0, 1]; offline, from installed packages.

    On a machine without pydicom and scikit-image, ``REAL_IMAGES_NPZ`` names an npz written by
    ``--export-npz`` on one that has them (keys ``NAME_SIZE``).
    """
    cached = os.environ.get("REAL_IMAGES_NPZ")
    if cached:
        with np.load(cached) as d:
            if f"{name}_{size}" in d:
                return d[f"{name}_{size}"].astype(np.float32)
    if name in ("ct", "mr"):
        import pydicom
        from pydicom.data import get_testdata_file
        ds = pydicom.dcmread(get_testdata_file("CT_small.dcm" if name == "ct" else "MR_small.dcm"))
        a = ds.pixel_array.astype(np.float64)
        if name == "ct":
            a = np.clip(a * float(ds.RescaleSlope) + float(ds.RescaleIntercept), -1000, 1000)
    elif name == "cell":
        import skimage.data
        a = skimage.data.cell().astype(np.float64)
        h, w = a.shape
        a = a[(h - 512) // 2:(h + 512) // 2, (w - 512) // 2:(w + 512) // 2]
    elif name == "camera":
        import skimage.data
        a = skimage.data.camera().astype(np.float64)
    else:
        raise ValueError(f"unknown image {name!r}")
    return _unit(_resize(a, size) if a.shape != (size, size) else a)


IMAGES = ("ct", "mr", "cell", "camera")


# ------------------------------------------------------------------------------------- tasks
@dataclasses.dataclass(frozen=True)
class Task:
    title: str
    build: object  # (image_shape, seed) -> operator
    scale: float  # physical units per image unit
    units: str
    pixel_size: float
    noise_ref: str  # max | rms | range
    noise_rel: float


TASKS: dict[str, Task] = {
    "ct": Task("Sparse-view CT, 30 views", lambda s, k: ParallelBeamCT(s, sparse_view_angles(30), pixel_size=CT_PIXEL_CM),
               0.4, "1/cm", CT_PIXEL_CM, "max", 0.01),
    "ct_limited": Task("Limited-angle CT, 90 deg", lambda s, k: ParallelBeamCT(s, limited_angle_angles(90.0, 60),
                                                                               pixel_size=CT_PIXEL_CM),
                       0.4, "1/cm", CT_PIXEL_CM, "max", 0.01),
    "mri_x4": Task("MRI x4", lambda s, k: MRI(s, cartesian_mask(s[-2:], acceleration=4.0, seed=k)), 1.0, "a.u.", 1.0,
                   "rms", 0.02),
    "mri_x8": Task("MRI x8", lambda s, k: MRI(s, cartesian_mask(s[-2:], acceleration=8.0, seed=k)), 1.0, "a.u.", 1.0,
                   "rms", 0.02),
    "inpaint": Task("Inpainting, 70 % missing", lambda s, k: Inpaint(s, random_mask(s, 0.7, seed=k)), 1.0, "a.u.",
                    1.0, "range", 0.01),
    "deblur": Task("Deblurring, std 2 px", lambda s, k: Blur(s, gaussian_kernel(13, 2.0)), 1.0, "a.u.", 1.0,
                   "range", 0.01),
    "sr_x2": Task("Super-resolution x2", lambda s, k: SuperResolution(s, factor=2), 1.0, "a.u.", 1.0, "range", 0.01),
    "sr_x4": Task("Super-resolution x4", lambda s, k: SuperResolution(s, factor=4), 1.0, "a.u.", 1.0, "range", 0.01),
}


def simulate(task: str, image: np.ndarray, seed: int = 0, name: str = "") -> Measurement:
    """``y = A x + n`` of ``image`` (in [0, 1]) under ``task`` with the demo's units and noise."""
    t = TASKS[task]
    gt = (image * t.scale).astype(np.float32)[None]
    op = t.build(gt.shape, seed)
    with torch.no_grad():
        clean = op.A(torch.from_numpy(gt)[None])
        if t.noise_ref == "range":
            noise = t.noise_rel * t.scale
        elif t.noise_ref == "max":
            noise = t.noise_rel * float(clean.abs().max())
        else:
            mask = op.measured()
            mag = clean.abs()[0]
            mag = mag[mask.expand_as(mag)] if mask is not None else mag
            noise = t.noise_rel * float(mag.square().mean().sqrt())
        op.noise_sigma = noise
        y = clean + op.noise_like(clean, torch.Generator().manual_seed(seed))
    y = y[0].numpy().astype(np.complex64 if op.is_complex else np.float32)
    return Measurement(y=y, operator=op.to_spec(), noise_sigma=float(noise), units=t.units, value_range=None,
                       ground_truth=gt, pixel_size=t.pixel_size, pixel_unit="cm" if t.scale != 1.0 else "px",
                       title=f"{t.title} of {name}")


# -------------------------------------------------------------------------------------- runs
def run(m: Measurement, solver: str, params: dict, steps: int, samples: int, warm: str = "none",
        denoiser=None, prior_fit: bool = True, prior: str = "default", device: str = "auto") -> dict:
    """One engine run's numbers (``_result`` holds the Result), or ``{"error": sentence}`` where
    the engine refuses the setting or fails; an unexpected exception also sets ``unexpected``
    (retried on a restart) and prints its traceback, and the evaluation goes on."""
    cfg = engine.RunConfig(solver=solver, params=params, steps=steps, samples=samples, seed=0, prior=prior,
                           device=device, keep_samples=samples, preview_interval=1e9, warm_start=warm,
                           prior_fit=prior_fit, use_calibration=False)
    t0 = time.perf_counter()
    try:
        result = next(e.result for e in engine.run(m, cfg, denoiser=denoiser) if isinstance(e, engine.Finished))
    except DiffreconError as err:
        return {"error": str(err), "seconds": time.perf_counter() - t0}
    except Exception as err:  # noqa: BLE001 - one failing solver must not end a long evaluation
        traceback.print_exc()
        return {"error": f"{type(err).__name__}: {err}", "unexpected": True, "seconds": time.perf_counter() - t0}
    out = {k: result.metrics.get(k) for k in ("psnr", "ssim", "residual_ratio", "prior_fit", "prior_fit_after",
                                              "prior_fit_warning")}
    out["seconds"] = time.perf_counter() - t0
    out["solver"], out["steps"], out["params"] = solver, steps, dict(params)
    if result.samples is not None and len(result.samples) >= 2:
        out["coverage90_t"] = report_md.t_coverage(result.samples, m.ground_truth)
        out["ratio_quantiles"] = report_md.ratio_quantiles(result.samples, m.ground_truth)
    out["warm"] = {k: v for k, v in result.provenance.items() if k.startswith("warm")}
    out["_result"] = result
    return out


def tune_baseline(m: Measurement, solver: str, device: str = "auto") -> tuple[dict, dict]:
    """(discrepancy-principle run, oracle run) of a baseline."""
    cfg = engine.RunConfig(solver=solver, steps=20, samples=1, device=device)
    t0 = time.perf_counter()
    choice = choose_weight(m, cfg, iterations=5)
    choose_seconds = time.perf_counter() - t0
    fair = run(m, solver, {choice.param: choice.value}, 20, 1, prior_fit=False, device=device)
    fair["choose_seconds"] = choose_seconds
    fair["discrepancy"] = choice.provenance()
    # oracle: the best PSNR over the bisection's trials (they span the bracket) and two values
    # beside the best of them
    scored = [(mt.get("psnr", -math.inf), v) for (v, _), mt in zip(choice.tried, choice.trial_metrics)]
    psnr_best, v_best = max(scored)
    best = {"psnr": psnr_best, "ssim": choice.trial_metrics[[v for _, v in scored].index(v_best)].get("ssim"),
            "params": {choice.param: v_best}}
    for v in (v_best / 1.5, v_best * 1.5):
        r = run(m, solver, {choice.param: v}, 20, 1, prior_fit=False, device=device)
        if r.get("psnr") is not None and r["psnr"] > best["psnr"]:
            best = r
    return fair, best


# ----------------------------------------------------------------------------------- methods
BASELINES = report_md.BASELINES
LEFT_OUT = ("reference", "cm")  # see the module docstring


def default_methods() -> list[str]:
    """tv, cg, default, default_noise and the registry's diffusion solvers (module docstring)."""
    from diffrecon.solvers import SOLVERS
    from diffrecon.solvers.labels import POSTERIOR, SEED, rule_of
    diffusion = [n for n, info in SOLVERS.items()
                 if info.uses_prior and n not in LEFT_OUT and rule_of(info).design in (POSTERIOR, SEED)]
    return [*BASELINES, "default", "default_noise", *diffusion]


def method_keys(method: str) -> tuple[str, ...]:
    """The row keys a method writes."""
    return (f"{method}_fair", f"{method}_oracle") if method in BASELINES else (method,)


def method_setting(method: str, steps: int, warm_steps: int) -> tuple[str, dict, int, str]:
    """``(solver, params, steps, warm_start)`` of a diffusion method name (InputError if unknown):
    ``default`` is the front ends' default configuration (the preset's solver, steps, params and
    warm start), ``default_noise`` the same from noise; ``NAME`` takes ``steps`` from noise and
    ``NAME_warm`` ``warm_steps`` warm-started from TV."""
    from diffrecon.solvers import SOLVERS
    if method in ("default", "default_noise"):
        p = presets.preset(presets.FRONT_END_DEFAULT)
        return p["solver"], dict(p["params"]), p["steps"], p["warm_start"] if method == "default" else "none"
    base, warm = (method[:-5], "tv") if method.endswith("_warm") else (method, "none")
    if base in SOLVERS and SOLVERS[base].uses_prior:
        return base, {}, (warm_steps if warm == "tv" else steps), warm
    valid = ", ".join(n for n, info in SOLVERS.items() if info.uses_prior)
    raise InputError(f"--methods {method!r} is not a method; valid are tv, cg, default, default_noise and the "
                     f"diffusion solvers ({valid}), each of those optionally with _warm.")


def finished(row: dict | None, method: str) -> bool:
    """True where every key of ``method`` is in ``row`` and none failed unexpectedly."""
    return row is not None and all(k in row and not row[k].get("unexpected") for k in method_keys(method))


# ------------------------------------------------------------------------------------ driver
def phantom_image(size: int = SIZE) -> np.ndarray:
    from diffrecon.phantoms import TEST_SEEDS, phantom
    return phantom(size, TEST_SEEDS[0])


def problem_list(images, tasks, order=None):
    pairs = [(i, t) for i in images for t in tasks]
    if order:
        first = [p for p in order if p in pairs]
        pairs = first + [p for p in pairs if p not in first]
    return pairs


def summarize(row: dict) -> dict:
    return {k: v for k, v in row.items() if not k.startswith("_")}


def run_method(m: Measurement, method: str, args) -> dict:
    """The row entries of ``method`` on ``m`` (with ``_result`` kept for the figures)."""
    if method in BASELINES:
        fair, oracle = tune_baseline(m, method, args.device)
        return {f"{method}_fair": fair, f"{method}_oracle": oracle}
    solver, params, steps, warm = method_setting(method, args.steps, args.warm_steps)  # checked in main
    return {method: run(m, solver, params, steps, args.samples, warm=warm, prior=args.prior, device=args.device)}


def evaluate(args) -> dict:
    """Run every unfinished (image, task, method) of this part, saving after each run."""
    args.out.mkdir(parents=True, exist_ok=True)
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                if k not in ("out", "merge", "export_npz")}
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    report = report_md.load(args.out / "real_images.json", args.prior) or {"settings": {}, "rows": [], "started": now}
    # each entry records its own solver, steps and params; the settings are this start's, the methods all so far
    settings["methods"] = list(dict.fromkeys([*report["settings"].get("methods", []), *args.methods]))
    report.update(settings=settings, device=device_name(resolve_device(args.device)), software_version=__version__,
                  resumed=report.get("resumed", []) + ([now] if report["rows"] else []))
    rows = {(r["image"], r["task"]): r for r in report["rows"]}
    order = [tuple(p.split(":")) for p in args.order]
    figures = {tuple(p.split(":")) for p in args.figures}
    k, n = (int(v) for v in args.part.split("/"))
    for index, (image, task) in enumerate(problem_list(args.images, args.tasks, order)):
        if index % n != k:
            continue
        shown = args.figure_method
        png = args.out / f"real_{image}_{task}{'' if shown == 'default' else '_' + shown}.png"
        draw = (image, task) in figures and not png.exists()
        row = rows.get((image, task))
        todo = [mt for mt in args.methods if not finished(row, mt) or (draw and mt in ("tv", shown))]
        if not todo:
            continue
        img = phantom_image(args.size) if image == "phantom" else load_image(image, args.size)
        m = simulate(task, img, 0, image)
        if row is None:
            row = rows[(image, task)] = {"image": image, "task": task}
            report["rows"].append(row)
        keep = {}
        for method in todo:
            entries = run_method(m, method, args)
            if draw and method in ("tv", shown):
                r = entries["tv_fair" if method == "tv" else method].get("_result")
                if r is not None:
                    keep[method] = (r.mean[0].copy(), r.std[0].copy(),
                                    r.samples[:2, 0].copy() if r.samples is not None else None, r.spread)
                r = None
            row.update({key: summarize(v) for key, v in entries.items()})
            del entries
            print(json.dumps({"image": image, "task": task, "method": method,
                              **{key: {q: row[key].get(q) for q in ("psnr", "ssim", "coverage90_t", "seconds", "error")}
                                 for key in method_keys(method)}}, default=float), flush=True)
            report_md.save(args.out, report)
        if draw and len(keep) == 2:
            tv_mean = keep["tv"][0]
            mean, std, samples, spread = keep[shown]
            report_md.figure(png, m.ground_truth[0], tv_mean, mean, std, samples,
                             f"{TASKS[task].title} of the {image} image ({m.units})", m.units,
                             label=shown.replace("default_noise", "default from noise"), spread=spread)
        del keep
    report_md.save(args.out, report)
    return report


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", nargs="+", default=[*IMAGES, "phantom"])
    ap.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    ap.add_argument("--methods", nargs="+", default=None, help="default: tv cg default default_noise and the "
                    "registry's diffusion solvers (module docstring); NAME_warm: warm-started")
    ap.add_argument("--prior", default="default", help="default (bundled), gaussian, or a prior folder")
    ap.add_argument("--steps", type=int, default=50, help="steps of each NAME method (not of default)")
    ap.add_argument("--warm-steps", type=int, default=10, help="steps of each NAME_warm method")
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--size", type=int, default=SIZE, help="image side in pixels")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--order", nargs="*", default=[], help="image:task pairs to run first")
    ap.add_argument("--figures", nargs="*", default=["ct:ct", "cell:inpaint", "cell:ct", "mr:mri_x4", "camera:sr_x4"],
                    help="image:task pairs drawn as DIR/real_IMAGE_TASK.png")
    ap.add_argument("--figure-method", default="default", help="the diffusion method the figures show "
                                                               "(default; it and tv must be among --methods)")
    ap.add_argument("--part", default="0/1", help="K/N: run only the pairs whose index is K modulo N "
                    "(give every part the same --images, --tasks and --order)")
    ap.add_argument("--merge", nargs="+", type=Path, help="result files to unite into --out (runs nothing)")
    ap.add_argument("--export-npz", type=Path, help="write the real images (128 and 256) to this npz and stop")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    if args.export_npz:
        np.savez_compressed(args.export_npz, **{f"{n}_{s}": load_image(n, s) for n in IMAGES for s in (SIZE, 256)})
        return 0
    if args.out is None:
        ap.error("--out is required")
    if args.merge:
        report_md.merge(args.merge, args.out)
        return 0
    try:
        k, n = (int(v) for v in args.part.split("/"))
        assert 0 <= k < n
    except (ValueError, AssertionError):
        ap.error(f"--part {args.part!r}: give K/N with 0 <= K < N, e.g. 0/2")
    for pair in [*args.order, *args.figures]:
        if pair.count(":") != 1:
            ap.error(f"{pair!r}: give image:task pairs, e.g. ct:ct")
    args.methods = args.methods or default_methods()
    for method in args.methods:
        if method not in BASELINES:
            try:
                method_setting(method, args.steps, args.warm_steps)
            except InputError as err:
                ap.error(str(err))
    torch.manual_seed(0)
    evaluate(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
