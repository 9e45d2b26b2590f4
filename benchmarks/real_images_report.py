"""Numbers from samples, tables, figures and merging for benchmarks/real_images.py (no solver runs here).

A row is ``{"image", "task", METHOD_KEY: entry, ...}``; an entry holds ``psnr`` (dB, peak = the
truth's range), ``ssim``, ``seconds``, ``coverage90_t``, ``ratio_quantiles`` (101 floats), the
prior-fit numbers, or ``error``. Baselines write ``tv_fair``/``tv_oracle`` and ``cg_fair``/
``cg_oracle``; every other key is a diffusion method.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from diffrecon.io.atomic import atomic_write

BASELINES = ("tv", "cg")  # the methods that use no prior

BASELINE_KEYS = ("tv_fair", "tv_oracle", "cg_fair", "cg_oracle")


def _entry(row: dict, key: str) -> dict:
    v = row.get(key)
    return v if isinstance(v, dict) else {}


def _psnr(row: dict, key: str) -> float | None:
    return _entry(row, key).get("psnr")


def diffusion_methods(rows: list[dict]) -> list[str]:
    """The diffusion method keys present in ``rows``, in first-seen order."""
    return list(dict.fromkeys(k for r in rows for k in r if k not in ("image", "task") and k not in BASELINE_KEYS))


# ----------------------------------------------------------------------------------- samples
def _t_factor(k: int, level: float = 0.9) -> float:
    from scipy.stats import t as student
    return float(student.ppf(0.5 + level / 2, k - 1) * math.sqrt(1 + 1 / k))


def t_coverage(samples: np.ndarray, gt: np.ndarray, level: float = 0.9) -> float | None:
    """Fraction of pixels in mean +- t_{K-1} sqrt(1 + 1/K) s (s: sample std, K samples)."""
    k = samples.shape[0]
    if k < 2:
        return None
    mean, s = samples.mean(0), samples.std(0, ddof=1)
    return float(np.mean(np.abs(gt - mean) <= _t_factor(k, level) * s))


def ratio_quantiles(samples: np.ndarray, gt: np.ndarray, level: float = 0.9) -> list[float] | None:
    """The 0, 1, ..., 100 % percentiles of r = |truth - mean| / (t_{K-1} sqrt(1 + 1/K) s) over the
    pixels (s: sample std with ddof 1, floored at 1e-12 of the truth's range): the fraction of
    r <= c is the coverage of the interval widened by the std factor c (c = 1: ``t_coverage``)."""
    k = samples.shape[0]
    if k < 2:
        return None
    mean, s = samples.mean(0), samples.std(0, ddof=1)
    floor = 1e-12 * max(float(np.ptp(gt)), 1e-30)
    r = np.abs(gt - mean) / (_t_factor(k, level) * np.maximum(s, floor))
    return [float(f"{v:.5g}") for v in np.percentile(r, np.arange(101))]  # 5 digits: the file stays small


# ------------------------------------------------------------------------- calibrated coverage
def calibrated_coverage(rows: list[dict], method: str, level: float = 90.0) -> dict[tuple[str, str], float | None]:
    """Coverage of ``method`` after a leave-one-image-out std calibration, per (image, task).

    For each row, the std factor c is the ``level`` % point of the pooled ratio
    r = |truth - mean| / (t s) of the *other* images with the same task, where the pool's quantile
    function is the average of theirs (``ratio_quantiles``, 0..100 %): an approximation of the
    quantile of the pooled pixels that weighs every image equally. The result is the held-out
    image's fraction of r <= c, interpolated linearly in its own 101 quantiles (0 below its
    minimum, 1 above its maximum). None where the row or all other images lack quantiles.
    """
    out: dict[tuple[str, str], float | None] = {}
    percent = np.arange(101, dtype=np.float64)
    for row in rows:
        q = _entry(row, method).get("ratio_quantiles")
        others = [_entry(r, method).get("ratio_quantiles") for r in rows
                  if r["task"] == row["task"] and r["image"] != row["image"]]
        others = [np.asarray(o, np.float64) for o in others if o is not None]
        if q is None or not others:
            out[(row["image"], row["task"])] = None
            continue
        c = float(np.interp(level, percent, np.mean(others, axis=0)))
        out[(row["image"], row["task"])] = float(np.interp(c, np.asarray(q, np.float64), percent / 100.0,
                                                           left=0.0, right=1.0))
    return out


# ------------------------------------------------------------------------------------ tables
def _ps(row: dict, key: str) -> str:
    v = _entry(row, key)
    if v.get("psnr") is not None:
        return f"{v['psnr']:.2f} / {v['ssim']:.3f}" if v.get("ssim") is not None else f"{v['psnr']:.2f}"
    return "error" if "error" in v else "-"


def _num(v, fmt: str = ".2f") -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)


def _best(row: dict, methods: list[str]) -> tuple[str, float] | None:
    scored = [(p, m) for m in methods if (p := _psnr(row, m)) is not None]
    return (max(scored)[1], max(scored)[0]) if scored else None


def main_table(rows: list[dict], methods: list[str]) -> str:
    cal = {m: calibrated_coverage(rows, m) for m in ("default", "default_noise")}
    head = ("| image | task | TV fair | TV oracle | CG fair | default | cov90 raw / calibrated | default from noise | "
            "cov90 raw / calibrated | best diffusion | prior fit before / after | warn |\n" + "|" + "---|" * 12 + "\n")
    lines = []
    for r in rows:
        d = _entry(r, "default")
        best = _best(r, methods)
        fit = (f"{_num(d.get('prior_fit'))} / {_num(d.get('prior_fit_after'))}"
               if d.get("prior_fit") is not None else "-")
        warn = "-" if d.get("prior_fit_warning") is None else ("yes" if d["prior_fit_warning"] else "no")
        cov = {m: f"{_num(_entry(r, m).get('coverage90_t'))} / {_num(cal[m][(r['image'], r['task'])])}" for m in cal}
        lines.append(f"| {r['image']} | {r['task']} | {_ps(r, 'tv_fair')} | {_ps(r, 'tv_oracle')} | {_ps(r, 'cg_fair')} | "
                     f"{_ps(r, 'default')} | {cov['default']} | {_ps(r, 'default_noise')} | {cov['default_noise']} | "
                     f"{f'{best[0]} {best[1]:.2f}' if best else '-'} | {fit} | {warn} |")
    return head + "\n".join(lines) + "\n"


def solver_table(rows: list[dict], methods: list[str]) -> str:
    head = "| image | task | " + " | ".join(methods) + " |\n|" + "---|" * (len(methods) + 2) + "\n"
    lines = []
    for r in rows:
        best, tv = _best(r, methods), _psnr(r, "tv_fair")
        cells = []
        for m in methods:
            p = _psnr(r, m)
            if p is None:
                cells.append("error" if "error" in _entry(r, m) else "-")
                continue
            text = f"{p:.2f}" + ("*" if tv is not None and p >= tv else "")
            cells.append(f"**{text}**" if best and m == best[0] else text)
        lines.append(f"| {r['image']} | {r['task']} | " + " | ".join(cells) + " |")
    return head + "\n".join(lines) + "\n"


def summary(rows: list[dict], methods: list[str]) -> str:
    lines = []
    for m in methods:
        pairs = [(p, _psnr(r, "tv_fair"), _psnr(r, "tv_oracle")) for r in rows if (p := _psnr(r, m)) is not None]
        fair = [(p, t) for p, t, _ in pairs if t is not None]
        oracle = [(p, o) for p, _, o in pairs if o is not None]
        secs = [s for r in rows if _psnr(r, m) is not None and (s := _entry(r, m).get("seconds")) is not None]
        errors = sum("error" in _entry(r, m) for r in rows)
        gap = lambda xs: f"{np.mean([p - b for p, b in xs]):+.2f} dB" if xs else "-"  # noqa: E731
        lines.append(f"- **{m}**: >= TV fair on {sum(p >= t for p, t in fair)} of {len(fair)} rows; mean gap to "
                     f"TV fair {gap(fair)}, to TV oracle {gap(oracle)}; mean {_num(np.mean(secs) if secs else None, '.1f')}"
                     f" s per run" + (f"; {errors} errors" if errors else ""))
    return "\n".join(lines) + "\n"


def markdown(rows: list[dict], settings: dict | None = None) -> str:
    """The main table, the per-solver table and the per-method summary of ``rows``."""
    s = settings or {}
    methods = diffusion_methods(rows)
    d = next((_entry(r, "default") for r in rows if "solver" in _entry(r, "default")), {})
    default = f"{d['solver']} at {d['steps']} steps" if d else "the fast preset"
    return (f"Prior: {s.get('prior', 'default')}; {s.get('samples', '?')} samples; NAME methods "
            f"{s.get('steps', '?')} steps, NAME_warm {s.get('warm_steps', '?')} steps; default: {default} (the fast "
            "preset) warm-started from TV as the front ends run it, default_noise: the same from noise. "
            "Cells: PSNR (dB, peak = the truth's range) / SSIM of the sample mean. cov90: fraction of pixels in the "
            "90 % t-interval of the samples; calibrated: std factor fitted on the other images of the task.\n\n"
            + main_table(rows, methods) + "\nPSNR (dB) of each diffusion method (bold: best of the row; *: >= TV fair)."
            "\n\n" + solver_table(rows, methods) + "\nSummary against TV fair (discrepancy weight) and TV oracle:\n\n"
            + summary(rows, methods))


# ------------------------------------------------------------------------------------- merge
def merge_rows(reports: list[dict]) -> list[dict]:
    """The reports' rows united by (image, task), the methods of each row united; a later entry
    replaces an earlier one unless it is an error and the earlier one is not."""
    rows: dict[tuple, dict] = {}
    for report in reports:
        for r in report["rows"]:
            row = rows.setdefault((r["image"], r["task"]), {"image": r["image"], "task": r["task"]})
            for key, v in r.items():
                if key in ("image", "task"):
                    continue
                if "error" not in v or key not in row or "error" in row[key]:
                    row[key] = v
    return list(rows.values())


def load(path: Path, prior: str) -> dict | None:
    """The result file at ``path`` to resume (None if there is none); SystemExit if another prior made it."""
    if not path.exists():
        return None
    report = json.loads(path.read_text())
    if report.get("settings", {}).get("prior") != prior:
        raise SystemExit(f"{path} was made with --prior {report.get('settings', {}).get('prior')!r}, not {prior!r}; "
                         "give the same --prior to resume it or another --out for a new evaluation.")
    return report


def _inline_lists(text: str) -> str:
    """JSON text with every list of numbers on one line (the quantiles would take 101 lines each)."""
    import re
    return re.sub(r"\[\s*(-?[\d.eE+-]+(?:,\s*-?[\d.eE+-]+)*)\s*\]",
                  lambda m: "[" + ", ".join(v.strip() for v in m.group(1).split(",")) + "]", text)


def save(out: Path, report: dict) -> None:
    """DIR/real_images.json and DIR/real_images.md of ``report``, each written atomically."""
    text = json.dumps(report, indent=1, default=float)
    text = _inline_lists(text)
    atomic_write(out / "real_images.json", lambda tmp: tmp.write_text(text))
    md = markdown(report["rows"], report["settings"])
    atomic_write(out / "real_images.md", lambda tmp: tmp.write_text(md))


def merge(paths: list[Path], out: Path) -> dict:
    """Unite the rows of several result files (by image and task; the methods of each row united,
    a later file's entry replacing an earlier error) and rewrite the JSON and the markdown."""
    reports = [json.loads(Path(p).read_text()) for p in paths]
    # baselines use no prior: a file of tv / cg runs alone merges with any prior's
    uses_prior = [r for r in reports if set(r.get("settings", {}).get("methods", [])) - set(BASELINES)]
    priors = {r.get("settings", {}).get("prior") for r in uses_prior}
    if len(priors) > 1:
        raise SystemExit(f"--merge: the files were made with different priors ({', '.join(map(str, priors))}); "
                         "merge only files of one --prior.")
    settings = dict((uses_prior or reports)[0]["settings"])
    settings["methods"] = list(dict.fromkeys(m for r in reports for m in r["settings"].get("methods", [])))
    names = [f"{Path(p).parent.name}/{Path(p).name}" for p in paths]  # the parts' folders, not machine paths
    settings["merged_from"] = names
    settings["devices"] = {n: r.get("device") for n, r in zip(names, reports)}  # baselines may run elsewhere
    merged = {"settings": settings, "device": (uses_prior or reports)[0].get("device"),
              "software_version": (uses_prior or reports)[0].get("software_version"), "rows": merge_rows(reports)}
    out.mkdir(parents=True, exist_ok=True)
    save(out, merged)
    return merged


# ------------------------------------------------------------------------------------ figure
def figure(path: Path, truth, tv, mean, std, samples, title: str, units: str, label: str = "default",
           spread: str = "unknown") -> None:
    """truth | TV (discrepancy) | LABEL mean | LABEL std (titled by what the spread is: posterior
    std, seed spread, ...) | up to two samples, each with a colour bar in ``units``; images share
    the truth's grey range."""
    from diffrecon.solvers.labels import TEXT, UNKNOWN
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    panels = [(truth, "truth"), (tv, "TV (discrepancy)"), (mean, f"{label} mean"),
              (std, f"{label} {TEXT.get(spread, TEXT[UNKNOWN])}")]
    panels += [(s, f"{label} sample {i + 1}") for i, s in enumerate(samples if samples is not None else [])]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.3 * len(panels), 3.4))
    lo, hi = float(truth.min()), float(truth.max())
    for ax, (img, name) in zip(np.atleast_1d(axes), panels):
        is_std = name == panels[3][1]
        im = ax.imshow(img, cmap="magma" if is_std else "gray", **({} if is_std else {"vmin": lo, "vmax": hi}))
        ax.set_title(f"{name} ({units})")
        ax.axis("off")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
    fig.suptitle(title)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=80))
    plt.close(fig)
