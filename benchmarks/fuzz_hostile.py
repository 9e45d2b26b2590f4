"""Fuzz every input format through the ``diffrecon`` command line for a while and count failures.

    python benchmarks/fuzz_hostile.py --minutes 5 [--seed 0] [--out benchmarks/results/fuzz_hostile.json]

Each iteration takes a small valid input of one format (measurement, result, fastMRI, Data
Exchange, NXtomo, prior folder, training stack, training image folder, training checkpoint, an
image to simulate from, command-line settings), applies one random mutation (those of
tests/test_fuzz_readers.py plus hostile ones: a dataset declared huge but never written, a null dataspace, control characters in
names, JSON values of the wrong type, NaN, huge numbers or deep nesting, random settings) and runs
the command that reads it. Commands run in batches, each batch in one fresh interpreter under an
address-space limit (3 GiB: importing torch maps ~0.7 GB of it).

Counted as failures: a traceback, a crash (the interpreter died by a signal), a hang (a batch over
its time limit), an exit code other than 0 (worked) and 2 (refused), a refusal that is not exactly
one line (a run that failed after it started may show its progress bar first), a control
character in the output, or a process whose peak resident memory passed 1 GB.
"""
from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
import hostile_cases as hc  # noqa: E402
from test_fuzz_readers import _BASE, mutate  # noqa: E402  (builds the small valid files)

from diffrecon.io.importers import SIMULATE_OPTIONS  # noqa: E402

RSS_LIMIT = 1 << 30
BATCH = 24
BATCH_TIMEOUT = 240.0

H5_MUTATIONS = ["delete", "dtype", "shape", "nan", "external", "virtual", "attr", "truncate", "bytes",
                "huge", "null", "name", "json"]
JSON_VALUES = [None, "x", -1, 0, 1e308, float("nan"), float("inf"), 10**30, [], {}, [[[[[[[[[[1]]]]]]]]]], True,
               "\x1b[2J", 2**63, -2**63, 0.5, [1e9] * 3]


def _huge_shape(rng: random.Random, ndim: int) -> tuple:
    return tuple(rng.choice([1, 7, 4096, 10**5, 10**7, 2**31]) for _ in range(max(ndim, 1)))


def hostile_mutate(path: Path, op: str, rng: random.Random) -> None:
    """The mutations test_fuzz_readers does not make: sizes, null dataspaces, names, JSON values."""
    with h5py.File(path, "a") as f:
        names: list[str] = []
        f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
        if not names:
            return
        name = rng.choice(names)
        ds = f[name]
        if op == "huge":
            shape = _huge_shape(rng, ds.ndim)
            dtype = ds.dtype if ds.dtype.kind in "fciu" else np.float32
            del f[name]
            f.create_dataset(name, shape=shape, dtype=dtype, chunks=tuple(min(s, 16) for s in shape))
        elif op == "null":
            dtype = ds.dtype if ds.dtype.kind in "fciu" else np.float32
            del f[name]
            f.create_dataset(name, data=h5py.Empty(dtype))
        elif op == "name":
            parent, leaf = ds.parent, name.rsplit("/", 1)[-1]
            parent.move(leaf, leaf + rng.choice(["\x1b[31m", "\x07", "\n", "\u202e", "\x00x"][:4]))
        elif op == "json":
            for obj in (f, *(f[n] for n in names), *(f[g] for g in ("operator", "measurement", "provenance")
                                                     if g in f)):
                for key in list(obj.attrs):
                    text = obj.attrs[key]
                    if isinstance(text, (str, bytes)) and str(text)[:1] in "{[":
                        try:
                            value = json.loads(text)
                        except ValueError:
                            continue
                        if isinstance(value, dict) and value:
                            value[rng.choice(list(value))] = rng.choice(JSON_VALUES)
                        obj.attrs[key] = json.dumps(value)
                        return


def _h5_case(layout: str, command, rng: random.Random, folder: Path) -> list[str]:
    path = folder / layout
    shutil.copyfile(_BASE / layout, path)
    op = rng.choice(H5_MUTATIONS)
    try:
        if op in ("huge", "null", "name", "json"):
            hostile_mutate(path, op, rng)
        else:
            mutate(path, op, rng.randrange(1000), tuple(rng.randrange(6) for _ in range(rng.randrange(5))),
                   rng.randrange(100), rng.random() * 0.999, rng.randbytes(rng.randrange(1, 64)))
    except (OSError, KeyError, TypeError, ValueError, RuntimeError):
        pass  # the mutation was impossible for this file; the file is read as it is
    return command(path, folder)


