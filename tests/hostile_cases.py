"""Hostile inputs: tiny files and settings that claim huge sizes, carry nonsense values or hide
links, each paired with the diffrecon command line that reads it.

Used by tests/test_hostile_inputs.py (one subprocess per case under an address-space limit) and
by benchmarks/fuzz_hostile.py (the same cases plus random mutations, for minutes). Every file is a
few kilobytes: the size a file *declares* (a chunked dataset that was never written) is what the
readers must check before reading.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import h5py
import numpy as np

#: Address-space limit of each case's process: a reader that allocates what a header claims fails
#: the case (MemoryError) instead of exhausting the machine. Importing torch maps ~0.7 GB.
AS_LIMIT = 3 << 30
#: Largest resident set a refused case may reach (the interpreter with torch is ~0.3 GB).
RSS_LIMIT = 1 << 30


@dataclass
class Case:
    name: str
    make: Callable[[Path], list[str]]  # writes files into the folder, returns the CLI arguments
    expect: str = ""  # a word the one sentence must contain (the dataset or setting named)
    rc: int = 2  # 0: the input is usable and must be read without any note on stderr


def _demo(folder: Path, kind: str = "inpaint", size: int = 16) -> Path:
    from diffrecon.demo import make_demo
    from diffrecon.io import write_measurement

    path = folder / f"{kind}.h5"
    write_measurement(path, make_demo(kind, size=size, seed=0))
    return path


def _edit(path: Path, fn) -> Path:
    with h5py.File(path, "a") as f:
        fn(f)
    return path


def _params(f: h5py.File, **changes) -> None:
    p = json.loads(f["operator"].attrs["params"])
    p.update(changes)
    f["operator"].attrs["params"] = json.dumps(p)


def _replace(group: h5py.Group, name: str, **kw) -> None:
    if name in group:
        del group[name]
    group.create_dataset(name, **kw)


def _huge(group: h5py.Group, name: str, shape: tuple, dtype=np.float32) -> None:
    """A chunked dataset that declares ``shape`` but stores nothing (a few hundred bytes on disk)."""
    _replace(group, name, shape=shape, dtype=dtype, chunks=tuple(min(s, 64) for s in shape))


def _reconstruct(m: Path, folder: Path, *extra: str) -> list[str]:
    return ["reconstruct", str(m), "--out", str(folder / "r.h5"), "--steps", "2", "--samples", "1",
            "--prior", "gaussian", "--device", "cpu", *extra]


def _info(path: Path) -> list[str]:
    return ["info", str(path)]


# ------------------------------------------------------------------------------ class 2: sizes
def _measurement_bomb(kind: str, edit, expect: str, command=_info) -> Case:
    def make(folder: Path) -> list[str]:
        return command(_edit(_demo(folder, kind), edit)) if command is _info else \
            command(_edit(_demo(folder, kind), edit), folder)
    return Case(f"{kind}:{expect}", make, expect)


def _fastmri(folder: Path, shape=(1, 4, 32, 32)) -> Path:
    path = folder / "fastmri.h5"
    with h5py.File(path, "w") as f:
        _huge(f, "kspace", shape, np.complex64)
    return path


def _dxchange(folder: Path, shape=(90, 4, 32)) -> Path:
    path = folder / "dx.h5"
    with h5py.File(path, "w") as f:
        _huge(f.require_group("exchange"), "data", shape)
    return path


def _nxtomo(folder: Path, shape=(90, 4, 32)) -> Path:
    path = folder / "nx.h5"
    with h5py.File(path, "w") as f:
        e = f.create_group("entry")
        e.attrs["NX_class"] = "NXentry"
        det = e.create_group("instrument/detector")
        _huge(det, "data", shape)
        det.create_dataset("image_key", data=np.zeros(shape[0], np.int32))
        e.create_dataset("sample/rotation_angle", data=np.linspace(0, 180, shape[0]))
    return path


def _import(path: Path, folder: Path) -> list[str]:
    return ["import", str(path), "--out", str(folder / "m.h5")]


#: config.json of a tiny diffusers UNet2DModel (8x8, one channel), written without importing diffusers.
TINY_UNET = {"_class_name": "UNet2DModel", "sample_size": 8, "in_channels": 1, "out_channels": 1,
             "block_out_channels": [8, 8], "down_block_types": ["DownBlock2D", "DownBlock2D"],
             "up_block_types": ["UpBlock2D", "UpBlock2D"], "layers_per_block": 1, "norm_num_groups": 4}


def _card(folder: Path, **card_changes) -> Path:
    """A prior folder whose card or config is then edited; its weights file holds one tensor (every
    case is refused before the weights are matched to the network)."""
    import torch
    from safetensors.torch import save_file

    from diffrecon.priors import PriorCard

    prior = folder / "prior"
    prior.mkdir(exist_ok=True)
    card = PriorCard(name="tiny", resolution=(8, 8), channels=1, value_range=(0.0, 1.0), sigma_min=0.01,
                     sigma_max=80.0, schedule={"kind": "vp_linear", "beta_start": 1e-4, "beta_end": 0.02,
                                               "timesteps": 1000})
    (prior / "card.json").write_text(card.to_json())
    (prior / "config.json").write_text(json.dumps(TINY_UNET))
    save_file({"w": torch.zeros(1)}, str(prior / "diffusion_pytorch_model.safetensors"))
    for name, changes in card_changes.items():
        d = json.loads((prior / name).read_text())
        for key, value in changes.items():
            if isinstance(value, dict) and isinstance(d.get(key), dict):
                d[key].update(value)
            else:
                d[key] = value
        (prior / name).write_text(json.dumps(d))
    return prior


def _with_prior(prior_edit: dict, expect: str) -> Case:
    def make(folder: Path) -> list[str]:
        m = _demo(folder, "denoise", 8)
        prior = _card(folder, **prior_edit)
        return ["reconstruct", str(m), "--out", str(folder / "r.h5"), "--steps", "2", "--samples", "1",
                "--prior", str(prior), "--device", "cpu"]
    return Case(f"prior:{expect}:{json.dumps(prior_edit)[:40]}", make, expect)


def _train(folder: Path, *extra: str, data: str = "phantoms") -> list[str]:
    return ["train", "--data", data, "--out", str(folder / "trained"), "--steps", "1", "--batch-size", "2",
            "--size", "16", "--n-images", "8", "--channels", "8,8", "--layers-per-block", "1", "--device", "cpu",
            "--no-progress", *extra]


def _train_stack(folder: Path, shape=(8, 16, 16), edit=None) -> str:
    path = folder / "stack.h5"
    with h5py.File(path, "w") as f:
        if shape is None:
            f.create_dataset("images", data=np.random.default_rng(0).random((8, 16, 16), np.float32))
        else:
            _huge(f, "images", shape)
        if edit:
            edit(f, folder)
    return str(path)


def _train_case(name: str, expect: str, *extra: str, stack=None) -> Case:
    def make(folder: Path) -> list[str]:
        data = _train_stack(folder, **stack) if stack is not None else "phantoms"
        return _train(folder, *extra, data=data)
    return Case(f"train:{name}", make, expect)


def _simulate(folder: Path, *options: str, operator: str = "ct") -> list[str]:
    import tifffile

    tifffile.imwrite(folder / "x.tif", np.random.default_rng(0).random((16, 16), np.float32))
    out = ["simulate", str(folder / "x.tif"), "--operator", operator, "--noise", "0.01", "--out",
           str(folder / "m.h5")]
    for o in options:
        out += ["--option", o]
    return out


SIZE_CASES = [
    _measurement_bomb("inpaint", lambda f: _huge(f["operator"], "extra", (2**31,), np.float64), "/operator/extra",
                      _reconstruct),
    _measurement_bomb("inpaint", lambda f: _huge(f["measurement"], "ground_truth", (1, 2**15, 2**15)),
                      "ground_truth", _reconstruct),
    _measurement_bomb("ct", lambda f: _params(f, n_detectors=10**9), "n_detectors", _reconstruct),
    _measurement_bomb("ct", lambda f: _huge(f["operator"], "angles_deg", (10**8,), np.float64), "angles_deg",
                      _reconstruct),
    _measurement_bomb("rf", lambda f: _params(f, n_antennas=10**6), "n_antennas", _reconstruct),
    _measurement_bomb("rf", lambda f: _params(f, frequencies_hz=[1e9] * 100000), "frequencies_hz", _reconstruct),
    _measurement_bomb("denoise", lambda f: (f["operator"].attrs.__setitem__("kind", "matrix"),
                                            f["operator"].attrs.__setitem__("params", json.dumps(
                                                {"format": "csr", "shape": [10**9, 256]})),
                                            f["operator"].create_dataset("data", data=np.ones(1, np.float32)),
                                            f["operator"].create_dataset("indices", data=np.zeros(1, np.int64)),
                                            f["operator"].create_dataset("indptr", data=np.array([0, 1]))),
                      "shape", _reconstruct),
    Case("fastmri:huge slice", lambda d: _import(_fastmri(d, (1, 128, 4096, 4096)), d), "/kspace"),
    Case("fastmri:huge volume", lambda d: _import(_fastmri(d, (10**6, 128, 4096, 4096)), d), "/kspace"),
    Case("dxchange:huge", lambda d: _import(_dxchange(d, (100000, 4, 100000)), d), "/exchange/data"),
    Case("nxtomo:huge", lambda d: _import(_nxtomo(d, (100000, 4, 100000)), d), "data"),
    Case("reconstruct:--samples 1e9", lambda d: _reconstruct(_demo(d), d, "--samples", "1000000000"), "samples="),
    Case("reconstruct:--steps 1e9", lambda d: _reconstruct(_demo(d), d, "--steps", "1000000000"), "steps="),
    _with_prior({"card.json": {"schedule": {"timesteps": 10**12}}}, "timesteps"),
    _with_prior({"config.json": {"block_out_channels": [2**20, 2**20]}}, "config.json"),
    _with_prior({"config.json": {"layers_per_block": 10**7}}, "config.json"),
    Case("simulate:n_views=1e8", lambda d: _simulate(d, "n_views=100000000"), "n_views"),
    _train_case("--size 40000", "--size", "--size", "40000"),
    _train_case("stack 40000^2", "images", stack={"shape": (8, 40000, 40000)}),
    _train_case("stack beyond numpy's index range", "images", stack={"shape": (2**31, 2**31, 2**31)}),
    _train_case("stack within budget never written", "chunks never written", stack={"shape": (8, 4000, 4000)}),
    Case("dxchange:within budget never written", lambda d: _import(_dxchange(d, (3000, 2, 6000)), d),
         "chunks never written"),
    _train_case("--channels huge", "--channels", "--channels", "65536,65536"),
    _train_case("--layers-per-block huge", "--layers-per-block", "--layers-per-block", "1000000"),
]


# ------------------------------------------------------------------------------ class 5: tracebacks
def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def _checkpoint(folder: Path, edit) -> list[str]:
    """``train --resume`` of a checkpoint in ``folder/trained`` that ``edit`` then damages. The files
    have the layout of diffrecon.training.checkpoint; their weights do not fit the network, which
    is refused too (after the damage that ``edit`` adds, which must be found first)."""
    import torch
    from safetensors.torch import save_file

    ckpt = folder / "trained" / "checkpoint"
    ckpt.mkdir(parents=True)
    settings = {"size": 16, "channels": [8, 8], "layers_per_block": 1}
    (ckpt / "trainer.json").write_text(json.dumps({"format": 1, "step": 1, "loss_ema": 1.0, "log": [],
                                                   "settings": settings}))
    save_file({"model.w": torch.zeros(2), "ema.w": torch.zeros(2)}, str(ckpt / "weights.safetensors"))
    torch.save({"state": {}, "param_groups": []}, ckpt / "optimizer.pt")
    edit(ckpt)
    return _train(folder, "--resume", "--steps", "2")


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo unpickled > unpickled.txt",))


def _evil_optimizer(ckpt: Path) -> None:
    import torch

    torch.save({"state": {}, "param_groups": [], "x": _Evil()}, ckpt / "optimizer.pt")


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


TRACEBACK_CASES = [
    _measurement_bomb("inpaint", lambda f: _replace(f["measurement"], "y", data=h5py.Empty("f4")), "/measurement/y",
                      _reconstruct),
    Case("fastmri:null kspace", lambda d: _import(_fastmri_empty(d), d), "/kspace"),
    Case("dxchange:null theta", lambda d: _import(_edit(_dxchange(d), lambda f: f.create_dataset(
        "exchange/theta", data=h5py.Empty("f8"))), d), "/exchange/theta"),
    _measurement_bomb("ct", lambda f: f["operator"].attrs.__setitem__("params", _nested(100000)), "params",
                      _reconstruct),
    _measurement_bomb("ct", lambda f: f["operator"].attrs.__setitem__("params", '{"n_detectors": 1e400}'),
                      "n_detectors", _reconstruct),
    _measurement_bomb("ct", lambda f: f["operator"].attrs.__setitem__("params", '{"n_detectors": 1' + "0" * 5000 + "}"),
                      "params", _reconstruct),
    _measurement_bomb("rf", lambda f: _params(f, n_antennas=float("inf")), "rf", _reconstruct),
    _with_prior({"card.json": {"resolution": "abc"}}, "resolution"),
    _with_prior({"card.json": {"channels": float("nan")}}, "channels"),
    _with_prior({"card.json": {"sigma_min": -1}}, "sigma_min"),
    _with_prior({"card.json": {"value_range": [1, 0]}}, "value_range"),
    _with_prior({"card.json": {"schedule": {"timesteps": 0}}}, "timesteps"),
    _with_prior({"card.json": {"schedule": {"timesteps": "many"}}}, "timesteps"),
    _with_prior({"card.json": {"schedule": {"beta_start": float("nan")}}}, "beta_start"),
    _with_prior({"card.json": {"schedule": "linear"}}, "schedule"),
    _with_prior({"config.json": {"block_out_channels": "abc"}}, "block_out_channels"),
    _with_prior({"config.json": {"norm_num_groups": 0}}, "config.json"),
    _with_prior({"config.json": {"layers_per_block": 0}}, "layers_per_block"),
    _with_prior({"config.json": {"attention_head_dim": float("nan")}}, "config.json"),
    Case("seed:-1", lambda d: _reconstruct(_demo(d), d, "--seed", "-1"), "--seed"),
    Case("seed:2^64", lambda d: _reconstruct(_demo(d), d, "--seed", str(2**64)), "--seed"),
    Case("seed:demo -1", lambda d: ["demo", "inpaint", "--out", str(d / "m.h5"), "--seed", "-1"], "--seed"),
    _train_case("seed 2^64", "--seed", "--seed", str(2**64)),
    Case("train:damaged file", lambda d: (_truncate(Path(_train_stack(d, None)), 0.3),
                                          _train(d, data=str(d / "stack.h5")))[1], "stack.h5"),
    _train_case("null dataset", "images", "--dataset", "images", stack={"shape": None, "edit": lambda f, d: _replace(
        f, "images", data=h5py.Empty("f4"))}),
    Case("train:resume damaged state", lambda d: _checkpoint(d, lambda c: (c / "trainer.json").write_text('{"step": ')),
         "trainer.json"),
    Case("train:resume settings not a dict", lambda d: _checkpoint(d, lambda c: (c / "trainer.json").write_text(
        json.dumps({"step": 1, "loss_ema": 1.0, "log": [], "settings": [1]}))), "trainer.json"),
    Case("train:resume pickle", lambda d: _checkpoint(d, _evil_optimizer), "optimizer.pt"),
    Case("train:resume truncated weights", lambda d: _checkpoint(d, lambda c: _truncate(c / "weights.safetensors")),
         "checkpoint"),
]


def _fastmri_empty(folder: Path) -> Path:
    path = folder / "fastmri.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("kspace", data=h5py.Empty("c8"))
    return path


# ------------------------------------------------------------------------------ class 6: train's file rules
def _external_stack(kind: str):
    def edit(f: h5py.File, folder: Path) -> None:
        other = folder / "other.h5"
        with h5py.File(other, "w") as g:
            g.create_dataset("data", data=np.random.default_rng(0).random((8, 16, 16), np.float32))
        del f["images"]
        if kind == "link":
            f["images"] = h5py.ExternalLink(other.name, "/data")
        elif kind == "virtual":
            layout = h5py.VirtualLayout(shape=(8, 16, 16), dtype=np.float32)
            layout[...] = h5py.VirtualSource(other.name, "/data", shape=(8, 16, 16))
            f.create_virtual_dataset("images", layout)
        else:
            raw = folder / "raw.bin"
            np.random.default_rng(0).random((8, 16, 16)).astype(np.float32).tofile(raw)
            f.create_dataset("images", shape=(8, 16, 16), dtype=np.float32, external=[(raw.name, 0, 8 * 16 * 16 * 4)])
    return edit


def _calibrate_truths_case(kind: str) -> Case:
    def make(folder: Path) -> list[str]:
        stack = _train_stack(folder, None, edit=_external_stack(kind))
        return ["calibrate", str(_demo(folder, size=8)), "--truths", stack, "--dataset", "images", "--prior",
                "gaussian", "--solver", "diffpir", "--steps", "2", "--samples", "2", "--images", "2", "--device", "cpu"]
    return Case(f"calibrate:--truths {kind} data", make, "external" if kind != "virtual" else "virtual")


FILE_RULE_CASES = [
    _train_case(f"{kind} data", "external" if kind != "virtual" else "virtual",
                stack={"shape": None, "edit": _external_stack(kind)})
    for kind in ("link", "virtual", "raw")
] + [_calibrate_truths_case(kind) for kind in ("link", "virtual", "raw")]


# ------------------------------------------------------------------------------ class 8: nonsense settings
SETTING_CASES = [
    Case("simulate:kernel_std=nan", lambda d: _simulate(d, "kernel_std=nan", operator="deblur"), "std"),
    Case("simulate:coils=0", lambda d: _simulate(d, "coils=0", operator="mri"), "coils"),
    Case("simulate:coils=-3", lambda d: _simulate(d, "coils=-3", operator="mri"), "coils"),
    Case("simulate:--pixel-size nan", lambda d: _simulate(d) + ["--pixel-size", "nan"], "--pixel-size"),
    _measurement_bomb("ct", lambda f: _params(f, pixel_size=float("nan")), "pixel_size", _reconstruct),
    _measurement_bomb("rf", lambda f: _params(f, pixel_size_m=float("nan")), "pixel_size_m", _reconstruct),
    _measurement_bomb("ct", lambda f: _replace(f["operator"], "angles_deg",
                                               data=np.linspace(0, 180, 30) * (1 + 1j)), "complex", _reconstruct),
    _measurement_bomb("deblur", lambda f: _replace(f["operator"], "kernel", data=np.ones((3, 3)) * (1 + 1j)),
                      "complex", _reconstruct),
    _measurement_bomb("mri_multicoil", lambda f: _replace(f["operator"], "coil_maps",
                                                          data=np.zeros((0, 16, 16), np.complex64)), "coil",
                      _reconstruct),
]


# ------------------------------------------------------------------------------ class 11: plain messages
ESC = "\x1b[2J\x1b[31m"


def _escape_stack(f: h5py.File, folder: Path) -> None:
    f.create_dataset(f"a{ESC}b", data=np.zeros((8, 16, 16), np.float32))


def _bad_tag_tiff(folder: Path) -> list[str]:
    """A TIFF whose last tag has an invalid data type: tifffile logs an error and reads on."""
    import struct

    import tifffile

    path = folder / "x.tif"
    tifffile.imwrite(path, np.random.default_rng(0).random((16, 16), np.float32))
    raw = bytearray(path.read_bytes())
    ifd = struct.unpack("<I", raw[4:8])[0]
    n = struct.unpack("<H", raw[ifd:ifd + 2])[0]
    entry = ifd + 2 + 12 * (n - 1)
    raw[entry + 2:entry + 4] = struct.pack("<H", 2832)
    path.write_bytes(bytes(raw))
    return ["simulate", str(path), "--operator", "denoise", "--noise", "0.01", "--out", str(folder / "m.h5")]


MESSAGE_CASES = [
    Case("simulate:tiff with a bad tag", _bad_tag_tiff, "", rc=0),
    _train_case("control characters in names", "\\x1b", stack={"shape": None, "edit": _escape_stack}),
    _measurement_bomb("inpaint", lambda f: f["operator"].attrs.__setitem__("kind", f"ct{ESC}"), "\\x1b",
                      _reconstruct),
]



# ------------------------------------------------------------------------------ every registry entry
def _other_hdf5(folder: Path) -> Path:
    path = folder / "other.h5"
    with h5py.File(path, "w") as f:
        f["data"] = np.zeros((4, 4), np.float32)
    return path


def _not_hdf5(folder: Path) -> Path:
    path = folder / "notes.h5"
    path.write_text("not a measurement\n")
    return path


def _bad_value(option) -> str:
    """A value outside ``option``'s valid ones (a word for choices, below the range for numbers)."""
    if option.choices:
        return "bogus"
    if option.low is not None:
        return str(option.kind(option.low - 1))
    return "nan"


