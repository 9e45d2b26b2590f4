"""Compare diffusion priors with one solver on real images and on test phantoms.

    python benchmarks/compare_priors.py --priors default NEW_FOLDER --labels old new \
        [--tasks ct mri_x4 inpaint] [--n-phantoms 10] [--real real.npz] [--device auto] --out DIR
    python benchmarks/compare_priors.py --prepare-real real.npz        # the real images, once
    python benchmarks/compare_priors.py --merge DIR1/compare.json DIR2/compare.json --out DIR
    python benchmarks/compare_priors.py --real real.npz --figure DIR1/recon_old.npz DIR2/recon_new.npz --out FIG.png

Every reconstruction is one :func:`diffrecon.engine.run` with the engine's defaults (DiffPIR,
50 steps, 4 samples, seed 0, bf16 on a GPU): no parameter is tuned for either prior. The real
images are files that ship with installed packages and are read offline: the CT and MR test
slices of pydicom (``CT_small.dcm``, ``examples_overlay.dcm``) and scikit-image's ``camera``,
``cell`` (phase-contrast microscopy), ``coins``, ``microaneurysms`` (retinal microscopy),
``hubble_deep_field`` (point-like spots on dark ground) and ``retina``. Each is converted to
luminance, centre-cropped to a square, resized (antialiased) to 128 x 128 and mapped from its
0.1/99.9 percentiles to [0, 1]. None of them is in any training set of diffrecon. The
measurement of image ``i`` under a task follows :func:`diffrecon.demo.make_demo` exactly (same
operator, scale, units and relative noise; the mask and the noise seeded by ``i``), with the
image in place of the phantom. Phantoms are ``TEST_SEEDS[0..n)``, i.e. ``make_demo(kind, 128, i)``.

A size check (``--sizes``) adds, per prior, the PSNR of its one-step denoiser
``x0_hat = D(x + sigma n, sigma)`` on the large real images resized to each size (in the prior's
[-1, 1] units, sigma 0.2), which shows whether a network keeps working away from 128 x 128.

Writes DIR/compare.json (every number), DIR/compare.md (tables) and DIR/recon_<label>.npz (the
posterior means, float16, for figures).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from diffrecon import demo, engine  # noqa: E402
from diffrecon.measurement import Measurement  # noqa: E402
from diffrecon.priors import load_prior  # noqa: E402
from diffrecon.runtime import device_name, resolve_device  # noqa: E402

TASKS = {"ct": ("ct", None), "mri_x4": ("mri", 4.0), "inpaint": ("inpaint", None), "deblur": ("deblur", None),
         "sr": ("sr", None)}
SIZE = 128
LARGE = ("camera", "retina", "hubble", "microaneurysms")  # native size >= 512


def _square(a: np.ndarray, size: int) -> np.ndarray:
    a = np.asarray(a, np.float32)
    if a.ndim == 3:
        a = a[..., :3] @ np.array([0.299, 0.587, 0.114], np.float32)
    h, w = a.shape
    m = min(h, w)
    a = a[(h - m) // 2:(h - m) // 2 + m, (w - m) // 2:(w - m) // 2 + m]
    t = F.interpolate(torch.from_numpy(np.ascontiguousarray(a))[None, None], size=(size, size), mode="bilinear",
                      antialias=True, align_corners=False)[0, 0].numpy()
    lo, hi = np.percentile(t, (0.1, 99.9))
    return np.clip((t - lo) / (hi - lo), 0, 1).astype(np.float32)


def prepare_real(path: Path) -> None:
    """Read the real images from pydicom's and scikit-image's bundled files into one npz."""
    import os

    import pydicom
    import skimage
    import skimage.data as sd
    import skimage.io as io
    from pydicom.data import get_testdata_file

    d = os.path.dirname(skimage.data.__file__)
    raw = {"ct_small": pydicom.dcmread(get_testdata_file("CT_small.dcm")).pixel_array,
           "mr_abdomen": pydicom.dcmread(get_testdata_file("examples_overlay.dcm")).pixel_array,
           "camera": sd.camera(), "cell": sd.cell(), "coins": sd.coins(),
           "microaneurysms": io.imread(f"{d}/microaneurysms.png"), "hubble": io.imread(f"{d}/hubble_deep_field.jpg"),
           "retina": io.imread(f"{d}/retina.jpg")}
    arrays = {f"{k}_{SIZE}": _square(v, SIZE) for k, v in raw.items()}
    for k in LARGE:
        for s in (256, 512):
            arrays[f"{k}_{s}"] = _square(raw[k], s)
    np.savez_compressed(path, **arrays)
    print(f"wrote {path}: {', '.join(raw)}")


def simulate(kind: str, gt01: np.ndarray, index: int, acceleration: float | None) -> Measurement:
    """make_demo's measurement with ``gt01`` (in [0, 1]) in place of the phantom."""
    options = {"acceleration": acceleration} if acceleration else {}
    m = demo.demo_measurement(kind, gt01, index, options=options)
    return dataclasses.replace(m, title=f"{kind} real image {index}")


