"""Property: every reader, given any mutation of a valid small file, returns or raises InputError.

Readers: the importers, read_measurement, read_result and describe (diffrecon info).

Mutations: delete a dataset, change its dtype or shape, insert NaN/Inf, add an external link or a
virtual dataset reading another file, change an attribute, truncate the file, overwrite bytes.
"""
from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).parent))
from test_importers import WRITERS, image  # noqa: E402

from diffrecon.errors import InputError  # noqa: E402
from diffrecon.io import describe, read_measurement, read_result, write_measurement, write_result  # noqa: E402
from diffrecon.measurement import Result  # noqa: E402
from diffrecon.io import importers  # noqa: E402
from diffrecon.io.importers import simulate  # noqa: E402
from diffrecon.operators import cartesian_mask  # noqa: E402

_BASE = Path(tempfile.mkdtemp(prefix="diffrecon-fuzz-"))
atexit.register(shutil.rmtree, _BASE, True)


#: Variants of a format's test file worth mutating separately (default: one file as the writer makes it).
VARIANTS = {"fastmri": {"multi": dict(coils=3, slices=2, mask=cartesian_mask((32, 32), 4, 0.25)),
                        "single": dict(coils=1, slices=2, string_attrs=True)}}


def _importer(fmt: str):
    def read(path):
        return importers.open(path, fmt)
    return read


def _build_bases() -> dict:
    files = {}
    for fmt in importers.import_formats():  # every registered format, each through its own reader
        for variant, kwargs in VARIANTS.get(fmt, {"": {}}).items():
            name = f"{fmt}_{variant}.h5" if variant else f"{fmt}.h5"
            WRITERS[fmt](_BASE / name, **kwargs)
            files[name] = _importer(fmt)
    measurement = simulate(image(16), "inpaint", noise=0.01)
    write_measurement(_BASE / "measurement.h5", measurement)
    shape = measurement.ground_truth.shape
    write_result(_BASE / "result.h5", Result(
        mean=np.full(shape, 0.5, np.float32), std=np.full(shape, 0.1, np.float32),
        samples=np.zeros((2, *shape), np.float32), n_samples=2, metrics={"psnr": 20.0},
        provenance={"solver": "dps", "params": {"zeta": 0.5}, "steps": 3}, units="a.u.",
        measurement=measurement))
    return files


IMPORTERS = _build_bases()
# The project's own formats go through the same property, and so does describe (diffrecon info),
# which reads any HDF5 file.
OWN_READERS = {"measurement.h5": (read_measurement, describe), "result.h5": (read_result, read_measurement, describe)}
DTYPES = [np.int8, np.uint16, np.float16, np.float64, np.complex64, np.bool_, "S4"]


def _datasets(f: h5py.File) -> list[str]:
    names: list[str] = []
    f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
    return names


def _replace(f: h5py.File, name: str, data) -> None:
    del f[name]
    f.create_dataset(name, data=data)


def mutate(path: Path, op: str, pick: int, shape: tuple, dtype_i: int, frac: float, data: bytes) -> None:
    if op in ("truncate", "bytes"):
        raw = bytearray(path.read_bytes())
        if op == "truncate":
            raw = raw[: int(len(raw) * frac)]
        else:
            at = int(len(raw) * frac)
            raw[at: at + len(data)] = data
        path.write_bytes(bytes(raw))
        return
    with h5py.File(path, "a") as f:
        names = _datasets(f)
        name = names[pick % len(names)]
        ds = f[name]
        if op == "delete":
            del f[name]
        elif op == "dtype":
            dt = DTYPES[dtype_i % len(DTYPES)]
            arr = ds[()]
            try:
                arr = np.asarray(arr).astype(dt)
            except (TypeError, ValueError):
                arr = np.zeros(ds.shape, dt)
            _replace(f, name, arr)
        elif op == "shape":
            _replace(f, name, np.ones(shape, ds.dtype if ds.dtype.kind in "fciub" else np.float32))
        elif op == "nan":
            arr = np.asarray(ds[()])
            if arr.dtype.kind in "fc" and arr.size:
                arr.reshape(-1)[pick % arr.size] = np.nan if dtype_i % 2 else np.inf
                _replace(f, name, arr)
        elif op == "external":
            parent = f[name].parent
            del f[name]
            parent[name.rsplit("/", 1)[-1]] = h5py.ExternalLink("elsewhere.h5", "/data")
        elif op == "virtual":
            layout = h5py.VirtualLayout(shape=ds.shape, dtype=ds.dtype)
            layout[...] = h5py.VirtualSource("elsewhere.h5", "/data", shape=ds.shape)
            del f[name]
            f.create_virtual_dataset(name, layout, fillvalue=0)
        elif op == "attr":
            target = f[name] if dtype_i % 2 else f[name].parent
            keys = list(target.attrs) or ["units"]
            target.attrs[keys[pick % len(keys)]] = [b"x", "rad?", np.nan, -3, np.zeros((2, 2))][dtype_i % 5]


# DIFFRECON_FUZZ_EXAMPLES raises the count for a longer hunt; no example database is written.
FUZZ = settings(max_examples=int(os.environ.get("DIFFRECON_FUZZ_EXAMPLES", "60")), deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])
MUTATIONS = dict(
    op=st.sampled_from(["delete", "dtype", "shape", "nan", "external", "virtual", "attr", "truncate", "bytes"]),
    pick=st.integers(0, 1000),
    shape=st.lists(st.integers(0, 5), min_size=0, max_size=4).map(tuple),
    dtype_i=st.integers(0, 100),
    frac=st.floats(0.0, 0.999),
    data=st.binary(min_size=1, max_size=64),
)


def check_reader(layout, op, pick, shape, dtype_i, frac, data, reader=None, base=None):
    """Mutate a copy of ``base / layout`` (default: this module's files) and read it with ``reader``:
    a result or one InputError sentence."""
    reader = reader or IMPORTERS[layout]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / layout
        shutil.copyfile((base or _BASE) / layout, path)
        try:
            mutate(path, op, pick, shape, dtype_i, frac, data)
        except (OSError, KeyError, TypeError, ValueError, RuntimeError):
            return  # the mutation itself was impossible for this file; nothing to read
        try:
            reader(path)
        except InputError as err:
            assert str(err).strip(), "an InputError must carry a sentence"
            assert "\n" not in str(err), f"an InputError is one line: {err}"


@FUZZ
@given(layout=st.sampled_from(sorted(IMPORTERS)), **MUTATIONS)
def test_mutated_import_files_import_or_raise_input_error(layout, op, pick, shape, dtype_i, frac, data):
    check_reader(layout, op, pick, shape, dtype_i, frac, data)


@FUZZ
@given(layout=st.sampled_from(sorted(OWN_READERS)), reader_i=st.integers(0, 2), **MUTATIONS)
def test_mutated_measurement_and_result_files_read_or_raise_input_error(layout, reader_i, op, pick, shape, dtype_i,
                                                                        frac, data):
    readers = OWN_READERS[layout]
    check_reader(layout, op, pick, shape, dtype_i, frac, data, readers[reader_i % len(readers)])