def _registry_cases() -> list[Case]:
    """Each registered import format given a file not in its layout, and each option of each
    simulated problem given a value outside its valid ones: one sentence naming the file or option."""
    from diffrecon.io.importers import import_formats
    from diffrecon.problems import PROBLEMS, simulate_names

    cases = []
    for fmt in import_formats():
        for make, name in ((_other_hdf5, "other.h5"), (_not_hdf5, "notes.h5")):
            cases.append(Case(f"import --format {fmt}:{name}",
                              lambda d, make=make, fmt=fmt: _import(make(d), d) + ["--format", fmt], name))
    for kind in simulate_names():
        for option in PROBLEMS[kind].options:
            setting = f"{option.name}={_bad_value(option)}"
            cases.append(Case(f"simulate:{kind} {setting}",
                              lambda d, kind=kind, setting=setting: _simulate(d, setting, operator=kind), option.name))
    return cases


def _simulate_file(path: Path, folder: Path) -> list[str]:
    return ["simulate", str(path), "--operator", "ct", "--noise", "0.01", "--out", str(folder / "m.h5")]


def _huge_image(fmt: str):
    def make(folder: Path) -> list[str]:
        sys.path.insert(0, str(Path(__file__).parent))
        import medical_files

        return _simulate_file(HUGE_IMAGES[fmt][0](medical_files, folder), folder)
    return make