def reconstruct(m: Measurement, denoiser, device: str, setting: dict | None = None) -> engine.Result | None:
    """The engine's run of ``m``; ``setting``: RunConfig fields (solver, steps, params, warm_start)
    in place of the engine's defaults."""
    cfg = engine.RunConfig(device=device, keep_samples=0, preview_interval=1e9, **(setting or {}))
    for event in engine.run(m, cfg, denoiser=denoiser):
        if isinstance(event, engine.Finished):
            return event.result
    return None


def size_check(denoiser, real: dict, sizes, device, sigma: float = 0.2) -> dict:
    """PSNR (dB, peak-to-peak 2 in [-1, 1]) of the one-step denoiser on the large images at each size."""
    out = {}
    g = torch.Generator(device="cpu").manual_seed(0)
    for s in sizes:
        vals = []
        for k in LARGE:
            img = real[f"{k}_{s}"] if f"{k}_{s}" in real else _square(real[f"{k}_512"], s)
            x0 = torch.from_numpy(img)[None, None].to(device) * 2 - 1
            x = x0 + sigma * torch.randn(x0.shape, generator=g).to(device)
            with torch.no_grad():
                hat = denoiser(x, torch.full((1,), sigma, device=device)).clamp(-1, 1)
            mse = float((hat - x0).square().mean())
            vals.append(10 * math.log10(4 / mse))
        out[str(s)] = {"mean": float(np.mean(vals)), "per_image": dict(zip(LARGE, vals))}
    return out


def run_setting(args) -> dict:
    """The RunConfig fields of --preset / --solver / --steps / --warm-start (empty: engine
    defaults); with a preset, :func:`diffrecon.engine.presets.resolve` puts the others over it."""
    if args.preset:
        from diffrecon.engine import presets
        return presets.resolve(args.preset, args.solver, args.steps, None, args.warm_start)
    given = {"solver": args.solver, "steps": args.steps, "warm_start": args.warm_start}
    return {k: v for k, v in given.items() if v and v != "none"}


def describe(setting: dict) -> str:
    if not setting:
        return "diffpir (engine defaults)"
    text = f"{setting.get('solver', 'diffpir')} at {setting.get('steps', 50)} steps"
    if setting.get("params"):
        text += " (" + ", ".join(f"{k}={v}" for k, v in setting["params"].items()) + ")"
    warm = setting.get("warm_start", "none")
    return text + (f", warm-started from {warm}" if warm != "none" else "")


def evaluate(args) -> dict:
    device = str(resolve_device(args.device))
    real = dict(np.load(args.real)) if args.real else {}
    names = [k[:-len(f"_{SIZE}")] for k in real if k.endswith(f"_{SIZE}")]
    from diffrecon.phantoms import TEST_SEEDS, phantom

    setting = run_setting(args)
    report = {"device": device_name(torch.device(device)), "torch": torch.__version__, "solver": describe(setting),
              "setting": setting,
              "tasks": args.tasks, "real_images": names, "n_phantoms": args.n_phantoms, "priors": {}}
    for folder, label in zip(args.priors, args.labels):
        denoiser = load_prior(folder, device=device)
        entry = {"folder": str(folder), "card": denoiser.card.name, "rows": {}, "seconds": 0.0}
        recon = {}
        t0 = time.perf_counter()
        for task in args.tasks:
            kind, acc = TASKS[task]
            for group, items in (("real", [(n, real[f"{n}_{SIZE}"]) for n in names]),
                                 ("phantoms", [(f"phantom{i}", phantom(SIZE, TEST_SEEDS[i])) for i in range(args.n_phantoms)])):
                rows = {}
                for i, (name, img) in enumerate(items):
                    m = simulate(kind, np.asarray(img, np.float32), i, acc)
                    r = reconstruct(m, denoiser, device, setting)
                    rows[name] = None if r is None else {"psnr": r.metrics.get("psnr"), "ssim": r.metrics.get("ssim")}
                    if r is not None and group == "real":
                        recon[f"{task}__{name}"] = r.mean[0].astype(np.float16)
                entry["rows"][f"{task}/{group}"] = rows
                print(f"{label:>10s} {task:8s} {group:8s} PSNR "
                      f"{np.mean([v['psnr'] for v in rows.values() if v]):.2f}", flush=True)
        entry["seconds"] = time.perf_counter() - t0
        if args.sizes and real:
            entry["size_check"] = size_check(denoiser, real, args.sizes, device)
            print(label, "size check", {k: round(v["mean"], 2) for k, v in entry["size_check"].items()}, flush=True)
        report["priors"][label] = entry
        np.savez_compressed(args.out / f"recon_{label}.npz", **recon)
        write(args.out, report)
    return report


