"""Network priors away from their trained size: whole image (native / padded) against patches.

    python benchmarks/any_size.py denoise [--sizes 128 256 512] [--device auto] --out DIR
    python benchmarks/any_size.py recon [--sizes 256 512] [--images camera cell] [--tasks inpaint ct sr_x4]
        [--steps 50] [--samples 4] [--baseline] [--device auto] --out DIR

``denoise``: PSNR (dB, peak-to-peak 2 in the prior's [-1, 1]) of the one-step denoiser
``x0_hat = D(x0 + 0.2 n, 0.2)`` on the four large real images of ``compare_priors.py`` (camera,
retina, hubble, microaneurysms: native size >= 512, none in any training set) resized to each
size, the noise seeded per image (``--large`` picks a subset). ``recon``: full reconstructions through :func:`diffrecon.engine.run`
on the real-image tasks of ``real_images.py`` (DiffPIR, engine defaults otherwise), the posterior
mean's PSNR / SSIM, t-corrected 90 % coverage and time; ``--baseline`` adds TV with its weight
from the discrepancy principle. A variant whose mode is ``auto`` goes through the engine by name
(``RunConfig.prior``), so the engine's own choice of mode is what runs; the others are built with
``load_prior(name, shape, how=...)`` and handed to the engine.

Variants (prior, how): default/auto (patches away from 128), procedural/auto (the whole image:
fully convolutional), procedural/patches; ``--variants`` picks others, e.g. default/whole (the
attention network on the whole image, for reference) or default/patches (patches at 128 too).

Writes DIR/any_size_<command>.json (settings, device, every number; rewritten after each entry).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from diffrecon import __version__, engine  # noqa: E402
from diffrecon.io.atomic import atomic_write  # noqa: E402
from diffrecon.priors import load_prior, prior_size_mode  # noqa: E402
from diffrecon.runtime import device_name, resolve_device  # noqa: E402

VARIANTS = [("default", "auto"), ("procedural", "auto"), ("procedural", "patches")]
SIGMA = 0.2


def _label(prior: str, how: str) -> str:
    return f"{prior}/{how}"


def _write(out: Path, name: str, report: dict) -> None:
    text = json.dumps(report, indent=1, default=float)
    atomic_write(out / name, lambda tmp: tmp.write_text(text))


def _mode(den) -> str:
    return getattr(den, "size_info", {}).get("mode", "native")


def denoise(args, device: torch.device, report: dict) -> None:
    import compare_priors

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "real.npz"
        compare_priors.prepare_real(path)
        real = dict(np.load(path))
    names = [n for n in compare_priors.LARGE if n in args.large] if args.large else compare_priors.LARGE
    for size in args.sizes:
        for prior, how in args.variants:
            entry = report["results"].setdefault(_label(prior, how), {})
            den = load_prior(prior, (1, size, size), device=device, how=how)
            vals, t0 = {}, time.perf_counter()
            for i, name in enumerate(names):
                x0 = torch.from_numpy(real[f"{name}_{size}"])[None, None].to(device) * 2 - 1
                noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(i)).to(device)
                with torch.no_grad():
                    hat = den(x0 + SIGMA * noise, SIGMA).clamp(-1, 1)
                vals[name] = 10 * math.log10(4 / float((hat - x0).square().mean()))
            entry[str(size)] = {"mode": _mode(den), "psnr_mean": float(np.mean(list(vals.values()))),
                                "per_image": vals, "seconds_per_image": (time.perf_counter() - t0) / len(vals),
                                "size_info": getattr(den, "size_info", {})}
            print(f"{_label(prior, how):22s} {size:4d} {_mode(den):8s} PSNR {entry[str(size)]['psnr_mean']:.2f} dB "
                  f"({entry[str(size)]['seconds_per_image']:.1f} s/image)", flush=True)
            _write(args.out, "any_size_denoise.json", report)


def _summary(result, seconds: float, m) -> dict:
    import real_images

    out = {k: result.metrics.get(k) for k in ("psnr", "ssim", "residual_ratio")}
    out["seconds"] = seconds
    out["prior"] = result.provenance.get("prior")
    card = json.loads(result.provenance.get("prior_card") or "{}")
    out["size"] = (card.get("extra") or {}).get("size", {"mode": "native"})
    if result.samples is not None and len(result.samples) >= 2:
        out["coverage90_t"] = real_images.t_coverage(result.samples, m.ground_truth)
    return out


def recon(args, device: torch.device, report: dict) -> None:
    import real_images

    for size in args.sizes:
        for image in args.images:
            img = real_images.load_image(image, size)
            for task in args.tasks:
                m = real_images.simulate(task, img, 0, image)
                key = f"{size}/{image}/{task}"
                row = report["results"].setdefault(key, {})
                if args.baseline and "tv_fair" not in row:
                    fair, _ = real_images.tune_baseline(m, "tv")
                    row["tv_fair"] = real_images.summarize(fair)
                for prior, how in args.variants:
                    cfg = engine.RunConfig(solver="diffpir", steps=args.steps, samples=args.samples, seed=0,
                                           prior=prior, device=str(device), keep_samples=args.samples,
                                           preview_interval=1e9, prior_fit=False)
                    den = None if how == "auto" else load_prior(prior, tuple(m.image_shape), device=device, how=how)
                    t0 = time.perf_counter()
                    events = list(engine.run(m, cfg, denoiser=den))
                    result = events[-1].result
                    row[_label(prior, how)] = _summary(result, time.perf_counter() - t0, m)
                    row[_label(prior, how)]["warnings"] = [e.message for e in events
                                                           if isinstance(e, engine.Log) and e.level == "warning"]
                    r = row[_label(prior, how)]
                    print(f"{key:24s} {_label(prior, how):22s} {r['size'].get('mode', '?'):8s} prior {r['prior']:10s} "
                          f"PSNR {r['psnr']:.2f} SSIM {r['ssim']:.3f} {r['seconds']:.0f} s", flush=True)
                    _write(args.out, "any_size_recon.json", report)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("command", choices=("denoise", "recon"))
    ap.add_argument("--sizes", type=int, nargs="+", default=None)
    ap.add_argument("--images", nargs="+", default=["camera", "cell"], help="recon: real_images.py's images")
    ap.add_argument("--large", nargs="+", default=None, help="denoise: a subset of compare_priors.LARGE")
    ap.add_argument("--tasks", nargs="+", default=["inpaint", "ct", "sr_x4"])
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--baseline", action="store_true", help="add TV with the discrepancy-principle weight")
    ap.add_argument("--variants", nargs="+", default=None, metavar="PRIOR/HOW",
                    help="prior/how pairs (how: auto, whole, patches); default " + " ".join(f"{p}/{h}" for p, h in VARIANTS))
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.sizes = args.sizes or ([128, 256, 512] if args.command == "denoise" else [256, 512])
    args.variants = [tuple(v.split("/", 1)) for v in args.variants] if args.variants else VARIANTS
    args.out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(args.device)
    modes = {f"{_label(p, h)}@{s}": prior_size_mode(p, (1, s, s), how=h) for p, h in args.variants for s in args.sizes}
    report = {"command": args.command, "device": device_name(device), "torch": torch.__version__,
              "software_version": __version__, "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "settings": {k: v for k, v in vars(args).items() if k not in ("out", "variants")},
              "variants": [_label(p, h) for p, h in args.variants], "modes": modes, "sigma": SIGMA, "results": {}}
    (denoise if args.command == "denoise" else recon)(args, device, report)
    report["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    _write(args.out, f"any_size_{args.command}.json", report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