#: For each image format in physical units, a small file declaring a huge image and the word the
#: refusal must contain; tests/test_dicom_nifti.py checks every such registered format has one.
HUGE_IMAGES = {
    "dicom": (lambda mf, d: mf.huge_dicom(d / "huge.dcm"), "65535"),
    "nifti": (lambda mf, d: mf.huge_nifti(d / "huge.nii"), "30000"),
}


def _dicom_folder_with_link(folder: Path) -> list[str]:
    sys.path.insert(0, str(Path(__file__).parent))
    import medical_files

    series = medical_files.write_series(folder / "series", n=3)
    (series / "elsewhere.dcm").symlink_to(medical_files.write_dicom(folder / "outside.dcm", np.zeros((16, 16))))
    return _simulate_file(series, folder)


def _image_cases() -> list[Case]:
    """Every image format in physical units given a file declaring a huge image, and a DICOM
    folder holding a link: one sentence, memory bounded."""
    try:
        import nibabel  # noqa: F401
        import pydicom  # noqa: F401
    except ImportError:
        return []
    return [Case(f"simulate:{fmt} declaring a huge image", _huge_image(fmt), word)
            for fmt, (_, word) in HUGE_IMAGES.items()] + [
        Case("simulate:dicom folder with a link", _dicom_folder_with_link, "elsewhere.dcm")]