def table(report: dict) -> str:
    labels = list(report["priors"])
    lines = [f"Mean PSNR (dB) / SSIM of the posterior mean, {report['solver']}, on {report['device']}.", "",
             "| task | images | " + " | ".join(labels) + " |", "|---|---|" + "---|" * len(labels)]
    keys = list(next(iter(report["priors"].values()))["rows"])
    for key in keys:
        cells = []
        for lab in labels:
            rows = report["priors"][lab]["rows"].get(key, {})
            ok = [v for v in rows.values() if v]
            cells.append(f"{np.mean([v['psnr'] for v in ok]):.2f} / {np.mean([v['ssim'] for v in ok]):.3f}"
                         if ok else "-")
        task, group = key.split("/")
        lines.append(f"| {task} | {group} | " + " | ".join(cells) + " |")
    sized = [lab for lab in labels if "size_check" in report["priors"][lab]]
    if sized:
        sizes = list(report["priors"][sized[0]]["size_check"])
        lines += ["", "One-step denoiser PSNR (dB, sigma 0.2 in [-1, 1]) on the large real images at each size:", "",
                  "| prior | " + " | ".join(sizes) + " |", "|---|" + "---|" * len(sizes)]
        for lab in sized:
            sc = report["priors"][lab]["size_check"]
            lines.append(f"| {lab} | " + " | ".join(f"{sc[s]['mean']:.2f}" for s in sizes) + " |")
    return "\n".join(lines) + "\n"


def write(out: Path, report: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, text in (("compare.json", json.dumps(report, indent=1)), ("compare.md", table(report))):
        tmp = out / (name + ".tmp")
        tmp.write_text(text)
        tmp.replace(out / name)


def figure(real_npz: Path, recons: list[Path], out: Path) -> None:
    """Ground truth, then each recon file's posterior mean per task, one row per real image."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    real = dict(np.load(real_npz))
    runs = {f.stem.removeprefix("recon_"): dict(np.load(f)) for f in recons}
    names = [k[:-len(f"_{SIZE}")] for k in real if k.endswith(f"_{SIZE}")]
    scale = {t: demo.problem(kind).demo.scale for t, (kind, _) in TASKS.items()}
    cols = [(t, lab) for t in TASKS for lab in runs]
    fig, axes = plt.subplots(len(names), 1 + len(cols), figsize=(1.6 * (1 + len(cols)), 1.75 * len(names)),
                             squeeze=False)
    fig.subplots_adjust(left=0.04, right=0.9, top=0.97, bottom=0.01, wspace=0.03, hspace=0.05)
    for i, n in enumerate(names):
        im = axes[i, 0].imshow(real[f"{n}_{SIZE}"], cmap="gray", vmin=0, vmax=1)
        axes[i, 0].set_ylabel(n)
        for j, (task, lab) in enumerate(cols):
            axes[i, j + 1].imshow(runs[lab][f"{task}__{n}"].astype(np.float32) / scale[task], cmap="gray", vmin=0, vmax=1)
            if i == 0:
                axes[i, j + 1].set_title(f"{task}: {lab}", fontsize=9)
    axes[0, 0].set_title("ground truth", fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, cax=fig.add_axes([0.92, 0.35, 0.015, 0.3]),
                 label="value / demo scale (CT 0.4 1/cm, MRI and inpainting a.u.)")
    fig.savefig(out, dpi=64)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--priors", nargs="+", default=["default"])
    p.add_argument("--labels", nargs="+", default=None)
    p.add_argument("--tasks", nargs="+", default=["ct", "mri_x4", "inpaint"], choices=list(TASKS))
    p.add_argument("--n-phantoms", type=int, default=10)
    p.add_argument("--real", type=Path, default=None, help="npz written by --prepare-real")
    p.add_argument("--sizes", type=int, nargs="*", default=[128, 256, 512])
    p.add_argument("--device", default="auto")
    p.add_argument("--preset", default=None, help="a quality preset's solver, steps and parameters (fast, full)")
    p.add_argument("--solver", default=None, help="the solver (default: the engine's, diffpir)")
    p.add_argument("--steps", type=int, default=None, help="steps (default: the solver's or the preset's)")
    p.add_argument("--warm-start", default="none", help="warm start of every run (none, tv)")
    p.add_argument("--out", type=Path)
    p.add_argument("--prepare-real", type=Path, default=None)
    p.add_argument("--merge", type=Path, nargs="+", default=None)
    p.add_argument("--figure", type=Path, nargs="+", default=None, metavar="RECON_NPZ",
                   help="draw these recon_<label>.npz files next to the --real images into --out (a PNG)")
    args = p.parse_args(argv)
    if args.figure:
        figure(args.real, args.figure, args.out)
        return 0
    if args.prepare_real:
        prepare_real(args.prepare_real)
        return 0
    if args.merge:
        reports = [json.loads(f.read_text()) for f in args.merge]
        priors: dict = {}
        for r in reports:  # a prior's rows from several files (e.g. one file per task) are united
            for label, entry in r["priors"].items():
                if label in priors:
                    priors[label]["rows"].update(entry["rows"])
                else:
                    priors[label] = dict(entry, rows=dict(entry["rows"]))
        tasks = list(dict.fromkeys(t for r in reports for t in r.get("tasks", [])))
        merged = dict(reports[0], priors=priors, tasks=tasks)
        write(args.out, merged)
        print(table(merged))
        return 0
    args.labels = args.labels or [Path(f).name for f in args.priors]
    args.out.mkdir(parents=True, exist_ok=True)
    print(table(evaluate(args)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
