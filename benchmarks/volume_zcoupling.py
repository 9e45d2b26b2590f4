"""Volumes from a 2D prior: z-coupled against slice-by-slice reconstruction of a phantom volume.

A phantom volume (``diffrecon.volume.phantom_volume``: ellipsoids whose cross-sections change
slowly along z) is measured slice by slice with sparse-view CT, at one or more slice distances,
and reconstructed by a volume solver (``diffrecon.volume.reconstruct_volume``; DiffPIR by
default, ``--solver dds|ddnm``, ``--param k=v``) at several z-coupling weights ``lam_z``
(``auto``: the rule ``diffrecon.volume.default_lam_z`` of the slice distance); ``lam_z = 0`` is
slice-by-slice reconstruction. Reported per distance and weight: the volume's PSNR, the std of
the difference between neighbouring slices' errors (``z_inconsistency``: how much the error
jumps from slice to slice), the mean per-slice PSNR, time and network evaluations.

    python benchmarks/volume_zcoupling.py --slices 16 --size 32 --views 8 --prior gaussian \
        --out benchmarks/results/volume/gaussian_16x32.json
    python benchmarks/volume_zcoupling.py --slices 12 --size 64 --views 12 --prior default --steps 10 \
        --samples 1 --z-spacing 1 2 4 --lam-z 0 0.25 1 4 auto --out benchmarks/results/volume/rule.json
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from diffrecon.engine import RunConfig
from diffrecon.io.atomic import atomic_write, write_bytes
from diffrecon.volume import VolumeFinished, reconstruct_volume, volume_demo


def run_one(slices, config, lam_z, slice_batch, z_spacing):
    start = time.perf_counter()
    for event in reconstruct_volume(slices, config, lam_z=lam_z, slice_batch=slice_batch, z_spacing=z_spacing):
        if isinstance(event, VolumeFinished):
            r = event.result
            return {"z_spacing": z_spacing, "lam_z": r.provenance["lam_z"], "lam_z_rule": r.provenance["lam_z_rule"],
                    "psnr": r.metrics["psnr"], "z_inconsistency": r.metrics["z_inconsistency"],
                    "z_roughness": r.metrics["z_roughness"], "mean_slice_psnr": float(np.mean(r.slice_psnr)),
                    "min_slice_psnr": float(np.min(r.slice_psnr)), "mean_std": float(r.std.mean()),
                    "seconds": round(time.perf_counter() - start, 2), "nfe": r.provenance["nfe"]}
    raise RuntimeError("the run ended without a result")


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
    a = p.parse_args(argv)
    params = dict(kv.split("=", 1) for kv in a.param)
    config = RunConfig(solver=a.solver, params=params, prior=a.prior, steps=a.steps, samples=a.samples,
                       device=a.device, prior_fit=False)
    rows, truth_roughness = [], {}
    for z_spacing in a.z_spacing:
        slices = volume_demo(a.slices, a.size, seed=a.phantom_seed, options={"n_views": a.views}, z_spacing=z_spacing)
        truth = np.stack([m.ground_truth for m in slices])
        truth_roughness[str(z_spacing)] = float(np.diff(truth, axis=0).std())
        for lam_z in a.lam_z:
            weight = None if lam_z == "auto" else float(lam_z)
            # the phantom's own distance when none is given: its slices span z in [-0.7, 0.7]
            spacing = z_spacing if z_spacing is not None else 1.4 / (a.slices - 1) * (a.size - 1) / 2
            rows.append(run_one(slices, config, weight, a.slice_batch, spacing))
            print(json.dumps(rows[-1]), flush=True)
    record = {"benchmark": "volume_zcoupling", "slices": a.slices, "size": a.size, "views": a.views,
              "z_spacing": a.z_spacing, "noise_sigma": slices[0].noise_sigma,
              "truth_z_roughness": truth_roughness, "prior": a.prior, "steps": a.steps,
              "samples": a.samples, "solver": a.solver, "params": params, "device": a.device,
              "machine": platform.processor() or platform.machine(), "rows": rows}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    text = (json.dumps(record, indent=1) + "\n").encode()
    atomic_write(a.out, lambda path: write_bytes(path, text))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
