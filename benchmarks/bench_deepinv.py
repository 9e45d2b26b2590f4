"""diffrecon against deepinv 0.5.0 on one GPU, with the same network on both sides (issue 8).

    python benchmarks/bench_deepinv.py --out $OUT/bench.json            # GPU, ~6-8 min on an H100
    python benchmarks/bench_deepinv.py --smoke --out /tmp/bench.json    # CPU, tiny sizes, checks the code

Sections (each in try/except; an error is recorded in the JSON and the rest goes on; the JSON is
rewritten after every section, so a run cut short keeps what it finished):

1. ``matmul``: the device's bf16 matrix rate, median of timed 8192^3 ``torch.matmul`` calls.
2. ``network``: the ADM UNet (``imagenet_256_uncond``: 256x256, 3 channels, random seeded
   weights, loaded through :func:`diffrecon.priors.adm_layout.load_adm_prior`) and deepinv's
   ``DiffUNet(large_model=True)`` holding the same state dict: one forward at batch 8 in bf16, and
   FLOPs per evaluation (:func:`~diffrecon.priors.adm.count_flops`).
3. ``timing``: ours (``diffrecon.engine.run``, bf16 autocast) against deepinv's ``DPS``, ``DDRM``
   and ``DiffPIR`` at equal step counts (default 50) on inpainting (50 % pixels missing) and CT
   (60 parallel-beam views; deepinv's own ``Tomography``), K = 1 and K = 8 posterior samples.
   deepinv draws K samples *batched* (``y`` repeated K times, one call): its DPS normalises the
   residual per sample, DDRM and DiffPIR act per pixel. Seconds per sample (synchronised
   timers, one short warm-up, median of repeats), peak memory, ratio ours/theirs, and the
   fraction of the hardware limit (FLOPs x evaluations, x3 for DPS's forward and backward,
   over the measured matrix rate) that each side reaches. DDRM needs an SVD: CT has none on
   either side.
4. ``agreement``: posterior-mean PSNR of both implementations on held-out phantoms
   (``diffrecon.phantoms.TEST_SEEDS``) with the bundled prior when it is installed, and always
   with the exact Gaussian prior, wrapped for deepinv; target: within 0.3 dB. Both sides solve
   the same problem: the identical measurement, and for CT our projector wrapped as a deepinv
   ``LinearPhysics``. ``--device cpu`` runs this section without a GPU. ``--phantom-start``
   splits the phantoms over processes; ``--merge-agreement A.json B.json ...`` joins their
   reports and recomputes the mean difference and its standard error.
5. ``dps_1000``: 1000-step DPS, 8 samples at 256x256 (ours), total time; skipped when the
   time left (``--budget``) would not cover it.

Equal settings (timing): DPS zeta 1 (deepinv ``weight`` 1, VP/DDPM solver with
``num_steps = S + 1``, so S guided steps); DDRM eta 0.85, eta_b 1 with our Karras sigmas handed
to deepinv in its [0, 1] units; DiffPIR lambda 7, zeta 0.3. deepinv's network runs under the
same bf16 autocast as ours.

Equal settings (agreement, ``AGREEMENT``). Each deepinv method as shipped, and where it differs
from the paper a variant that makes it the same algorithm:

- ``ddrm_noise_aligned``: deepinv 0.5.0's DDRM draws its noise as ``std * randn / sqrt(2)``
  (0.71x the level it hands the denoiser). Handed ``sqrt(2)`` times our sigmas and a denoiser
  called at ``sigma / sqrt(2)`` (``SigmaScaled``), it draws exactly our noise.
- ``dps_step_aligned``: deepinv's DPS puts ``weight * ||A D - y||`` into the score, so its
  step scales with ``sigma_t^2 - sigma_t'^2``; a weight per step (``paper_step_fidelity``)
  gives the paper's ``zeta`` step, and ours runs on deepinv's time steps (``vp_sde``).
- ``diffpir``: ours runs deepinv's schedule (``vp_quadratic``, the authors' quadratic
  subsequence of the DDPM table) at lambda 3.5, which is deepinv's 7 (its data step weighs
  ``rho`` twice: see ``AGREEMENT``).
- ``diffpir_final_step``: deepinv 0.5.0's DiffPIR skips the data step of its last iteration and
  returns its last noisy iterate; this variant applies that data step to its last clean
  estimate and returns it, as the paper's Algorithm 1 (and ours) end.
- ``diffpir_tight_cg``: deepinv's DiffPIR with its data step's conjugate gradients run to
  convergence (300 iterations, tol 1e-7, instead of 50 and 1e-4).

deepinv is not a dependency of diffrecon: install its wheel with ``pip install --no-deps``.
``import deepinv`` needs ``natsort`` and ``requests`` only for its datasets and downloads;
where they are missing, empty stand-ins are put in ``sys.modules`` (recorded in the JSON).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time
import traceback
import types
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from diffrecon.engine import Finished, RunConfig, run  # noqa: E402
from diffrecon.measurement import Measurement  # noqa: E402
from diffrecon.metrics import psnr  # noqa: E402
from diffrecon.operators import Inpaint, ParallelBeamCT, random_mask, sparse_view_angles  # noqa: E402
from diffrecon.phantoms import TEST_SEEDS, phantom  # noqa: E402
from diffrecon.priors.adm import ADMConfig, ADMUNet, count_flops  # noqa: E402
from diffrecon.priors.adm_layout import load_adm_prior  # noqa: E402
from diffrecon.schedule import make_sigmas  # noqa: E402

PARAMS = {"dps": {"zeta": 1.0}, "ddrm": {"eta": 0.85, "eta_b": 1.0}, "diffpir": {"lam": 7.0, "zeta": 0.3}}
TASKS = {"inpaint": ("dps", "ddrm", "diffpir"), "ct": ("dps", "diffpir")}
SQRT2 = 2.0**0.5
NOISE = 0.01  # image units [0, 1] for inpainting; fraction of the sinogram's maximum for CT
CT_VIEWS = 60


# ------------------------------------------------------------------------------------ plumbing
class Clock:
    """Wall seconds with the device synchronised at both ends."""

    def __init__(self, device: torch.device):
        self.device = device

    def __enter__(self):
        self._sync()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self._sync()
        self.seconds = time.perf_counter() - self.t0

    def _sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def _release(den) -> None:
    """Drop recorded graphs and cached blocks, so the next measurement starts from the same memory."""
    if getattr(den, "network_call", None) is not None:
        den.network_call.release()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} cores"
    except OSError:
        pass
    return f"{os.cpu_count()} cores"


def reset_peak(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def peak(device) -> int | None:
    """Peak bytes the caching allocator reserved since ``reset_peak``. Reserved, not allocated:
    the private pools of recorded CUDA graphs hold memory that ``max_memory_allocated`` does not
    count once the capture has ended."""
    return int(torch.cuda.max_memory_reserved(device)) if device.type == "cuda" else None


def peak_allocated(device) -> int | None:
    return int(torch.cuda.max_memory_allocated(device)) if device.type == "cuda" else None


def write_report(report: dict, out: Path) -> None:
    """The report as JSON at ``out``, replaced atomically (a reader never sees half a file)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=2, default=str))
    os.replace(tmp, out)


