"""Real-image evaluation: the diffusion solvers against fairly and oracle-tuned baselines on
real images that shipped inside public Python packages and never served as training data.

    python benchmarks/real_images.py [--images ct mr cell camera] [--tasks ...] [--steps 20]
        [--samples 3] [--warm-steps 10] [--methods ...] --out DIR

writes DIR/real_images.json (settings, device, every number, appended as each run finishes) and
DIR/real_images.md (the README table); ``--figure PNG`` draws truth | TV | mean | std | sample.

Images (all 128 x 128, scaled to [0, 1] by their own 0.5 / 99.5 % percentiles, which defines
the ground truth; the measurement files state no value range):

* ``ct``: pydicom's ``CT_small.dcm`` (a 128 x 128 CT slice), HU clipped to [-1000, 1000].
* ``mr``: pydicom's ``MR_small.dcm`` (64 x 64 MR slice), resampled to 128 x 128.
* ``cell``: scikit-image's ``cell`` (phase-contrast microscopy), central 512 x 512 crop resampled.
* ``camera``: scikit-image's ``camera`` (a natural photograph), resampled.

Tasks use the demo conventions of :mod:`diffrecon.demo` (units, pixel size, relative noise), plus
x2 super-resolution. Baselines: TV and CG with the weight chosen by the discrepancy principle
(:mod:`diffrecon.weights`, no ground truth) and oracle-tuned (best PSNR over the discrepancy
trials and a grid: the upper bound a user cannot reach). Coverage is the fraction of pixels in
mean +- t_{K-1} sqrt(1 + 1/K) s over the K samples (90 %).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from diffrecon import __version__, engine  # noqa: E402
from diffrecon.errors import RunError  # noqa: E402
from diffrecon.io.atomic import atomic_write  # noqa: E402
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
def t_coverage(samples: np.ndarray, gt: np.ndarray, level: float = 0.9) -> float | None:
    """Fraction of pixels in mean +- t_{K-1} sqrt(1 + 1/K) s (s: sample std, K samples)."""
    from scipy.stats import t as student
    k = samples.shape[0]
    if k < 2:
        return None
    mean, s = samples.mean(0), samples.std(0, ddof=1)
    half = student.ppf(0.5 + level / 2, k - 1) * math.sqrt(1 + 1 / k) * s
    return float(np.mean(np.abs(gt - mean) <= half))


def run(m: Measurement, solver: str, params: dict, steps: int, samples: int, warm: str = "none",
        denoiser=None, prior_fit: bool = True) -> dict:
    cfg = engine.RunConfig(solver=solver, params=params, steps=steps, samples=samples, seed=0,
                           keep_samples=samples, preview_interval=1e9, warm_start=warm, prior_fit=prior_fit)
    t0 = time.perf_counter()
    try:
        result = next(e.result for e in engine.run(m, cfg, denoiser=denoiser) if isinstance(e, engine.Finished))
    except RunError as err:
        return {"error": str(err)}
    out = {k: result.metrics.get(k) for k in ("psnr", "ssim", "residual_ratio", "prior_fit", "prior_fit_after",
                                              "prior_fit_warning")}
    out["seconds"] = time.perf_counter() - t0
    out["params"] = dict(params)
    if result.samples is not None and len(result.samples) >= 2:
        out["coverage90_t"] = t_coverage(result.samples, m.ground_truth)
    out["warm"] = {k: v for k, v in result.provenance.items() if k.startswith("warm")}
    out["_result"] = result
    return out


def tune_baseline(m: Measurement, solver: str) -> tuple[dict, dict]:
    """(discrepancy-principle run, oracle run) of a baseline."""
    cfg = engine.RunConfig(solver=solver, steps=20, samples=1)
    t0 = time.perf_counter()
    choice = choose_weight(m, cfg, iterations=5)
    choose_seconds = time.perf_counter() - t0
    fair = run(m, solver, {choice.param: choice.value}, 20, 1, prior_fit=False)
    fair["choose_seconds"] = choose_seconds
    fair["discrepancy"] = choice.provenance()
    # oracle: the best PSNR over the bisection's trials (they span the bracket) and two values
    # beside the best of them
    scored = [(mt.get("psnr", -math.inf), v) for (v, _), mt in zip(choice.tried, choice.trial_metrics)]
    psnr_best, v_best = max(scored)
    best = {"psnr": psnr_best, "ssim": choice.trial_metrics[[v for _, v in scored].index(v_best)].get("ssim"),
            "params": {choice.param: v_best}}
    for v in (v_best / 1.5, v_best * 1.5):
        r = run(m, solver, {choice.param: v}, 20, 1, prior_fit=False)
        if r.get("psnr") is not None and r["psnr"] > best["psnr"]:
            best = r
    return fair, best


# ------------------------------------------------------------------------------------ report
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


def markdown(rows: list[dict]) -> str:
    head = ("| image | task | TV fair | TV oracle | CG fair | CG oracle | DiffPIR | cov90 | DiffPIR warm | cov90 | "
            "sigma_start | prior fit before / after | warn |\n" + "|" + "---|" * 13 + "\n")
    lines = []
    for r in rows:
        def p(key):
            v = r.get(key, {}) or {}
            return f"{v['psnr']:.2f} / {v['ssim']:.3f}" if v.get("psnr") is not None else "-"

        def c(key):
            v = (r.get(key, {}) or {}).get("coverage90_t")
            return f"{v:.2f}" if v is not None else "-"

        cold, warm = r.get("diffpir", {}) or {}, r.get("diffpir_warm", {}) or {}
        fit = f"{cold.get('prior_fit', float('nan')):.2f} / {cold.get('prior_fit_after', float('nan')):.2f}"
        lines.append(f"| {r['image']} | {r['task']} | {p('tv_fair')} | {p('tv_oracle')} | {p('cg_fair')} | "
                     f"{p('cg_oracle')} | {p('diffpir')} | {c('diffpir')} | {p('diffpir_warm')} | {c('diffpir_warm')} | "
                     f"{warm.get('warm', {}).get('warm_sigma_start_physical', float('nan')):.3g} | {fit} | "
                     f"{'yes' if cold.get('prior_fit_warning') else 'no'} |")
    return head + "\n".join(lines) + "\n"


def figure(path: Path, truth, tv, mean, std, sample, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 5, figsize=(16, 3.4))
    lo, hi = float(truth.min()), float(truth.max())
    for ax, img, name in zip(axes, (truth, tv, mean, std, sample), ("truth", "TV (discrepancy)", "DiffPIR mean",
                                                                    "DiffPIR std", "a sample")):
        im = ax.imshow(img, cmap="magma" if name.endswith("std") else "gray",
                       **({} if name.endswith("std") else {"vmin": lo, "vmax": hi}))
        ax.set_title(name)
        ax.axis("off")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
    fig.suptitle(title)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=80))
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", nargs="+", default=[*IMAGES, "phantom"])
    ap.add_argument("--tasks", nargs="+", default=list(TASKS))
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warm-steps", type=int, default=10)
    ap.add_argument("--samples", type=int, default=3)
    ap.add_argument("--order", nargs="*", default=[], help="image:task pairs to run first")
    ap.add_argument("--figure", default="ct:ct", help="image:task drawn as the sample figure")
    ap.add_argument("--export-npz", type=Path, help="write the real images (128 and 256) to this npz and stop")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    if args.export_npz:
        np.savez_compressed(args.export_npz, **{f"{n}_{s}": load_image(n, s) for n in IMAGES for s in (SIZE, 256)})
        return 0
    if args.out is None:
        ap.error("--out is required")
    torch.manual_seed(0)
    args.out.mkdir(parents=True, exist_ok=True)
    device = resolve_device("auto")
    report = {"settings": {k: v for k, v in vars(args).items() if k != "out"}, "device": device_name(device),
              "software_version": __version__, "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "rows": []}
    order = [tuple(p.split(":")) for p in args.order]
    for image, task in problem_list(args.images, args.tasks, order):
        img = phantom_image() if image == "phantom" else load_image(image)
        m = simulate(task, img, 0, image)
        row = {"image": image, "task": task}
        for solver in ("tv", "cg"):
            fair, oracle = tune_baseline(m, solver)
            row[f"{solver}_fair"], row[f"{solver}_oracle"] = summarize(fair), summarize(oracle)
            if solver == "tv":
                tv_mean = fair["_result"].mean[0]
        cold = run(m, "diffpir", {}, args.steps, args.samples)
        warm = run(m, "diffpir", {}, args.warm_steps, args.samples, warm="tv")
        row["diffpir"], row["diffpir_warm"] = summarize(cold), summarize(warm)
        report["rows"].append(row)
        print(json.dumps({k: (v if not isinstance(v, dict) else {kk: vv for kk, vv in v.items()
                                                                   if kk in ("psnr", "ssim", "coverage90_t", "seconds",
                                                                             "prior_fit", "prior_fit_after")})
                          for k, v in row.items()}, default=float), flush=True)
        text = json.dumps(report, indent=1, default=float)
        atomic_write(args.out / "real_images.json", lambda tmp: tmp.write_text(text))
        md = markdown(report["rows"])
        atomic_write(args.out / "real_images.md", lambda tmp: tmp.write_text(md))
        if f"{image}:{task}" == args.figure and "_result" in cold:
            r = cold["_result"]
            figure(args.out / f"real_{image}_{task}.png", m.ground_truth[0], tv_mean, r.mean[0], r.std[0],
                   r.samples[0][0], f"{TASKS[task].title} of the {image} image ({m.units})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
