"""Convergence diagnostics of Markov chains: split-R-hat and the effective sample size.

Both follow Gelman et al., "Bayesian Data Analysis", 3rd ed. (2013), Sec. 11.4-11.5, with the
autocorrelation sum truncated by Geyer's initial monotone sequence (Geyer, Stat. Sci. 7, 1992), as
Stan computes them (Vehtari et al., Bayesian Analysis 16, 2021, Eq. 1-5, without the rank
normalisation). ``trace`` is ``(T, M, D)``: T iterations of M chains, D scalar summaries; each
function returns the worst value over the summaries (largest R-hat, smallest ESS).
"""
from __future__ import annotations

import numpy as np


def _split(trace: np.ndarray) -> np.ndarray:
    """Each chain's first and second half as two chains: ``(T // 2, 2 M, D)``."""
    half = trace.shape[0] // 2
    return np.concatenate([trace[:half], trace[trace.shape[0] - half:]], axis=1)


def _variances(chains: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Within-chain variance W and the pooled estimate var+ (BDA3 Eq. 11.2-11.3), per summary."""
    n = chains.shape[0]
    between = n * chains.mean(axis=0).var(axis=0, ddof=1)
    within = chains.var(axis=0, ddof=1).mean(axis=0)
    return within, (n - 1) / n * within + between / n


def split_rhat(trace: np.ndarray) -> float:
    """Largest split-R-hat over the summaries; about 1 for mixed chains, above 1.01 is suspect."""
    chains = _split(np.asarray(trace, dtype=np.float64))
    if chains.shape[0] < 2:
        return float("nan")
    within, var_plus = _variances(chains)
    return float(np.max(np.sqrt(var_plus / np.maximum(within, 1e-300))))


def effective_sample_size(trace: np.ndarray) -> float:
    """Smallest multi-chain effective sample size over the summaries (split chains)."""
    chains = _split(np.asarray(trace, dtype=np.float64))
    n, m, d = chains.shape
    if n < 4:
        return float("nan")
    centred = chains - chains.mean(axis=0)
    spec = np.fft.rfft(centred, n=2 * n, axis=0)
    acov = np.fft.irfft(spec * spec.conj(), axis=0)[:n] / n  # (n, m, d) autocovariance per chain
    within, var_plus = _variances(chains)
    rho = 1.0 - (within - acov.mean(axis=1)) / np.maximum(var_plus, 1e-300)  # (n, d)
    rho[0] = 1.0
    out = []
    for j in range(d):
        pairs = rho[: n - n % 2, j].reshape(-1, 2).sum(axis=1)  # Geyer's P_t = rho_2t + rho_2t+1
        positive = np.flatnonzero(pairs <= 0)
        pairs = pairs[: positive[0]] if positive.size else pairs
        pairs = np.minimum.accumulate(pairs)  # initial monotone sequence
        tau = -1.0 + 2.0 * pairs.sum()
        out.append(n * m / max(tau, 1.0 / np.log10(max(n * m, 10))))
    return float(min(out))


def chain_metrics(traces: list[np.ndarray]) -> dict[str, float]:
    """``split_rhat`` and ``ess`` over the chains of all batches (traces ``(T, M_b, D)`` joined on
    the chain axis); empty when no solver step reported a trace."""
    traces = [t for t in traces if t is not None and len(t)]
    if not traces or len({t.shape[0] for t in traces}) != 1:
        return {}
    joined = np.concatenate(traces, axis=1)
    return {"split_rhat": split_rhat(joined), "ess": effective_sample_size(joined),
            "chain_iterations": float(joined.shape[0])}
