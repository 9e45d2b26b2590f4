"""Pareto plots of quality_per_second.py's JSON: PSNR of the posterior mean against seconds and
against network evaluations (full-size equivalents), one panel pair per problem, one line per
solver through its budgets.

    python benchmarks/plot_quality_per_second.py RESULT.json [RESULT.json ...] --out FIGURE.png
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    runs, device = [], set()
    for path in a.results:
        record = json.loads(path.read_text())
        device.add(record["machine"].get("device", "?"))
        runs += [r for r in record["runs"] if r.get("psnr") is not None]
    problems = list(dict.fromkeys(r["problem"] for r in runs))
    solvers = list(dict.fromkeys(r["solver"] for r in runs))
    colours = dict(zip(solvers, plt.cm.tab10.colors))
    fig, axes = plt.subplots(len(problems), 2, figsize=(10, 2.8 * len(problems)), squeeze=False)
    for row, problem in enumerate(problems):
        for col, (key, label) in enumerate((("seconds", "seconds (4 samples)"),
                                            ("equivalent_nfe", "network evaluations per sample"))):
            ax = axes[row][col]
            for solver in solvers:
                pts = sorted((r[key] or r.get("nfe"), r["psnr"]) for r in runs
                             if r["problem"] == problem and r["solver"] == solver)
                if pts:
                    ax.plot(*zip(*pts), "o-", ms=3, color=colours[solver], label=solver)
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
            best = max(r["psnr"] for r in runs if r["problem"] == problem)
            ax.set_ylim(best - 15, best + 1)  # runs far below (DPS at few steps) leave the panel
            ax.set_xlabel(label)
            ax.set_ylabel("PSNR of the mean (dB)")
            ax.set_title(problem, fontsize=9)
            ax.grid(alpha=0.3)
    axes[0][1].legend(fontsize=7, ncol=2)
    fig.suptitle("Quality per second: " + ", ".join(sorted(device)), fontsize=10)
    fig.tight_layout()
    fig.savefig(a.out, dpi=110)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