REGISTRY_CASES = _registry_cases() + _image_cases()

ALL_CASES = SIZE_CASES + TRACEBACK_CASES + FILE_RULE_CASES + SETTING_CASES + MESSAGE_CASES + REGISTRY_CASES


# ------------------------------------------------------------------------------ running one case
@dataclass
class Outcome:
    rc: int
    stderr: str
    stdout: str
    max_rss: int  # bytes
    seconds: float

    @property
    def traceback(self) -> bool:
        return "Traceback (most recent call last)" in self.stderr + self.stdout


#: Runs each argv of the JSON list in sys.argv[1] through ``main`` and appends one JSON line per
#: command to sys.argv[2] as it finishes, so a crash or hang leaves the outcomes before it.
BATCH_CHILD = """
import contextlib, io, json, resource, sys, time, traceback
resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))
from diffrecon.cli import main
def peak_rss():
    # VmHWM is this process's own peak: ru_maxrss on Linux keeps the parent's across fork and exec
    try:
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
log = open(sys.argv[2], "a")
for argv in json.load(open(sys.argv[1])):
    try:  # reset the peak to the current size, so each command's peak is its own (Linux >= 4.0)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    err, std = io.StringIO(), io.StringIO()
    t0 = time.perf_counter()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(std):
        try:
            rc = main(argv)
        except BaseException:
            traceback.print_exc()
            rc = 99
    log.write(json.dumps(dict(rc=rc, stderr=err.getvalue()[-4000:], stdout=std.getvalue()[-2000:],
                              seconds=time.perf_counter() - t0, rss=peak_rss())) + "\\n")
    log.flush()
"""