def section(report: dict, name: str, out: Path, fn, *args):
    t = time.perf_counter()
    try:
        report[name] = fn(*args)
    except Exception as err:  # a benchmark records failures and goes on
        report[name] = {"error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()[-3000:]}
        print(f"[{name}] FAILED: {type(err).__name__}: {err}", flush=True)
    report.setdefault("section_seconds", {})[name] = time.perf_counter() - t
    write_report(report, out)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def import_deepinv(report: dict):
    stubbed = []
    for name in ("natsort", "requests"):
        try:
            __import__(name)
        except ImportError:
            stub = types.ModuleType(name)
            stub.natsorted = sorted  # the only natsort name deepinv uses, in dataset listings
            # deepinv subclasses requests' exception at import time; get/post only download.
            stub.exceptions = types.SimpleNamespace(RequestException=type("RequestException", (OSError,), {}))
            sys.modules[name] = stub
            stubbed.append(name)
    import deepinv

    report["deepinv"] = {"version": deepinv.__version__, "stubbed_modules": stubbed}
    return deepinv


def make_deepinv_wrappers(dinv):
    """deepinv denoisers (x in [0, 1], sigma in those units) around our networks, in autocast."""

    class Autocast(dinv.models.Denoiser):
        def __init__(self, net, dtype):
            super().__init__()
            self.net, self.dtype = net, dtype

        def forward(self, x, sigma, *args, **kwargs):
            if self.dtype is None or not x.is_cuda:
                return self.net(x, sigma)
            with torch.autocast("cuda", dtype=self.dtype):
                return self.net(x, sigma).float()

    class FromOurs(dinv.models.Denoiser):
        """Our ``Denoiser`` (its card's value range, VE sigma) in deepinv's [0, 1] convention."""

        def __init__(self, denoiser):
            super().__init__()
            self.den = denoiser
            lo, hi = denoiser.card.value_range
            self.lo, self.scale = float(lo), float(hi - lo)

        def forward(self, x, sigma, *args, **kwargs):
            s = torch.as_tensor(sigma, dtype=torch.float32, device=x.device).reshape(-1)
            s = s.expand(x.shape[0]) if s.numel() == 1 else s
            return (self.den(self.lo + self.scale * x, self.scale * s) - self.lo) / self.scale

    return Autocast, FromOurs


class LastOutput(torch.nn.Module):
    """A denoiser that keeps its last output (deepinv's DiffPIR discards its last clean estimate)."""

    def __init__(self, den):
        super().__init__()
        self.den, self.last = den, None

    def forward(self, x, sigma, *args, **kwargs):
        self.last = self.den(x, sigma)
        return self.last


class SigmaScaled(torch.nn.Module):
    """A denoiser called at ``sigma / factor``."""

    def __init__(self, den, factor: float):
        super().__init__()
        self.den, self.factor = den, factor

    def forward(self, x, sigma, *args, **kwargs):
        return self.den(x, sigma / self.factor)


# ------------------------------------------------------------------------------------ problems
def ground_truth(size: int, channels: int, index: int) -> np.ndarray:
    img = phantom(size, TEST_SEEDS[index]).astype(np.float32)
    return np.repeat(img[None], channels, axis=0)


def problem(task: str, x: np.ndarray, dinv, device, seed: int = 0, ours_only: bool = False, shared_ct: bool = False):
    """``(ours: Measurement, theirs: (y, physics))`` for the same image and noise level
    (``theirs`` None with ``ours_only``). CT uses deepinv's own ``Tomography`` on its side, or with
    ``shared_ct`` our projector wrapped as a deepinv ``LinearPhysics`` and the identical sinogram,
    so that both sides solve the same problem."""
    c, h, w = x.shape
    g = torch.Generator().manual_seed(seed)
    xt = torch.from_numpy(x)[None]
    if task == "inpaint":
        mask = random_mask((c, h, w), 0.5, seed=seed)
        op = Inpaint((c, h, w), mask, noise_sigma=NOISE)
        y = op.A(xt) + NOISE * torch.randn(xt.shape, generator=g) * op.mask
        if ours_only:
            return _ours(y, op, x), None
        physics = dinv.physics.Inpainting(img_size=(c, h, w), mask=torch.from_numpy(mask).expand(c, h, w)[None].float().to(device),
                                          noise_model=dinv.physics.GaussianNoise(NOISE), device=device)
        y_theirs = y.to(device)  # the identical measurement: both masks zero the same pixels
    else:
        op = ParallelBeamCT((c, h, w), sparse_view_angles(CT_VIEWS))
        clean = op.A(xt)
        op.noise_sigma = NOISE * float(clean.abs().max())
        y = clean + op.noise_sigma * torch.randn(clean.shape, generator=g)
        if ours_only:
            return _ours(y, op, x), None
        if shared_ct:
            shared = op.to(device)
            physics = dinv.physics.LinearPhysics(A=shared.A, A_adjoint=shared.A_adjoint,
                                                 noise_model=dinv.physics.GaussianNoise(op.noise_sigma))
            return _ours(y, op, x), (y.to(device), physics)
        physics = dinv.physics.Tomography(angles=CT_VIEWS, img_width=h, normalize=True, device=device)
        clean_t = physics.A(xt.to(device))
        sigma_t = NOISE * float(clean_t.abs().max())
        physics.noise_model = dinv.physics.GaussianNoise(sigma_t)
        y_theirs = clean_t + sigma_t * torch.randn(clean_t.shape, generator=g).to(device)
    return _ours(y, op, x), (y_theirs, physics)


def _ours(y, op, x) -> Measurement:
    return Measurement(y=y[0].numpy(), operator=op.to_spec(), noise_sigma=op.noise_sigma,
                       value_range=(0.0, 1.0), ground_truth=x)


def run_ours(m: Measurement, denoiser, solver: str, steps: int, k: int, device, seed=0, *, params=None,
             schedule="karras"):
    cfg = RunConfig(solver=solver, params=PARAMS[solver] if params is None else params, steps=steps, samples=k,
                    seed=seed, device=str(device), precision="bf16", batch_size=k, keep_samples=0,
                    preview_interval=1.0, schedule=schedule)
    reset_peak(device)
    with Clock(device) as clock:
        result = next(ev.result for ev in run(m, cfg, denoiser=denoiser) if isinstance(ev, Finished))
    return {"seconds": result.metrics["seconds"], "seconds_with_setup": clock.seconds,
            "peak_bytes": peak(device), "peak_allocated_bytes": peak_allocated(device),
            "nfe": result.metrics["nfe"], "mean": result.mean}


def run_theirs(dinv, net, y_phys, solver: str, steps: int, k: int, device, sigmas_ours, seed=0, range_width=2.0,
               zeta: float = PARAMS["dps"]["zeta"]):
    """deepinv's ``solver`` on ``y_phys``; ``sigmas_ours`` (DDRM's levels) are in the prior's units,
    ``range_width`` wide (2 for [-1, 1]); deepinv takes them in [0, 1] units."""
    y, physics = y_phys
    yk = y.expand(k, *y.shape[1:]).contiguous()
    torch.manual_seed(seed)
    if solver == "dps":
        model = dinv.sampling.DPS(net, num_steps=steps + 1, weight=1.0, device=device,
                                  rng=torch.Generator(device).manual_seed(seed))
    elif solver == "dps_step_aligned":
        model = dinv.sampling.DPS(net, num_steps=steps + 1, weight=1.0, device=device,
                                  rng=torch.Generator(device).manual_seed(seed))
        model.data_fidelity = paper_step_fidelity(dinv, net, model, range_width, zeta=zeta)
    elif solver == "ddrm":
        model = dinv.sampling.DDRM(net, sigmas=(sigmas_ours[:-1] / range_width).numpy(), eta=0.85, etab=1.0)
    elif solver == "ddrm_noise_aligned":
        # deepinv's DDRM draws its noise at sigma / sqrt(2) but hands the denoiser sigma. Given
        # sqrt(2) sigma it draws exactly sigma, and the wrapper gives the network sigma again.
        model = dinv.sampling.DDRM(SigmaScaled(net, SQRT2), sigmas=(SQRT2 * sigmas_ours[:-1] / range_width).numpy(),
                                   eta=0.85, etab=1.0)
    else:
        if solver == "diffpir_final_step":
            net = LastOutput(net)
        model = dinv.sampling.DiffPIR(net, dinv.optim.data_fidelity.L2(), sigma=physics.noise_model.sigma,
                                      max_iter=steps, zeta=0.3, lambda_=7.0, device=device)
    solver_settings = (physics.max_iter, physics.tol)
    if solver == "diffpir_tight_cg":  # the data step's CG run to convergence (deepinv: 50 its, tol 1e-4)
        physics.max_iter, physics.tol = 300, 1e-7
    reset_peak(device)
    try:  # the physics is shared by the variants of one phantom: restore its solver settings
        with Clock(device) as clock:
            x = model(yk, physics)
            if solver == "diffpir_final_step":
                # deepinv returns its last noisy iterate and skips the last data step; the paper (and
                # ours) end with the data step on the last clean estimate: apply it to deepinv's.
                t = model.find_nearest(model.reduced_alpha_cumprod, model.sigmas[model.seq[-1]])
                with torch.no_grad():
                    x = model.data_fidelity.prox(net.last.clamp(0, 1), yk, physics, gamma=1.0 / (2 * model.rhos[t]))
    finally:
        physics.max_iter, physics.tol = solver_settings
    return {"seconds": clock.seconds, "peak_bytes": peak(device), "peak_allocated_bytes": peak_allocated(device),
            "mean": x.mean(0).float().cpu().numpy()}


def paper_step_fidelity(dinv, net, model, range_width: float, zeta: float):
    """A DPS data term for deepinv's ``DPS`` whose weight makes its step the paper's.

    deepinv 0.5.0 puts ``weight * ||A D(x_t) - y||`` (in [0, 1] units) into the score, and its
    ancestral step multiplies the score by ``s_t s_t' (sigma_t^2 - sigma_t'^2)``, so at a fixed
    weight the pull towards the data shrinks as the steps get finer. The paper's step (Alg. 1
    line 8) is ``zeta grad ||y - A x0_hat||`` on the VP state, in [-1, 1] units. A weight per step
    of ``(4 / w) zeta g / (sigma_t^2 - sigma_t'^2)``, with ``g = sqrt((1 + sigma_t^2)(1 + sigma_t'^2))``
    in the prior's units (width ``w`` of its value range) and the sigmas in [-1, 1] units,
    turns deepinv's step into ours (``diffrecon.solvers.dps``). The estimate is not clipped."""
    ts = model.solver.timesteps
    sig = torch.stack([model.sde.sigma_t(t) for t in ts]).double().reshape(-1).cpu()  # [-1, 1] units
    prior = sig * range_width / 2
    gain = ((1 + prior[:-1] ** 2) * (1 + prior[1:] ** 2)).sqrt()
    weights = (4 / range_width) * zeta * gain / (sig[:-1] ** 2 - sig[1:] ** 2)
    lookup = sig[:-1] / 2  # the data term is called with sigma in [0, 1] units

    class PaperStep(dinv.sampling.DPSDataFidelity):
        def forward(self, x, y, physics, sigma, *args, **kwargs):
            i = int(torch.argmin((lookup - float(torch.as_tensor(sigma).reshape(-1)[0])).abs()))
            self.weight = float(weights[i])
            return super().forward(x, y, physics, sigma, *args, **kwargs)

    # deepinv's DPS clips the estimate to [-1, 1] in the data term's [0, 1] units ([-3, 1] for the
    # network), which cuts bright overshoots at high noise; the paper's step and ours do not clip.
    return PaperStep(denoiser=net, clip=None, weight=1.0)


# ------------------------------------------------------------------------------------ sections
def matmul_rate(device, smoke: bool) -> dict:
    n, dtype = (512, torch.float32) if smoke else (8192, torch.bfloat16)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(10):
        with Clock(device) as clock:
            a @ b
        times.append(clock.seconds)
    t = statistics.median(times)
    return {"n": n, "dtype": str(dtype), "median_seconds": t, "flops_per_second": 2 * n**3 / t}


def build_adm(setup: dict, folder: Path, device) -> object:
    """Random seeded ADM weights, saved as fp16 safetensors and loaded back through the adapter."""
    from safetensors.torch import save_file

    torch.manual_seed(0)
    net = ADMUNet(setup["config"])
    path = folder / "adm_random.safetensors"
    save_file({k: v.half().contiguous() for k, v in net.state_dict().items()}, str(path))
    del net
    return load_adm_prior(path, setup["config"], device)


def network_section(setup, ours, theirs_net, device) -> dict:
    cfg, size, flops = setup["config"], setup["size"], setup["flops_per_eval"]
    x = torch.randn(8, cfg.in_channels, size, size, device=device)
    t = torch.full((8,), 500.0, device=device)
    out = {"preset": setup["preset"], "image_size": size, "flops_per_eval": flops,
           "params": sum(p.numel() for p in ours.network.parameters())}
    calls = {"ours": lambda: ours.network(x, t), "deepinv_DiffUNet": lambda: theirs_net.forward_diffusion(x, t)}
    for name, call in calls.items():
        times = []
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            for i in range(3 + setup["repeats"] * 3):
                with Clock(device) as clock:
                    call()
                times.append(clock.seconds)
        out[f"{name}_seconds_batch8"] = statistics.median(times[3:])
    with torch.no_grad():
        diff = (ours.network(x[:1], t[:1]) - theirs_net.forward_diffusion(x[:1], t[:1])).abs().max()
    out["max_abs_output_difference_fp32"] = float(diff)
    return out


def floor_fraction(setup, solver, steps, k, seconds) -> float | None:
    rate, flops = setup.get("matmul_rate"), setup.get("flops_per_eval")
    if not rate or not flops:
        return None
    evals = steps * k * (3 if solver == "dps" else 1)  # a DPS step is a forward and a backward (~2 forwards)
    return flops * evals / rate / seconds


def timing_section(setup, dinv, ours, theirs_net, device) -> list[dict]:
    size, c, steps = setup["size"], setup["config"].in_channels, setup["steps"]
    sigmas = make_sigmas(steps, ours, "karras")
    rows = []
    for task, solvers in TASKS.items():
        m, theirs_problem = problem(task, ground_truth(size, c, 0), dinv, device)
        for solver in solvers:
            for k in setup["ks"]:
                row = {"task": task, "solver": solver, "K": k, "steps": steps}
                side = "ours"
                try:
                    run_ours(m, ours, solver, 2, k, device)  # warm-up: kernels, autotuning, allocator
                    o = [run_ours(m, ours, solver, steps, k, device) for _ in range(setup["repeats"])]
                    _release(ours)
                    side = "deepinv"
                    run_theirs(dinv, theirs_net, theirs_problem, solver, 2, k, device, make_sigmas(2, ours))
                    t = [run_theirs(dinv, theirs_net, theirs_problem, solver, steps, k, device, sigmas)
                         for _ in range(setup["repeats"])]
                    so = statistics.median(r["seconds"] for r in o) / k
                    st = statistics.median(r["seconds"] for r in t) / k
                    row.update({
                        "ours_seconds_per_sample": so, "deepinv_seconds_per_sample": st, "ratio_ours_over_deepinv": so / st,
                        "ours_peak_bytes": max((r["peak_bytes"] or 0) for r in o) or None,
                        "deepinv_peak_bytes": max((r["peak_bytes"] or 0) for r in t) or None,
                        "ours_peak_allocated_bytes": max((r["peak_allocated_bytes"] or 0) for r in o) or None,
                        "deepinv_peak_allocated_bytes": max((r["peak_allocated_bytes"] or 0) for r in t) or None,
                        "ours_nfe_per_sample": o[0]["nfe"] / k,
                        "ours_fraction_of_hw_limit": floor_fraction(setup, solver, steps, k, so * k),
                        "deepinv_fraction_of_hw_limit": floor_fraction(setup, solver, steps, k, st * k),
                    })
                except Exception as err:
                    row["error"] = f"{side}: {type(err).__name__}: {err}"
                _release(ours)
                rows.append(row)
                print(_fmt_row(row), flush=True)
    return rows


def _fmt_row(r: dict) -> str:
    if "error" in r:
        return f"{r['task']:8s} {r['solver']:8s} K={r['K']}  ERROR {r['error'][:120]}"
    mib = lambda b: f"{b / 2**20:7.0f}" if b else "    n/a"  # noqa: E731
    frac = r["ours_fraction_of_hw_limit"]
    return (f"{r['task']:8s} {r['solver']:8s} K={r['K']}  ours {r['ours_seconds_per_sample']:8.3f} s/sample "
            f"deepinv {r['deepinv_seconds_per_sample']:8.3f}  ratio {r['ratio_ours_over_deepinv']:5.2f}  "
            f"peak MiB {mib(r['ours_peak_bytes'])} / {mib(r['deepinv_peak_bytes'])}  "
            f"hw {'n/a' if frac is None else f'{100 * frac:.0f}%'}")


#: agreement runs: (task, our solver, deepinv's variant, our params, our schedule). DiffPIR runs
#: deepinv's schedule (its quadratic subsequence of the DDPM table) and lambda 3.5 on our side:
#: deepinv's data step argmin (1 / (2 rho)) / 2 ||Ax - y||^2 + 1/2 ||x - x0||^2 in [0, 1] units, with
#: rho = lambda sigma_y^2 / sigma_t^2 there, is ours with twice that rho in [-1, 1] units, i.e. half the
#: lambda. DDRM is compared twice: deepinv as shipped, and with its noise level aligned. DPS on CT
#: takes zeta 0.3 in the aligned comparison: at zeta 1 it diverges on this projector (norm 86) on
#: both sides (Gaussian prior, 50 steps: 8.8 dB at zeta 1, 22.4 at 0.3, 23.6 at 0.1 on phantom 0),
#: and a diverging sampler turns any rounding difference into decibels.
AGREEMENT = (
    ("inpaint", "dps", "dps", {"zeta": 1.0}, "karras"),
    ("inpaint", "dps", "dps_step_aligned", {"zeta": 1.0}, "vp_sde"),
    ("inpaint", "ddrm", "ddrm", {"eta": 0.85, "eta_b": 1.0}, "karras"),
    ("inpaint", "ddrm", "ddrm_noise_aligned", {"eta": 0.85, "eta_b": 1.0}, "karras"),
    ("inpaint", "diffpir", "diffpir", {"lam": 3.5, "zeta": 0.3}, "vp_quadratic"),
    ("ct", "dps", "dps", {"zeta": 1.0}, "karras"),
    ("ct", "dps", "dps_step_aligned", {"zeta": 0.3}, "vp_sde"),
    ("ct", "diffpir", "diffpir", {"lam": 3.5, "zeta": 0.3}, "vp_quadratic"),
    ("ct", "diffpir", "diffpir_tight_cg", {"lam": 3.5, "zeta": 0.3}, "vp_quadratic"),
    ("ct", "diffpir", "diffpir_final_step", {"lam": 3.5, "zeta": 0.3}, "vp_quadratic"),
)
#: deepinv's variants in AGREEMENT, each once, in order.
AGREEMENT_VARIANTS = tuple(dict.fromkeys(v for _, _, v, _, _ in AGREEMENT))


def agreement_section(setup, dinv, FromOurs, Autocast, device) -> list[dict]:
    from diffrecon.priors import default_prior_folder, load_prior

    priors = [("gaussian", (1, setup["agree_size"], setup["agree_size"]))]
    if default_prior_folder() is not None:
        priors.insert(0, ("default", None))
    priors = [p for p in priors if p[0] in setup["agree_priors"]]
    steps, k = setup["agree_steps"], setup["agree_samples"]
    rows = []
    for name, shape in priors:
        den = load_prior(name, shape, device=device)
        # deepinv's DiffPIR clips every denoised estimate to [0, 1], whatever the prior; ours clips
        # bounded priors only. Equal settings: ours clips the (analytic, unbounded) Gaussian too.
        den.bounded = True
        net = Autocast(FromOurs(den), torch.bfloat16 if device.type == "cuda" else None).to(device)
        c, h, _ = den.image_shape
        sigmas = make_sigmas(steps, den, "karras")
        width = float(den.card.value_range[1] - den.card.value_range[0])
        first = setup.get("phantom_start", 0)
        for i in range(first, first + setup["phantoms"]):
            x = ground_truth(h, c, i)
            problems = {task: problem(task, x, dinv, device, seed=i, shared_ct=True) for task in TASKS}
            for task, solver, variant, params, schedule in AGREEMENT:
                if task not in setup["agree_tasks"] or variant not in setup["agree_variants"]:
                    continue
                m, theirs_problem = problems[task]
                row = {"prior": name, "phantom": int(TEST_SEEDS[i]), "task": task, "solver": solver,
                       "deepinv_variant": variant, "ours_params": params, "ours_schedule": schedule,
                       "steps": steps, "samples": k}
                try:
                    t0 = time.perf_counter()
                    mo = run_ours(m, den, solver, steps, k, device, seed=i, params=params, schedule=schedule)["mean"]
                    t1 = time.perf_counter()
                    mt = run_theirs(dinv, net, theirs_problem, variant, steps, k, device, sigmas, seed=i,
                                    range_width=width, zeta=params.get("zeta", PARAMS["dps"]["zeta"]))["mean"]
                    row.update({"psnr_ours": psnr(mo, x, 1.0), "psnr_deepinv": psnr(mt, x, 1.0),
                                "seconds_ours": t1 - t0, "seconds_deepinv": time.perf_counter() - t1})
                    row["difference_db"] = row["psnr_ours"] - row["psnr_deepinv"]
                    row["within_0.3dB"] = abs(row["difference_db"]) <= 0.3
                    print(f"agree {name:8s} {task:8s} {variant:18s} phantom {i}: ours {row['psnr_ours']:.2f} dB, "
                          f"deepinv {row['psnr_deepinv']:.2f} dB", flush=True)
                except Exception as err:
                    row["error"] = f"{type(err).__name__}: {err}"
                    print(f"agree {name} {task} {variant}: ERROR {row['error'][:160]}", flush=True)
                rows.append(row)
    return {"rows": rows, "summary": agreement_summary(rows)}


def agreement_summary(rows: list[dict]) -> list[dict]:
    """Mean difference (ours - deepinv) over phantoms per (prior, task, variant)."""
    groups: dict[tuple, list[float]] = {}
    for r in rows:
        if "difference_db" in r:
            groups.setdefault((r["prior"], r["task"], r["deepinv_variant"]), []).append(r["difference_db"])
    out = []
    for (prior, task, variant), diffs in groups.items():
        mean = statistics.fmean(diffs)
        se = statistics.stdev(diffs) / len(diffs) ** 0.5 if len(diffs) > 1 else float("nan")
        out.append({"prior": prior, "task": task, "deepinv_variant": variant, "phantoms": len(diffs),
                    "mean_difference_db": mean, "standard_error_db": se, "within_0.3dB": abs(mean) <= 0.3})
        print(f"agreement {prior:8s} {task:8s} {variant:18s} mean ours - deepinv {mean:+.2f} \u00b1 {se:.2f} dB "
              f"over {len(diffs)}", flush=True)
    return out


def merge_agreement(paths: list[Path], out: Path) -> int:
    """Join the agreement rows of reports from one device (e.g. phantom ranges run as parallel
    processes) into one report; a (prior, phantom, task, variant) row seen twice is an error."""
    reports = [json.loads(p.read_text()) for p in paths]
    devices = {r["device"] for r in reports}
    if len(devices) != 1:
        raise SystemExit(f"--merge-agreement: the reports come from different devices ({', '.join(sorted(devices))}); "
                         "merge reports of one device only")
    rows, seen = [], set()
    for path, r in zip(paths, reports):
        if not isinstance(r.get("agreement"), dict):
            raise SystemExit(f"--merge-agreement: {path} has no agreement section")
        for row in r["agreement"]["rows"]:
            key = (row["prior"], row["phantom"], row["task"], row["deepinv_variant"])
            if key in seen:
                raise SystemExit(f"--merge-agreement: {path} repeats {key}; give each report its own phantoms")
            seen.add(key)
            rows.append(row)
    merged = dict(reports[0])
    merged["merged_from"] = [p.name for p in paths]
    merged["settings"] = dict(merged["settings"], phantoms=len({r["phantom"] for r in rows}))
    merged["settings"].pop("phantom_start", None)
    merged["section_seconds"] = {"agreement": sum(r.get("section_seconds", {}).get("agreement", 0.0) for r in reports)}
    merged["total_seconds"] = max(r.get("total_seconds", 0.0) for r in reports)  # the processes ran side by side
    merged["agreement"] = {"rows": rows, "summary": agreement_summary(rows)}
    write_report(merged, out)
    print(f"wrote {out}", flush=True)
    return 0


def dps_1000_section(setup, ours, device, started: float, budget: float) -> dict:
    steps, k = setup["long_steps"], setup["ks"][-1]
    per_step = next((r["ours_seconds_per_sample"] * k / setup["steps"] for r in setup.get("timing_rows", [])
                     if r.get("solver") == "dps" and r.get("K") == k and "ours_seconds_per_sample" in r), None)
    predicted = per_step * steps if per_step else None
    left = budget - (time.perf_counter() - started)
    if predicted is not None and predicted > left:
        return {"skipped": f"predicted {predicted:.0f} s exceeds the {left:.0f} s left of --budget"}
    m, _ = problem("inpaint", ground_truth(setup["size"], setup["config"].in_channels, 0), None, device, ours_only=True)
    r = run_ours(m, ours, "dps", steps, k, device)
    out = {"steps": steps, "samples": k, "seconds_total": r["seconds"], "seconds_per_sample": r["seconds"] / k,
           "peak_bytes": r["peak_bytes"], "predicted_seconds": predicted,
           "fraction_of_hw_limit": floor_fraction(setup, "dps", steps, k, r["seconds"]),
           "reference": "about 300 s for one sample on an A100 (the DPS paper's setting)"}
    print(f"DPS {steps} steps x {k} samples: {r['seconds']:.1f} s total", flush=True)
    return out


def _timed_calls(fn, device, repeats: int) -> tuple[float, float]:
    """(first call seconds: recording or compiling included, median of the next calls)."""
    with Clock(device) as first:
        fn()
    fn()
    times = []
    for _ in range(repeats):
        with Clock(device) as clock:
            fn()
        times.append(clock.seconds)
    return first.seconds, statistics.median(times)


def acceleration_section(setup, nets, device, started: float, budget: float) -> list[dict]:
    """One network evaluation (plain, and with the gradient DPS takes) in each mode: eager,
    eager channels-last, CUDA graphs, torch.compile; gradient checkpointing for the gradient.
    bf16 autocast as in a run; seconds per call, first-call (set-up) seconds, peak memory, and
    the largest difference to the eager output."""
    rows = []
    variants = [("none", False, False), ("none", True, False), ("graphs", False, False),
                ("graphs", True, False), ("compile", False, False), ("none", False, True), ("graphs", False, True)]
    nets = [(name, den) for name, den in nets if name.split("_")[0] in setup.get("accel_nets", ("adm", "bundled"))]
    modes = setup.get("accel_modes", ("none", "graphs", "compile"))
    variants = [v for v in variants if v[0] in modes]
    for name, den in nets:
        c, h, w = den.image_shape
        for k in setup["accel_ks"]:
            g = torch.Generator(device).manual_seed(0)
            x = torch.randn(k, c, h, w, device=device, generator=g)
            sigma = torch.full((k,), 0.5, device=device)
            for grad in (False, True):
                ref = None
                for mode, cl, ckpt in variants:
                    if ckpt and not grad:
                        continue
                    row = {"network": name, "K": k, "gradient": grad, "mode": mode, "channels_last": cl,
                           "checkpointing": ckpt}
                    left = budget - (time.perf_counter() - started)
                    if left < 20 or (mode == "compile" and left < setup["compile_reserve"]):
                        row["skipped"] = "left out to keep the run inside its time budget (--budget)"
                        rows.append(row)
                        continue
                    try:
                        den.accelerate(mode, cl, ckpt)

                        def call():
                            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                                if not grad:
                                    with torch.no_grad():
                                        return den(x, sigma)
                                with torch.enable_grad():
                                    xi = x.detach().requires_grad_(True)
                                    out = den(xi, sigma)
                                    return torch.autograd.grad(out.square().sum(), xi)[0]

                        reset_peak(device)
                        first, per_call = _timed_calls(call, device, setup["repeats"] * 3)
                        value = call()
                        ref = value if ref is None else ref
                        row.update({"seconds_per_call": per_call, "first_call_seconds": first,
                                    "peak_bytes": peak(device),
                                    "max_abs_difference_to_eager": float((value - ref).abs().max()),
                                    "reference_max_abs": float(ref.abs().max())})
                    except Exception as err:
                        row["error"] = f"{type(err).__name__}: {err}"
                    finally:
                        if den.network_call is not None:
                            den.network_call.release()
                    rows.append(row)
                    print(_fmt_accel(row), flush=True)
        den.accelerate("graphs" if device.type == "cuda" else "none", False, False)  # the run default
    return rows


def _fmt_accel(r: dict) -> str:
    head = (f"{r['network']:12s} K={r['K']} {'grad' if r['gradient'] else 'plain'} {r['mode']:8s}"
            f"{' cl' if r['channels_last'] else '   '}{' ckpt' if r['checkpointing'] else '     '}")
    if "error" in r or "skipped" in r:
        return f"{head}  {r.get('error') or r.get('skipped')}"[:200]
    return (f"{head}  {1e3 * r['seconds_per_call']:8.2f} ms/call  first {r['first_call_seconds']:6.2f} s  "
            f"peak {(r['peak_bytes'] or 0) / 2**20:7.0f} MiB  diff {r['max_abs_difference_to_eager']:.2e}")


def planner_section(setup, nets, device) -> list[dict]:
    """engine.plan's predicted peak memory against the measured peak of the run that follows,
    over networks, solvers, K, precision and checkpointing. Target: within 15 %."""
    from diffrecon.engine import plan

    rows = []
    combos = [("dps", 8, "bf16", False), ("dps", 8, "fp32", False), ("dps", 8, "bf16", True),
              ("dps", 1, "bf16", False), ("ddrm", 8, "bf16", False), ("diffpir", 8, "bf16", False)]
    for name, den in nets:
        c, h, _ = den.image_shape
        m, _ = problem("inpaint", ground_truth(h, c, 0), None, device, ours_only=True)
        for solver, k, precision, ckpt in combos:
            row = {"network": name, "solver": solver, "K": k, "precision": precision, "checkpointing": ckpt}
            try:
                cfg = RunConfig(solver=solver, params=PARAMS[solver], steps=setup["plan_steps"], samples=k,
                                device=str(device), precision=precision, batch_size=k, keep_samples=0,
                                preview_interval=1.0, checkpointing=ckpt)
                if den.network_call is not None:
                    den.network_call.release()  # the probe records graphs, as a first run does
                reset_peak(device)
                predicted = plan(m, cfg, denoiser=den)
                if den.network_call is not None:
                    den.network_call.release()  # the run records its graphs again, as a first run does
                reset_peak(device)
                with Clock(device) as clock:
                    result = next(ev.result for ev in run(m, cfg, denoiser=den) if isinstance(ev, Finished))
                measured = peak_allocated(device)  # the planner predicts tensors, not allocator slack
                row.update({"predicted_peak_bytes": predicted.predicted_peak_bytes, "measured_peak_bytes": measured,
                            "predicted_seconds": predicted.predicted_seconds, "measured_seconds": result.metrics["seconds"],
                            "seconds_with_setup": clock.seconds})
                if predicted.predicted_peak_bytes and measured:
                    row["peak_ratio"] = predicted.predicted_peak_bytes / measured
                    row["within_15_percent"] = abs(row["peak_ratio"] - 1) <= 0.15
            except Exception as err:
                row["error"] = f"{type(err).__name__}: {err}"
            rows.append(row)
            if "error" in row:
                print(f"plan {name} {solver} K={k}: ERROR {row['error'][:160]}", flush=True)
            else:
                print(f"plan {name:12s} {solver:8s} K={k} {precision} {'ckpt' if ckpt else '    '}  predicted "
                      f"{(row['predicted_peak_bytes'] or 0) / 2**20:7.0f} MiB  measured {(measured or 0) / 2**20:7.0f} MiB  "
                      f"ratio {row.get('peak_ratio', float('nan')):.3f}", flush=True)
    return rows


# ------------------------------------------------------------------------------------ main
SECTIONS = ("matmul", "network", "timing", "agreement", "acceleration", "planner", "dps_1000")


def settings(args) -> dict:
    if args.smoke:  # CPU, tiny: checks every code path in a few minutes
        return {"preset": "ffhq_256", "size": 32, "steps": 2, "repeats": 1, "ks": (1, 2), "phantoms": 1,
                "agree_size": 32, "agree_steps": 3, "agree_samples": 2, "agree_priors": ("gaussian",),
                "agree_tasks": tuple(TASKS), "agree_variants": AGREEMENT_VARIANTS, "long_steps": 3, "plan_steps": 3, "compile_reserve": 0.0,
                "accel_ks": (2,)}
    return {"preset": "imagenet_256_uncond", "size": 256, "steps": args.steps, "repeats": args.repeats,
            "ks": (1, 8), "phantoms": args.phantoms, "phantom_start": args.phantom_start, "agree_size": 128, "agree_steps": args.agree_steps,
            "agree_samples": args.agree_samples, "agree_priors": tuple(args.agree_priors.split(",")),
            "agree_tasks": tuple(args.agree_tasks.split(",")),
            "agree_variants": tuple(args.agree_variants.split(",")), "long_steps": 1000,
            "plan_steps": 20, "compile_reserve": 150.0, "accel_ks": (8,),
            "accel_nets": tuple(args.accel_nets.split(",")), "accel_modes": tuple(args.accel_modes.split(","))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(os.environ.get("OUT", "."), "bench.json"))
    ap.add_argument("--smoke", action="store_true", help="CPU, 32x32, 2 steps, small ADM: a check of the script")
    ap.add_argument("--steps", type=int, default=20,
                    help="steps of the ours-vs-deepinv timing runs (equal on both sides; seconds per step are steady)")
    ap.add_argument("--agree-steps", type=int, default=50, help="steps of the PSNR agreement runs")
    ap.add_argument("--agree-samples", type=int, default=4, help="posterior samples per agreement run")
    ap.add_argument("--agree-priors", default="default,gaussian", help="priors of the agreement runs")
    ap.add_argument("--agree-tasks", default=",".join(TASKS), help="tasks of the agreement runs")
    ap.add_argument("--agree-variants", default=",".join(AGREEMENT_VARIANTS),
                    help="deepinv variants of the agreement runs")
    ap.add_argument("--phantoms", type=int, default=3, help="held-out phantoms of the agreement runs")
    ap.add_argument("--phantom-start", type=int, default=0,
                    help="index of the first held-out phantom (to split one agreement run over processes)")
    ap.add_argument("--merge-agreement", nargs="+", type=Path, metavar="JSON",
                    help="join the agreement rows of these reports into --out (summary recomputed) and exit")
    ap.add_argument("--device", choices=("auto", "cpu"), default="auto",
                    help="cpu runs the agreement section here (the other sections want a GPU)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--accel-nets", default="adm,bundled", help="networks of the acceleration section (adm, bundled)")
    ap.add_argument("--accel-modes", default="none,graphs,compile",
                    help="modes of the acceleration section (none: eager and channels-last; graphs; compile)")
    ap.add_argument("--budget", type=float, default=500.0,
                    help="seconds; torch.compile trials and the 1000-step run are left out past it")
    ap.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}")
    args = ap.parse_args(argv)
    if args.merge_agreement:
        return merge_agreement(args.merge_agreement, Path(args.out))
    chosen = [x for x in args.sections.split(",") if x]
    unknown = sorted(set(chosen) - set(SECTIONS))
    if unknown:
        ap.error(f"unknown sections {', '.join(unknown)}; valid: {', '.join(SECTIONS)}")
    started = time.perf_counter()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke and args.device == "auto" else "cpu")
    setup = settings(args)
    setup["config"] = getattr(ADMConfig, setup["preset"])()  # image_size fixes where attention sits
    report = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({_cpu_name()})",
              "torch": torch.__version__, "smoke": args.smoke, "sections": chosen,
              "settings": {k: v for k, v in setup.items() if k != "config"},
              "adm_config": dataclasses.asdict(setup["config"])}
    print(f"device {report['device']}, torch {torch.__version__}, settings {report['settings']}", flush=True)
    needs_deepinv = {"network", "timing", "agreement"} & set(chosen)
    dinv = import_deepinv(report) if needs_deepinv else None
    amp = torch.bfloat16 if device.type == "cuda" else None

    if "matmul" in chosen or "timing" in chosen or "dps_1000" in chosen:
        section(report, "matmul", out, matmul_rate, device, args.smoke)
        setup["matmul_rate"] = report["matmul"].get("flops_per_second")
    needs_adm = bool({"network", "timing", "dps_1000", "planner", "acceleration"} & set(chosen))
    ours = theirs_net = theirs = None
    if needs_adm:
        with tempfile.TemporaryDirectory() as tmp:
            ours = build_adm(setup, Path(tmp), device)
        # --smoke runs the 256 architecture on 32x32 images: the card must say so for the engine.
        ours.card = dataclasses.replace(ours.card, resolution=(setup["size"], setup["size"]))
        with torch.device("meta"):
            setup["flops_per_eval"] = count_flops(ADMUNet(setup["config"]), (1, setup["config"].in_channels,
                                                                             setup["size"], setup["size"]))
    if dinv is not None:
        Autocast, FromOurs = make_deepinv_wrappers(dinv)
        if needs_adm:
            theirs_net = dinv.models.DiffUNet(large_model=setup["preset"] == "imagenet_256_uncond", pretrained=None)
            state = theirs_net.state_dict()
            state.update(ours.network.state_dict())
            theirs_net.load_state_dict(state)
            theirs_net = theirs_net.to(device).eval().requires_grad_(False)
            theirs = Autocast(theirs_net, amp).to(device)
        if "network" in chosen:
            section(report, "network", out, network_section, setup, ours, theirs_net, device)
        if "timing" in chosen:
            section(report, "timing", out, timing_section, setup, dinv, ours, theirs, device)
            setup["timing_rows"] = report["timing"] if isinstance(report["timing"], list) else []
        if "agreement" in chosen:
            section(report, "agreement", out, agreement_section, setup, dinv, FromOurs, Autocast, device)
    nets = [(f"adm_{setup['size']}", ours)] if ours is not None else []
    from diffrecon.priors import default_prior_folder, load_prior

    if default_prior_folder() is not None and not args.smoke and needs_adm:
        nets.append(("bundled_128", load_prior("default", None, device=device)))
    if "dps_1000" in chosen:
        section(report, "dps_1000", out, dps_1000_section, setup, ours, device, started, args.budget)
    if "planner" in chosen:
        section(report, "planner", out, planner_section, setup, nets, device)
    if "acceleration" in chosen:
        section(report, "acceleration", out, acceleration_section, setup, nets, device, started, args.budget)
    report["total_seconds"] = time.perf_counter() - started
    write_report(report, out)
    print(f"total {report['total_seconds']:.0f} s; wrote {out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