def _reconstruct(path: Path, folder: Path) -> list[str]:
    return ["reconstruct", str(path), "--out", str(folder / "r.h5"), "--steps", "2", "--samples", "1",
            "--prior", "gaussian", "--device", "cpu"]


def _info(path: Path, folder: Path) -> list[str]:
    return ["info", str(path)]


def _import(path: Path, folder: Path) -> list[str]:
    return ["import", str(path), "--out", str(folder / "m.h5")]


def _export(path: Path, folder: Path) -> list[str]:
    return ["export", str(path), "--what", random.choice(["mean", "std", "samples", "error"]), "--out",
            str(folder / "x.tif")]


def _stack(rng: random.Random, folder: Path) -> list[str]:
    path = folder / "stack.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("images", data=np.random.default_rng(rng.randrange(99)).random((8, 16, 16), np.float32))
    op = rng.choice(H5_MUTATIONS)
    try:
        if op in ("huge", "null", "name", "json"):
            hostile_mutate(path, op, rng)
        else:
            mutate(path, op, 0, tuple(rng.randrange(6) for _ in range(rng.randrange(5))), rng.randrange(100),
                   rng.random() * 0.999, rng.randbytes(rng.randrange(1, 64)))
    except (OSError, KeyError, TypeError, ValueError, RuntimeError):
        pass
    return hc._train(folder, data=str(path))


def _image_folder(rng: random.Random, folder: Path) -> list[str]:
    import tifffile
    from PIL import Image

    images = folder / "images"
    images.mkdir()
    for i in range(4):
        a = (np.random.default_rng(i).random((16, 16)) * 255).astype(np.uint8)
        if i % 2:
            Image.fromarray(a).save(images / f"{i}.png")
        else:
            tifffile.imwrite(images / f"{i}.tif", a)
    victim = images / rng.choice(["0.tif", "1.png"])
    raw = bytearray(victim.read_bytes())
    at = rng.randrange(len(raw))
    if rng.random() < 0.5:
        raw[at:at + 8] = rng.randbytes(8)
    else:
        raw = raw[:at]
    victim.write_bytes(bytes(raw))
    return hc._train(folder, data=str(images))


def _simulate_image(rng: random.Random, folder: Path) -> list[str]:
    import tifffile
    from PIL import Image

    a = (np.random.default_rng(rng.randrange(99)).random((16, 16)) * 255).astype(np.uint8)
    path = folder / rng.choice(["x.tif", "x.png"])
    if path.suffix == ".png":
        Image.fromarray(a).save(path)
    else:
        tifffile.imwrite(path, a)
    raw = bytearray(path.read_bytes())
    at = rng.randrange(len(raw))
    if rng.random() < 0.5:
        raw[at:at + rng.randrange(1, 9)] = rng.randbytes(rng.randrange(1, 9))
    else:
        raw = raw[:at]
    path.write_bytes(bytes(raw))
    return ["simulate", str(path), "--operator", rng.choice(list(SIMULATE_OPTIONS)), "--noise", "0.01", "--out",
            str(folder / "m.h5")]


def _prior(rng: random.Random, folder: Path) -> list[str]:
    which = rng.choice(["card.json", "config.json"])
    keys = (["name", "resolution", "channels", "value_range", "sigma_min", "sigma_max", "schedule"]
            if which == "card.json" else list(hc.TINY_UNET))
    key = rng.choice(keys)
    value = rng.choice(JSON_VALUES)
    if key == "schedule" and rng.random() < 0.7:
        value = {rng.choice(["timesteps", "beta_start", "beta_end", "kind"]): rng.choice(JSON_VALUES)}
    m = hc._demo(folder, "denoise", 8)
    prior = hc._card(folder, **{which: {key: value}})
    if rng.random() < 0.2:
        (prior / which).write_bytes(rng.randbytes(rng.randrange(1, 200)))
    return ["reconstruct", str(m), "--out", str(folder / "r.h5"), "--steps", "2", "--samples", "1",
            "--prior", str(prior), "--device", "cpu"]


