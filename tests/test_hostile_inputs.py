"""Hostile inputs end in one sentence, never a traceback, and never grow the process.

Every case of tests/hostile_cases.py (a tiny file or a setting claiming huge sizes, nonsense
values, links to other files, control characters in names) is written here and run through the
``diffrecon`` command line in one child interpreter under an address-space limit (so a reader that
allocates what a header claims fails its case instead of exhausting the machine). Each must exit 2
with exactly one line on stderr that names the dataset or setting, no control character, and
the process must stay below RSS_LIMIT.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import hostile_cases as hc  # noqa: E402

from diffrecon.errors import InputError, printable  # noqa: E402
from diffrecon.limits import budget, check_bytes, format_bytes  # noqa: E402

CASES = hc.ALL_CASES


@pytest.fixture(scope="module")
def outcomes():
    base = Path(tempfile.mkdtemp(prefix="diffrecon-hostile-"))
    try:
        argvs = []
        for i, case in enumerate(CASES):
            folder = base / str(i)
            folder.mkdir()
            argvs.append(case.make(folder))
        yield dict(zip((c.name for c in CASES), hc.run_many(argvs, base)))
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_input_is_one_sentence_naming_it_with_bounded_memory(case, outcomes):
    o = outcomes[case.name]
    assert not o.traceback, o.stderr
    assert 0 < o.max_rss < hc.RSS_LIMIT, f"{o.max_rss >> 20} MiB"
    if case.rc == 0:  # usable input: read without library notes on stderr
        assert (o.rc, o.stderr) == (0, ""), o.stderr
        return
    line = hc.one_sentence(o)
    assert line is not None, f"expected one 'diffrecon' line on stderr, got: {o.stderr!r}"
    assert o.rc == 2, (o.rc, line)
    assert case.expect in line, line
    assert "\x1b" not in o.stderr + o.stdout


def test_no_hostile_input_ran_a_pickle(outcomes):
    # the pickled optimizer state would have written this file if it had been unpickled
    # (the runner's working folder is the cases' parent folder)
    assert not list(Path(tempfile.gettempdir()).glob("diffrecon-hostile-*/**/unpickled.txt"))
    line = hc.one_sentence(outcomes["train:resume pickle"])
    assert "weights_only" not in line and "False" not in line  # never advice to switch the protection off


# ------------------------------------------------------------------------------ budgets themselves
def test_budget_is_in_bytes_and_overridable(monkeypatch):
    limit = budget("array")
    check_bytes(limit, "exactly the budget", "array")  # at the limit: accepted
    with pytest.raises(InputError, match=r"more than the 256 MiB allowed for one array read from a file"):
        check_bytes(limit + 1, "one byte more", "array")
    monkeypatch.setenv("DIFFRECON_MAX_ARRAY_BYTES", "1e3")
    assert budget("array") == 1000
    with pytest.raises(InputError, match="1001 B, more than the 1000 B"):
        check_bytes(1001, "x", "array")
    monkeypatch.setenv("DIFFRECON_MAX_ARRAY_BYTES", "-5")
    with pytest.raises(InputError, match="DIFFRECON_MAX_ARRAY_BYTES"):
        budget("array")
    assert format_bytes(3 * 2**30) == "3 GiB"


def test_array_budget_counts_the_dtype_read_not_the_elements(tmp_path, monkeypatch):
    """The same element count passes as float32 and is refused when read as float64 (tomography
    importers read float64)."""
    from diffrecon.io.h5 import check_read

    path = tmp_path / "a.h5"
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("x", shape=(250, 1000), dtype=np.float32, chunks=(10, 10))
        monkeypatch.setenv("DIFFRECON_MAX_ARRAY_BYTES", str(1_000_000))
        check_read(ds, (), path)  # 250 000 x 4 bytes: at the limit
        with pytest.raises(InputError, match=r"dataset /x would take 1.91 MiB"):
            check_read(ds, (), path, np.float64)
        check_read(ds, np.s_[:, 3], path, np.float64)  # one column: 2 KB


def test_legitimate_inputs_pass_every_budget():
    """The demo of every kind and a default training run fit the budgets with room to spare."""
    from diffrecon.demo import DEMO_KINDS, make_demo
    from diffrecon.operators import build_operator
    from diffrecon.training.loop import TrainConfig

    for kind in DEMO_KINDS:
        build_operator(make_demo(kind, size=32, seed=0).operator)
    TrainConfig().validate()  # 20 000 phantoms of 128 x 128 and the default network


# ------------------------------------------------------------------------------ class 5, 11: engine
def test_cpu_out_of_memory_halves_the_batch_and_provenance_records_what_ran():
    """An allocation failure on the CPU halves the batch as on the GPU; the result's provenance
    lists the batches that actually ran, not the plan."""
    from diffrecon import engine
    from diffrecon.demo import make_demo
    from diffrecon.priors import load_prior

    measurement = make_demo("denoise", size=16, seed=0)
    prior = load_prior("gaussian", (1, 16, 16))
    forward = prior.forward

    def picky(x, sigma):
        if x.shape[0] > 2:
            raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory")
        return forward(x, sigma)

    prior.forward = picky
    config = engine.RunConfig(solver="diffpir", steps=3, samples=5, batch_size=5, device="cpu", seed=3,
                              prior_fit=False)  # its probe would call the picky prior outside the run's loop
    events = list(engine.run(measurement, config, denoiser=prior))
    logs = [e.message for e in events if isinstance(e, engine.Log)]
    result = [e.result for e in events if isinstance(e, engine.Finished)][0]
    assert any("Out of CPU memory with 5 samples per batch; going on with 2" in m for m in logs), logs
    assert result.complete and result.n_samples == 5
    assert result.provenance["batches"] == [2, 2, 1]


def test_seed_is_checked_before_the_run():
    from diffrecon import engine
    from diffrecon.demo import make_demo

    m = make_demo("denoise", size=16, seed=0)
    for seed in (-1, 2**64, 2**32):
        with pytest.raises(InputError, match="seed"):
            next(engine.run(m, engine.RunConfig(solver="diffpir", steps=2, samples=1, seed=seed, device="cpu",
                                                prior="gaussian")))


def test_locked_file_is_called_locked(tmp_path):
    """A file another program holds open for writing (HDF5 file locking) is reported as locked."""
    from diffrecon.io import describe

    path = tmp_path / "busy.h5"
    child = subprocess.Popen([sys.executable, "-c", (
        "import h5py, sys, time\n"
        f"f = h5py.File({str(path)!r}, 'w'); f['x'] = 1; f.flush()\n"
        "print('ready', flush=True); sys.stdin.read()\n")], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        with pytest.raises(InputError, match=r"is locked by another program") as err:
            describe(path)
        assert "damaged" not in str(err.value)
    finally:
        child.communicate("", timeout=30)
    assert "busy.h5" in describe(path)  # once it is closed the same file opens


def test_printable_escapes_control_characters_only():
    assert printable("a\x1b[31mb\u202e\tc d é") == "a\\x1b[31mb\\u202e\\tc d é"
