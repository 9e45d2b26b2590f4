"""Volumes from a 2D prior: z-coupled against slice-by-slice reconstruction of a phantom volume.

A phantom volume (``diffrecon.volume.phantom_volume``: ellipsoids whose cross-sections change
slowly along z) is measured slice by slice with sparse-view CT, at one or more slice distances,
and reconstructed by a volume solver (``diffrecon.volume.reconstruct_volume``; DiffPIR by
default, ``--solver dds|ddnm``, ``--param k=v``) at several z-coupling weights ``lam_z``
(``auto``: the rule ``diffrecon.volume.default_lam_z`` of the slice distance); ``lam_z = 0`` is
slice-by-slice reconstruction. Reported per distance and weight: the volume's PSNR, the std of
the difference between neighbouring slices' errors (``z_inconsistency``: how much the error
jumps from slice to slice), the mean per-slice PSNR, wall time, peak memory and network
evaluations. Peak memory is ``torch.cuda.max_memory_allocated`` on CUDA; on the CPU it is the
rise of the process's peak resident set over the run (Linux: ``VmHWM`` of ``/proc/self/status``,
reset before each run through ``/proc/self/clear_refs``; it includes loading the prior), and
``memory_method`` in the JSON says which. Each run has a fresh process of its own, so that
memory one run freed but kept does not hide the next one's. ``--figure PATH.png`` draws a coronal cut (the x-z
plane through the middle of the volume) of the truth and, for the first and last ``lam_z``
(slice by slice and coupled when the first is 0), the mean, its error and the std across
samples, at the first distance.

    python benchmarks/volume_zcoupling.py --slices 16 --size 32 --views 8 --prior gaussian \
        --out benchmarks/results/volume/gaussian_16x32.json
    python benchmarks/volume_zcoupling.py --slices 12 --size 64 --views 12 --prior default --steps 10 \
        --samples 1 --z-spacing 1 2 4 --lam-z 0 0.25 1 4 auto --out benchmarks/results/volume/rule.json
    python benchmarks/volume_zcoupling.py --slices 16 --size 64 --views 12 --prior default --steps 10 \
        --samples 2 --z-spacing 1 --lam-z 0 auto --out benchmarks/results/volume/coronal.json \
        --figure docs/volume_coronal.png
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from diffrecon.engine import RunConfig
from diffrecon.io.atomic import atomic_write, write_bytes
from diffrecon.volume import VolumeFinished, reconstruct_volume, volume_demo


class PeakMemory:
    """Peak memory of one run in MiB: CUDA's peak allocation, or the CPU process's peak RSS rise."""

    def __init__(self, device):
        self.cuda = str(device).startswith("cuda")
        self.method = "torch.cuda.max_memory_allocated"
        if not self.cuda:
            try:
                Path("/proc/self/clear_refs").write_text("5")
                self.method = "rise of VmHWM (peak resident set), reset via /proc/self/clear_refs"
            except OSError:
                self.method = "rise of ru_maxrss (process lifetime peak; 0 unless this run sets a new peak)"

    def __enter__(self):
        if self.cuda:
            import torch

            torch.cuda.reset_peak_memory_stats()
            self.before = torch.cuda.memory_allocated()
        else:
            self.before = self._rss_kib("VmRSS") if "VmHWM" in self.method else self._maxrss_kib()
        return self

    @staticmethod
    def _rss_kib(key):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
        raise RuntimeError(f"/proc/self/status has no {key}")

    @staticmethod
    def _maxrss_kib():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    def peak_mib(self):
        if self.cuda:
            import torch

            return round((torch.cuda.max_memory_allocated() - self.before) / 2**20, 1)
        after = self._rss_kib("VmHWM") if "VmHWM" in self.method else self._maxrss_kib()
        return round(max(after - self.before, 0) / 1024, 1)

    def __exit__(self, *exc):
        return False


def run_one(slices, config, lam_z, slice_batch, z_spacing):
    """The row of one run and its :class:`VolumeResult`."""
    with PeakMemory(config.device) as memory:
        start = time.perf_counter()
        for event in reconstruct_volume(slices, config, lam_z=lam_z, slice_batch=slice_batch, z_spacing=z_spacing):
            if isinstance(event, VolumeFinished):
                r = event.result
                seconds = round(time.perf_counter() - start, 2)
                row = {"z_spacing": z_spacing, "lam_z": r.provenance["lam_z"], "lam_z_rule": r.provenance["lam_z_rule"],
                       "psnr": r.metrics["psnr"], "z_inconsistency": r.metrics["z_inconsistency"],
                       "z_roughness": r.metrics["z_roughness"], "mean_slice_psnr": float(np.mean(r.slice_psnr)),
                       "min_slice_psnr": float(np.min(r.slice_psnr)), "mean_std": float(r.std.mean()),
                       "seconds": seconds, "peak_memory_mib": memory.peak_mib(), "nfe": r.provenance["nfe"]}
                return row, r
    raise RuntimeError("the run ended without a result")


def run_isolated(spec):
    """:func:`run_one` of ``spec`` (a dict of this script's settings) in this (fresh) process; the
    row and the result's mean, std and units."""
    slices = volume_demo(spec["slices"], spec["size"], seed=spec["seed"], options={"n_views": spec["views"]},
                         z_spacing=spec["z_spacing"])
    row, r = run_one(slices, spec["config"], spec["lam_z"], spec["slice_batch"], spec["spacing"])
    return row, SimpleNamespace(mean=r.mean, std=r.std, units=r.units)


def coronal_cut(volume):
    """``(Z, W)``: the x-z plane through the middle row of a ``(Z, H, W)`` or ``(Z, C, H, W)``
    volume (its first channel)."""
    v = np.asarray(volume)
    v = v[:, 0] if v.ndim == 4 else v
    return v[:, v.shape[1] // 2, :]


def coronal_figure(path, truth, first, last, title):
    """Coronal cuts (the x-z plane through the middle row): the truth, then per run (``first``,
    ``last``: a row and its result) the mean, the mean's error and the std across samples."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mid, d, units = truth.shape[-2] // 2, first[0]["z_spacing"], first[1].units
    name = lambda row: "slice by slice" if row["lam_z"] == 0 else f"z-coupled, lam_z {row['lam_z']:.3g}"  # noqa: E731
    true = coronal_cut(truth)
    z, x = true.shape
    extent = (-0.5, x - 0.5, (z - 0.5) * d, -0.5 * d)  # z in pixels: slice index times the distance
    cuts = [(coronal_cut(r.mean), coronal_cut(r.std)) for _, r in (first, last)]
    emax = max(float(np.abs(m - true).max()) for m, _ in cuts)
    smax = max(float(s.max()) for _, s in cuts)
    height = 3 * (3.9 / x * z * d + 0.55) + 1.0
    fig, axes = plt.subplots(3, 3, figsize=(12, height), constrained_layout=True)
    shown = {"mean": ("gray", 0.0, float(true.max())), "error": ("RdBu_r", -emax, emax), "std": ("magma", 0.0, smax)}
    images = {}
    for col, key in enumerate(shown):
        cmap, lo, hi = shown[key]
        panels = [("truth", true) if key == "mean" else None]
        panels += [(f"{name(row)}: {key}" + (f" (PSNR {row['psnr']:.2f} dB)" if key == "mean" else ""),
                    (m if key == "mean" else m - true if key == "error" else s_))
                   for (row, _), (m, s_) in zip((first, last), cuts)]
        for r, panel in enumerate(panels):
            ax = axes[r, col]
            if panel is None:
                ax.axis("off")
                continue
            images[key] = ax.imshow(panel[1], cmap=cmap, vmin=lo, vmax=hi, extent=extent, interpolation="nearest")
            ax.set_title(panel[0], fontsize=9)
            ax.set_xlabel("x (px)", fontsize=8)
            ax.set_ylabel("z (px)", fontsize=8)
            ax.tick_params(labelsize=7)
    labels = {"mean": "value", "error": "mean - truth", "std": "std across samples"}
    for col, key in enumerate(shown):
        fig.colorbar(images[key], ax=axes[:, col].tolist(), orientation="horizontal", shrink=0.8, aspect=30,
                     label=f"{labels[key]} ({units})")
    fig.suptitle(f"{title}\ncoronal cut: the x-z plane through row {mid}; {z} slices {d:.3g} px apart", fontsize=10)

    def save(target):
        fig.savefig(target, format="png", dpi=90)

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, save)
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--slices", type=int, default=16)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--views", type=int, default=8)
    p.add_argument("--prior", default="gaussian")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--samples", type=int, default=2)
    p.add_argument("--lam-z", nargs="+", default=["0", "0.5", "1", "2", "4"], help="weights, or auto (the rule)")
    p.add_argument("--solver", default="diffpir")
    p.add_argument("--param", action="append", default=[], help="solver parameter k=v")
    p.add_argument("--slice-batch", type=int, default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--phantom-seed", type=int, default=0)
    p.add_argument("--z-spacing", type=float, nargs="+", default=[None],
                   help="slice distances in pixels (1: isotropic voxels); default: the slices span z in [-0.7, 0.7]")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--figure", type=Path, default=None, help="PNG of a coronal cut: truth, first and last lam_z")
    a = p.parse_args(argv)
    params = dict(kv.split("=", 1) for kv in a.param)
    config = RunConfig(solver=a.solver, params=params, prior=a.prior, steps=a.steps, samples=a.samples,
                       device=a.device, prior_fit=False)
    rows, truth_roughness, figure = [], {}, None
    for z_spacing in a.z_spacing:
        slices = volume_demo(a.slices, a.size, seed=a.phantom_seed, options={"n_views": a.views}, z_spacing=z_spacing)
        truth = np.stack([m.ground_truth for m in slices])
        truth_roughness[str(z_spacing)] = float(np.diff(truth, axis=0).std())
        for lam_z in a.lam_z:
            weight = None if lam_z == "auto" else float(lam_z)
            # the phantom's own distance when none is given: its slices span z in [-0.7, 0.7]
            spacing = z_spacing if z_spacing is not None else 1.4 / (a.slices - 1) * (a.size - 1) / 2
            spec = {"slices": a.slices, "size": a.size, "seed": a.phantom_seed, "views": a.views, "config": config,
                    "z_spacing": z_spacing, "lam_z": weight, "slice_batch": a.slice_batch, "spacing": spacing}
            with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
                row, result = pool.submit(run_isolated, spec).result()
            rows.append(row)
            print(json.dumps(row), flush=True)
            if a.figure is not None and z_spacing == a.z_spacing[0] and lam_z in (a.lam_z[0], a.lam_z[-1]):
                figure = (truth, figure[1] if figure else (row, result), (row, result))
    record = {"benchmark": "volume_zcoupling", "slices": a.slices, "size": a.size, "views": a.views,
              "z_spacing": a.z_spacing, "noise_sigma": slices[0].noise_sigma,
              "truth_z_roughness": truth_roughness, "prior": a.prior, "steps": a.steps,
              "samples": a.samples, "solver": a.solver, "params": params, "device": a.device,
              "machine": platform.processor() or platform.machine(),
              "memory_method": PeakMemory(a.device).method, "rows": rows}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    text = (json.dumps(record, indent=1) + "\n").encode()
    atomic_write(a.out, lambda path: write_bytes(path, text))
    print(f"wrote {a.out}")
    if figure is not None:
        truth, first, last = figure
        title = (f"{a.slices} x {a.size} x {a.size} CT phantom volume, "
                 f"{a.views} views, {a.prior} prior, {a.solver}, {a.steps} steps, {a.samples} samples")
        coronal_figure(a.figure, truth, first, last, title)
        print(f"wrote {a.figure}")


if __name__ == "__main__":
    main()