def _checkpoint(rng: random.Random, folder: Path) -> list[str]:
    def edit(ckpt: Path) -> None:
        target = ckpt / rng.choice(["trainer.json", "weights.safetensors", "optimizer.pt"])
        raw = bytearray(target.read_bytes())
        if rng.random() < 0.5:
            raw = raw[: rng.randrange(len(raw))]
        else:
            at = rng.randrange(len(raw))
            raw[at:at + 4] = rng.randbytes(4)
        target.write_bytes(bytes(raw))
    return hc._checkpoint(folder, edit)


def _settings(rng: random.Random, folder: Path) -> list[str]:
    numbers = ["-1", "0", "1e9", "nan", "inf", "-inf", str(2**64), "1000000000", "abc", "2.5", "", "1e-300"]
    kind = rng.choice(["reconstruct", "simulate", "train", "demo", "import"])
    value = rng.choice(numbers)
    if kind == "reconstruct":
        flag = rng.choice(["--steps", "--samples", "--seed", "--batch-size", "--param"])
        extra = [flag, f"lam={value}" if flag == "--param" else value]
        return hc._reconstruct(hc._demo(folder), folder, *extra)
    if kind == "simulate":
        operator = rng.choice(list(SIMULATE_OPTIONS))
        options = SIMULATE_OPTIONS[operator]
        key = rng.choice(list(options) or ["n_views"])
        argv = hc._simulate(folder, f"{key}={value}", operator=operator)
        if rng.random() < 0.3:
            argv += [rng.choice(["--noise", "--pixel-size", "--seed"]), value]
        return argv
    if kind == "train":
        flag = rng.choice(["--size", "--steps", "--batch-size", "--lr", "--channels", "--layers-per-block",
                           "--n-images", "--seed", "--checkpoint-every"])
        return hc._train(folder, flag, value if flag != "--channels" else f"8,{value}")
    if kind == "demo":
        return ["demo", rng.choice(["ct", "mri", "rf", "inpaint"]), "--out", str(folder / "d.h5"),
                rng.choice(["--size", "--seed", "--noise"]), value]
    return ["import", str(_BASE / "fastmri_multi.h5"), "--out", str(folder / "m.h5"),
            rng.choice(["--slice", "--size", "--acceleration", "--center-fraction", "--seed"]), value]


FORMATS = {
    "measurement": lambda rng, d: _h5_case("measurement.h5", rng.choice([_reconstruct, _info]), rng, d),
    "result": lambda rng, d: _h5_case("result.h5", rng.choice([_info, _export, _reconstruct]), rng, d),
    "fastmri": lambda rng, d: _h5_case(rng.choice(["fastmri_multi.h5", "fastmri_single.h5"]), _import, rng, d),
    "dxchange": lambda rng, d: _h5_case("dxchange.h5", _import, rng, d),
    "nxtomo": lambda rng, d: _h5_case("nxtomo.h5", _import, rng, d),
    "training stack": _stack,
    "training images": _image_folder,
    "simulate image": _simulate_image,
    "prior folder": _prior,
    "checkpoint": _checkpoint,
    "settings": _settings,
}


def _one_sentence_after_progress(stderr: str) -> bool:
    """A refusal is one ``diffrecon`` line; a run that fails once started (diverged, out of memory
    at one sample) may show its plan and progress bar before that line, nothing else."""
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    if not lines or not lines[-1].startswith("diffrecon"):
        return False
    return all("step/s" in ln or "batch(es) of" in ln for ln in lines[:-1])


def judge(o: dict) -> str | None:
    """Why an outcome is a failure, or None."""
    text = o["stderr"] + o["stdout"]
    if "Traceback (most recent call last)" in text or o["rc"] == 99:
        return "traceback"
    if o["rc"] not in (0, 2):
        return f"exit {o['rc']}"
    if o["rc"] == 2 and not _one_sentence_after_progress(o["stderr"]):
        return "not one line"
    if any(ch in text for ch in "\x1b\x07\x00"):
        return "control character"
    if o["rss"] > RSS_LIMIT:
        return "memory"
    return None