def child_env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parents[1]), env.get("PYTHONPATH", "")])
    return env


def run_many(argvs: list[list[str]], folder: Path, timeout: float = 600.0, limit: int = AS_LIMIT) -> list[Outcome]:
    """Each ``diffrecon ARGV`` in turn in one fresh interpreter (torch is imported once) under an
    address-space limit; ``max_rss`` of an outcome is the process's peak after that command."""
    folder = Path(folder)
    (folder / "argvs.json").write_text(json.dumps(argvs))
    (folder / "outcomes.jsonl").write_text("")
    proc = subprocess.run([sys.executable, "-c", BATCH_CHILD.format(limit=limit), str(folder / "argvs.json"),
                           str(folder / "outcomes.jsonl")], cwd=folder, env=child_env(), capture_output=True,
                          text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"the case runner died (rc {proc.returncode}): {proc.stderr[-2000:]}")
    lines = (folder / "outcomes.jsonl").read_text().splitlines()
    return [Outcome(o["rc"], o["stderr"], o["stdout"], o["rss"], o["seconds"]) for o in map(json.loads, lines)]


def one_sentence(outcome: Outcome) -> str | None:
    """The one ``diffrecon:`` line on stderr, or None when stderr holds anything else."""
    lines = [ln for ln in outcome.stderr.splitlines() if ln.strip()]
    if len(lines) == 1 and lines[0].startswith("diffrecon"):
        return lines[0]
    return None


if __name__ == "__main__":  # python tests/hostile_cases.py [substring]: show each case's outcome
    import tempfile

    pick = sys.argv[1] if len(sys.argv) > 1 else ""
    base = Path(tempfile.mkdtemp(prefix="hostile-"))
    chosen = [c for c in ALL_CASES if pick in c.name]
    argvs = []
    for i, case in enumerate(chosen):
        (base / str(i)).mkdir()
        argvs.append(case.make(base / str(i)))
    for case, o in zip(chosen, run_many(argvs, base)):
        last = (o.stderr.strip().splitlines() or [""])[-1][:220]
        print(f"{case.name[:40]:<40} rc={o.rc:<4} rss={o.max_rss >> 20:>5} MiB {o.seconds:5.1f}s tb={o.traceback} | {last}")
    shutil.rmtree(base, ignore_errors=True)
