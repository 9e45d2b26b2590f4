"""The end of a run: metrics and the :class:`~diffrecon.measurement.Result` with its provenance
(the recipe that made it, plus what happened: device, batches, time, versions)."""
from __future__ import annotations

import numpy as np
import torch

from ..calibration import provenance_record
from ..measurement import Measurement, Result
from ..metrics import coverage, psnr, ssim, std_error_correlation
from ..operators.base import residual_norm
from ..runtime import device_name
from ..solvers.diagnostics import chain_metrics
from ..solvers.labels import UNKNOWN, Spread
from .loop import Outcome
from .normalization import Normalization
from .preparation import Setup, network_mode
from .budget import provenance as budget_provenance
from .presets import overridden


def final_step_spread(final_step: tuple[int, int]) -> Spread:
    """What the spread is when the batch in progress was finished early: not posterior samples."""
    return Spread(UNKNOWN, f"the samples in progress were finished by a final denoising step at step "
                           f"{final_step[0]} of {final_step[1]}; their spread is not a posterior std")


def build_result(measurement: Measurement, setup: Setup, outcome: Outcome, spread: Spread, calibration) -> Result:
    """The Result of a run that kept at least one sample (``outcome.stats.n >= 1``)."""
    norm, stats, counter = setup.norm, outcome.stats, outcome.counter
    mean = norm.to_physical(stats.mean.float().cpu().numpy())
    scale = calibration.scale if calibration is not None else 1.0
    std = scale * norm.scale * stats.std().float().cpu().numpy()
    metrics = compute_metrics(setup.op, measurement, mean, std, stats.n, norm)
    metrics.update({
        "nfe": float(counter.nfe), "equivalent_nfe": float(counter.equivalent), **evaluations_per_sample(counter, stats.n),
        "grad_evals": float(counter.grad), "operator_calls": float(counter.op_calls),
        "seconds": float(outcome.elapsed), "seconds_per_sample": float(outcome.elapsed) / max(stats.n, 1),
        "peak_memory_bytes": float(outcome.peak_bytes),  # this run's (RunMemory), not the process's
    })
    metrics.update(chain_metrics(outcome.traces))
    samples = np.stack(outcome.kept) if outcome.kept else None
    complete = not outcome.stopped and not outcome.lost and stats.n == setup.recipe.samples
    return Result(mean=mean, std=std, samples=samples, n_samples=stats.n, metrics=metrics,
                  provenance=provenance(setup, outcome, spread, calibration), std_is_posterior=spread.is_posterior,
                  spread=spread.kind, units=measurement.units, measurement=measurement, complete=complete)


def evaluations_per_sample(counter, samples: int) -> dict[str, float]:
    """Network evaluations per completed sample as counted (any level or size counts one), and
    their cost in full evaluations (a call at a quarter of the pixels, or of a level declared to
    cost a quarter, counts 0.25: :class:`~diffrecon.runtime.CountingDenoiser`)."""
    return {"nfe_per_sample": counter.nfe_finished / max(samples, 1),
            "equivalent_nfe_per_sample": counter.equivalent_finished / max(samples, 1)}


def provenance(setup: Setup, outcome: Outcome, spread: Spread, calibration) -> dict:
    """The recipe (:meth:`~diffrecon.engine.Recipe.to_dict`, with the prior that actually ran) and
    the record of the run. ``Recipe.from_provenance`` reads the recipe back."""
    from .. import __version__

    recipe, runtime = setup.recipe, setup.runtime
    card = getattr(setup.denoiser, "card", None)
    record = {
        **recipe.to_dict(), "samples_done": outcome.stats.n, "prior": setup.prior_name,
        "prior_card": card.to_json() if card is not None else "", "prior_hash": setup.prior_hash,
        "prior_size_mode": (getattr(setup.denoiser, "size_info", None) or {}).get("mode", "native")
        if setup.info.uses_prior else "",
        "precision": runtime.precision if setup.device.type == "cuda" else "fp32",
        "compile": network_mode(setup), "channels_last": setup.channels_last,
        "checkpointing": runtime.checkpointing, "device": device_name(setup.device), "batches": list(outcome.ran),
        "normalization": [setup.norm.scale, setup.norm.offset], "software_version": __version__,
        "torch_version": str(torch.__version__), "elapsed_seconds": float(outcome.elapsed),
        "started": outcome.started, "spread": spread.kind, "calibration": provenance_record(calibration),
        **evaluations_per_sample(outcome.counter, outcome.stats.n),
        **(setup.warm.provenance(setup.norm.scale) if setup.warm is not None else {"warm_start": "none"}),
    }
    record["preset_overridden"] = overridden(recipe)
    record.update(budget_provenance(setup.budget))
    if outcome.final_step is not None:
        record["final_denoising_step"] = f"{outcome.final_step[0]}/{outcome.final_step[1]}"
    divergence = outcome.guard.record(outcome.lost)
    if divergence:
        record["divergence"] = divergence
    return record


def compute_metrics(op, measurement: Measurement, mean: np.ndarray, std: np.ndarray, n: int,
                    norm: Normalization) -> dict[str, float]:
    """Residual against the noise level always; PSNR/SSIM/calibration with ground truth."""
    with torch.no_grad():
        x = torch.as_tensor(mean, device=op.device).unsqueeze(0).to(op.image_dtype)
        y = torch.as_tensor(np.asarray(measurement.y), device=op.device).to(op.meas_dtype).unsqueeze(0)
        res = float(residual_norm(op, x, y)[0])  # operator is linear: physical units directly
    dof = op.measurement_dof
    out = {"residual": res}
    sigma = float(measurement.noise_sigma)
    if sigma > 0:
        out["residual_ratio"] = res / (sigma * np.sqrt(dof))  # 1: consistent with the noise level
    gt = measurement.ground_truth
    if gt is not None:
        gt = np.asarray(gt, dtype=np.float64).reshape(mean.shape)
        rng = float(np.ptp(gt)) or 1.0
        out["psnr"] = psnr(mean, gt, rng)
        out["ssim"] = ssim(mean, gt, rng)
        out["nrmse"] = float(np.linalg.norm(mean - gt) / max(np.linalg.norm(gt), 1e-30))
        if n >= 2 and float(std.max()) > 0:
            out["coverage90"] = coverage(mean, std, gt, n, 0.9)
            out["std_error_corr"] = std_error_correlation(std, mean, gt)
    return out