def run_batch(cases: list[tuple[str, list[str]]], folder: Path) -> list[dict]:
    """Run the batch; a crash or hang ends the child: the case it was on is recorded as such and
    the rest run in a new child."""
    results: list[dict] = []
    while len(results) < len(cases):
        todo = cases[len(results):]
        argv_file, log_file = folder / f"argv{len(results)}.json", folder / f"log{len(results)}.jsonl"
        argv_file.write_text(json.dumps([a for _, a in todo]))
        log_file.write_text("")
        try:
            proc = subprocess.run([sys.executable, "-c", hc.BATCH_CHILD.format(limit=hc.AS_LIMIT), str(argv_file),
                                   str(log_file)], cwd=folder, env=hc.child_env(), capture_output=True, text=True,
                                  timeout=BATCH_TIMEOUT)
            rc, tail = proc.returncode, proc.stderr[-500:]
        except subprocess.TimeoutExpired:
            rc, tail = "hang", ""
        done = [json.loads(line) for line in log_file.read_text().splitlines() if line.strip()]
        results.extend(done)
        if len(results) < len(cases):  # the child died on the next case
            results.append(dict(rc=rc if rc == "hang" else f"crash {rc}", stderr=tail, stdout="", seconds=0, rss=0))
    return [dict(r, format=fmt, argv=argv) for r, (fmt, argv) in zip(results, cases)]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=5.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "fuzz_hostile.json")
    args = p.parse_args()
    rng = random.Random(args.seed)
    base = Path(tempfile.mkdtemp(prefix="diffrecon-fuzz-hostile-"))
    start = time.time()
    failures: list[dict] = []
    counts: dict[str, dict[str, int]] = {}
    total, max_rss, n_batch = 0, 0, 0
    try:
        while time.time() - start < args.minutes * 60:
            n_batch += 1
            batch_dir = base / str(n_batch)
            batch_dir.mkdir()
            cases = []
            for i in range(BATCH):
                fmt = rng.choice(list(FORMATS))
                case_dir = batch_dir / str(i)
                case_dir.mkdir()
                try:
                    cases.append((fmt, FORMATS[fmt](rng, case_dir)))
                except Exception as err:  # noqa: BLE001 - a generator that could not build its input
                    print(f"skipped a {fmt} input that could not be built: {err!r}", file=sys.stderr)
            for o in run_batch(cases, batch_dir):
                total += 1
                max_rss = max(max_rss, o["rss"])
                c = counts.setdefault(o["format"], {"cases": 0, "refused": 0, "worked": 0, "failed": 0,
                                                    "peak_rss_mib": 0.0})
                c["cases"] += 1
                if o["rss"] / 2**20 > c["peak_rss_mib"]:
                    c["peak_rss_mib"] = round(o["rss"] / 2**20, 1)
                    c["peak_rss_command"] = " ".join(o["argv"][:2])
                    c["peak_rss_output"] = (o["stderr"] + o["stdout"]).strip()[-300:]
                why = judge(o) if isinstance(o["rc"], int) else str(o["rc"])
                if why:
                    c["failed"] += 1
                    failures.append({"why": why, "format": o["format"], "argv": o["argv"],
                                     "output": (o["stderr"] + o["stdout"])[-1500:]})
                    print(f"FAIL {why} {o['format']}: {' '.join(o['argv'])[:160]}\n{(o['stderr'])[-600:]}",
                          file=sys.stderr)
                else:
                    c["refused" if o["rc"] == 2 else "worked"] += 1
            shutil.rmtree(batch_dir, ignore_errors=True)
            print(f"{time.time() - start:6.0f} s: {total} cases, {len(failures)} failures, "
                  f"peak RSS {max_rss / 2**20:.0f} MiB", flush=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    kinds = {}
    for f in failures:
        kinds[f["why"].split()[0]] = kinds.get(f["why"].split()[0], 0) + 1
    report = {"command": f"python benchmarks/fuzz_hostile.py --minutes {args.minutes:g} --seed {args.seed}",
              "seconds": round(time.time() - start, 1), "cases": total, "failures": len(failures),
              "tracebacks": kinds.get("traceback", 0), "crashes": kinds.get("crash", 0), "hangs": kinds.get("hang", 0),
              "peak_rss_mib": round(max_rss / 2**20, 1), "rss_limit_mib": RSS_LIMIT >> 20,
              "address_space_limit_gib": hc.AS_LIMIT / 2**30, "per_format": counts, "failure_examples": failures[:20]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(json.dumps({k: v for k, v in report.items() if k not in ("failure_examples",)}, indent=1))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
