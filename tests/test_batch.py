"""diffrecon batch: manifests, recipes, resuming, the summary table, the queue model, and Ray.

The Ray tests start one local runtime on the CPU (two workers) for the module, kill a worker in
the middle of a reconstruction, and check that the batch still completes with results equal bit
for bit to the sequential run's."""
import argparse
import dataclasses
import os
import sys
import threading

import numpy as np
import pytest

from diffrecon.batch import (CANCELLED, DONE, FAILED, SKIPPED, Item, read_manifest, recipe_from_result, recipe_hash,
                             run_manifest, run_task, split, with_overrides)
from diffrecon.cli.batch import add_batch_parser
from diffrecon.batch.queue import QUEUED, RUNNING, BatchQueue, FileEvent, QueueEvent
from diffrecon.batch.summary import read_h5
from diffrecon.demo import make_demo
from diffrecon.engine import RunConfig
from diffrecon.errors import InputError
from diffrecon.io import read_result, write_measurement

try:
    import ray
except ImportError:  # the ray extra is not installed
    ray = None

CONFIG = RunConfig(solver="diffpir", steps=4, samples=2, seed=3, prior="gaussian", device="cpu", prior_fit=False)
N_FILES = 4


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Four small demo measurements (different phantoms and operators)."""
    folder = tmp_path_factory.mktemp("inputs")
    for i, kind in enumerate(("deblur", "denoise", "inpaint", "deblur")[:N_FILES]):
        write_measurement(folder / f"m{i}.h5", make_demo(kind, size=16, seed=i))
    return folder


@pytest.fixture(scope="module")
def sequential_run(inputs, tmp_path_factory):
    """The reference: every input reconstructed in this process."""
    out = tmp_path_factory.mktemp("sequential")
    summary = run_manifest(read_manifest(inputs, out), CONFIG, out)
    return out, summary


def _arrays(path):
    r = read_result(path)
    return r.mean, r.std, r.samples


def _assert_same_results(out_a, out_b, names):
    for name in names:
        for a, b in zip(_arrays(out_a / name), _arrays(out_b / name)):
            assert a.dtype == b.dtype and np.array_equal(a, b), name


def _result_names(out):
    return sorted(p.name for p in out.glob("*.result.h5"))


# ------------------------------------------------------------------------------ manifests
def test_folder_glob_and_csv_manifests_list_the_inputs_in_a_stable_order(inputs, tmp_path):
    by_folder = read_manifest(inputs, tmp_path)
    assert [i.input.name for i in by_folder] == [f"m{k}.h5" for k in range(N_FILES)]
    assert [i.output for i in by_folder] == [tmp_path / f"m{k}.result.h5" for k in range(N_FILES)]
    assert [i.input for i in read_manifest(str(inputs / "m[12].h5"), tmp_path)] == [inputs / "m1.h5", inputs / "m2.h5"]
    csv = inputs.parent / "manifest.csv"
    csv.write_text(f"input,output,steps,param.lam\n{inputs.name}/m2.h5,two.h5,7,\n{inputs / 'm0.h5'},,,3.5\n")
    rows = read_manifest(csv, tmp_path)
    assert [r.input for r in rows] == [inputs / "m2.h5", inputs / "m0.h5"]  # relative to the manifest's folder
    assert rows[0].output == tmp_path / "two.h5" and rows[0].overrides == {"steps": 7}
    assert rows[1].output == tmp_path / "m0.result.h5" and rows[1].overrides == {"param.lam": "3.5"}


@pytest.mark.parametrize("text, words", [
    ("input,colour\na.h5,red\n", ["colour", "valid columns"]),
    ("file\na.h5\n", ["no 'input' column"]),
    ("input,steps\na.h5,many\n", ["line 2", "steps", "integer"]),
    ("input\na.h5\nsub/../a.h5\n", ["would both write"]),
    ("input\n", ["no rows"]),
])
def test_a_bad_manifest_is_one_sentence_naming_the_problem(tmp_path, text, words):
    (tmp_path / "m.csv").write_text(text)
    with pytest.raises(InputError) as err:
        read_manifest(tmp_path / "m.csv", tmp_path / "out")
    assert all(w in str(err.value) for w in words), str(err.value)


def test_parts_of_a_job_array_hold_each_input_exactly_once():
    items = [Item(i, f"f{i}", f"f{i}.h5", f"o{i}.h5") for i in range(11)]
    parts = [split(items, 3, k) for k in range(3)]
    assert sorted(i.index for p in parts for i in p) == list(range(11))
    assert [len(p) for p in parts] == [4, 4, 3]
    with pytest.raises(InputError, match="part_id"):
        split(items, 3, 3)


# ------------------------------------------------------------------------------ recipes
def test_the_recipe_hash_sees_what_changes_results_and_nothing_else():
    base = recipe_hash(CONFIG)
    assert recipe_hash(dataclasses.replace(CONFIG, device="cuda", precision="fp32", batch_size=1)) == base
    from diffrecon.solvers import get_solver
    default_lam = get_solver("diffpir").Params().lam
    assert recipe_hash(with_overrides(CONFIG, {"param.lam": str(default_lam)})) == base  # an explicit default
    assert recipe_hash(dataclasses.replace(CONFIG, steps=5)) != base
    assert recipe_hash(with_overrides(CONFIG, {"param.lam": str(default_lam * 2)})) != base
    with pytest.raises(InputError, match="no parameter"):
        with_overrides(CONFIG, {"param.zeta_typo": "1"})


def test_a_result_files_provenance_is_the_recipe_that_made_it(sequential_run):
    out, _ = sequential_run
    config = recipe_from_result(out / "m0.result.h5")
    assert recipe_hash(config) == recipe_hash(CONFIG)
    assert (config.solver, config.steps, config.samples, config.seed) == ("diffpir", 4, 2, 3)


# ------------------------------------------------------------------------------ sequential, resume, failures
def test_a_batch_writes_one_result_per_input_and_the_summary_table(sequential_run):
    out, summary = sequential_run
    assert summary.ok and summary.counts == {DONE: N_FILES}
    assert _result_names(out) == [f"m{k}.result.h5" for k in range(N_FILES)]
    table = read_h5(summary.h5)
    assert table["status"] == [DONE] * N_FILES and table["recipe_hash"] == [recipe_hash(CONFIG)] * N_FILES
    for k in range(N_FILES):
        result = read_result(out / f"m{k}.result.h5")
        assert table["metrics"]["psnr"][k] == result.metrics["psnr"]
        assert result.provenance["batch"]["recipe_hash"] == recipe_hash(CONFIG)
    lines = summary.csv.read_text().splitlines()
    assert len(lines) == N_FILES + 1 and "psnr" in lines[0].split(",") and all(",done," in row for row in lines[1:])
    assert all(s > 0 for s in table["wall_seconds"])


def test_resume_skips_finished_outputs_and_leaves_them_untouched(inputs, sequential_run):
    out, _ = sequential_run
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.glob("*.result.h5")}
    summary = run_manifest(read_manifest(inputs, out), CONFIG, out)
    assert summary.counts == {SKIPPED: N_FILES}
    assert {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.glob("*.result.h5")} == before
    assert read_h5(summary.h5)["metrics"]["psnr"].tolist() == [read_result(out / n).metrics["psnr"]
                                                                for n in sorted(before)]


def test_a_failed_input_is_recorded_and_the_others_go_on(inputs, tmp_path):
    bad = tmp_path / "in"
    bad.mkdir()
    (bad / "a.h5").write_bytes((inputs / "m0.h5").read_bytes())
    (bad / "b.h5").write_text("not an HDF5 file")
    (bad / "c.h5").write_bytes((inputs / "m1.h5").read_bytes())
    summary = run_manifest(read_manifest(bad, tmp_path / "out"), CONFIG, tmp_path / "out")
    assert [r.status for r in summary.records] == [DONE, FAILED, DONE] and not summary.ok
    assert "b.h5" in summary.records[1].error and not (tmp_path / "out" / "b.result.h5").exists()
    assert read_h5(summary.h5)["error"][1] == summary.records[1].error


def test_an_output_of_another_recipe_or_no_result_is_kept_unless_overwrite(inputs, sequential_run, tmp_path):
    out, _ = sequential_run
    target = tmp_path / "m0.result.h5"
    target.write_bytes((out / "m0.result.h5").read_bytes())
    item = [Item(0, "m0", inputs / "m0.h5", target)]
    other = dataclasses.replace(CONFIG, seed=4)
    first = run_manifest(item, other, tmp_path)
    assert first.records[0].status == FAILED and "exists" in first.records[0].error
    assert target.read_bytes() == (out / "m0.result.h5").read_bytes()
    other_file = tmp_path / "m1.result.h5"
    other_file.write_bytes((inputs / "m1.h5").read_bytes())  # a measurement, not a result
    kept = run_manifest([Item(1, "m1", inputs / "m1.h5", other_file)], CONFIG, tmp_path)
    assert kept.records[0].status == FAILED and "no readable result file" in kept.records[0].error
    assert other_file.read_bytes() == (inputs / "m1.h5").read_bytes()
    again = run_manifest(item, other, tmp_path, overwrite=True)
    assert again.records[0].status == DONE
    assert read_result(target).provenance["seed"] == 4


def test_an_incomplete_result_of_the_same_recipe_is_made_again(inputs, sequential_run, tmp_path):
    import h5py
    out, _ = sequential_run
    target = tmp_path / "m1.result.h5"
    target.write_bytes((out / "m1.result.h5").read_bytes())
    with h5py.File(target, "r+") as f:
        f["posterior"].attrs["complete"] = False
    summary = run_manifest([Item(1, "m1", inputs / "m1.h5", target)], CONFIG, tmp_path)
    assert summary.records[0].status == DONE and read_result(target).complete
    _assert_same_results(out, tmp_path, ["m1.result.h5"])


def test_per_input_overrides_change_only_their_row(inputs, tmp_path):
    csv = tmp_path / "m.csv"
    csv.write_text(f"input,steps\n{inputs / 'm0.h5'},6\n{inputs / 'm1.h5'},\n")
    summary = run_manifest(read_manifest(csv, tmp_path), CONFIG, tmp_path)
    a, b = (read_result(tmp_path / f"m{k}.result.h5").provenance for k in (0, 1))
    assert (a["steps"], b["steps"]) == (6, CONFIG.steps)
    assert summary.records[0].recipe_hash != summary.records[1].recipe_hash == recipe_hash(CONFIG)


def test_parts_of_a_job_array_together_give_the_whole_batch(inputs, sequential_run, tmp_path):
    from diffrecon.batch import summary_paths
    items = read_manifest(inputs, tmp_path)
    for part in range(2):
        s = run_manifest(split(items, 2, part), CONFIG, tmp_path, summary=summary_paths(tmp_path, 2, part))
        assert s.counts == {DONE: N_FILES // 2} and s.csv.name == f"batch_summary.part{part}-of-2.csv"
    whole = run_manifest(items, CONFIG, tmp_path)  # after the array: the whole table, nothing run again
    assert whole.counts == {SKIPPED: N_FILES}
    _assert_same_results(sequential_run[0], tmp_path, _result_names(tmp_path))


# ------------------------------------------------------------------------------ the command
def _command(argv):
    parser = argparse.ArgumentParser(prog="diffrecon")
    add_batch_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["batch", *map(str, argv)])
    return args.func(args)


def test_the_command_runs_a_folder_then_resumes_and_reuses_a_results_recipe(inputs, sequential_run, tmp_path, capsys):
    out, pattern, recipe = tmp_path / "out", str(inputs / "m[01].h5"), sequential_run[0] / "m0.result.h5"
    assert _command([pattern, "--out", out, "--recipe", recipe, "--device", "cpu"]) == 0
    assert _result_names(out) == ["m0.result.h5", "m1.result.h5"]
    _assert_same_results(sequential_run[0], out, _result_names(out))
    assert _command([pattern, "--out", out, "--recipe", recipe]) == 0
    err = capsys.readouterr().err
    assert "[2/2] m1: done" in err and "2 of 2 input(s) finished before" in err
    assert _command([pattern, "--out", out, "--recipe", recipe, "--steps", "5"]) == 1  # kept: another recipe


def test_the_command_refuses_bad_settings_before_any_work(inputs, tmp_path):
    with pytest.raises(InputError, match="part_id"):
        _command([inputs, "--out", tmp_path, "--num-parts", "2", "--part-id", "2"])
    with pytest.raises(InputError, match="no parameter"):
        _command([inputs, "--out", tmp_path, "--param", "nope=1"])
    with pytest.raises(InputError, match="does not exist"):
        _command([tmp_path / "missing", "--out", tmp_path])
    assert not list(tmp_path.glob("*.h5"))


def test_the_batch_command_shares_the_run_options_checks(inputs, tmp_path, capsys):
    """Through ``diffrecon batch``: the shared run options refuse bad values in one line, exit 2."""
    from diffrecon.cli import main

    for flag, value in (("--device", "gpu"), ("--steps", "0"), ("--workers", "0"), ("--part-id", "-1")):
        assert main(["batch", str(inputs), "--out", str(tmp_path), flag, value]) == 2
        err = capsys.readouterr().err.strip()
        assert flag in err and value in err and len(err.splitlines()) == 1, err
    assert not list(tmp_path.glob("*.h5"))


# ------------------------------------------------------------------------------ the queue model
def test_the_queue_reports_each_file_and_pauses_after_the_file_in_progress(inputs, tmp_path):
    queue = BatchQueue(read_manifest(inputs, tmp_path), CONFIG, tmp_path)
    events, paused_with = [], []

    def on_event(event):
        events.append(event)
        if isinstance(event, FileEvent) and event.index == 0 and event.state == RUNNING and event.fraction == 0:
            queue.pause()  # while the first file runs
        if isinstance(event, QueueEvent) and event.state == "paused" and event.progress.done == 1:
            paused_with.append(sorted(p.name for p in tmp_path.glob("*.result.h5")))
            queue.resume()
    queue.subscribe(on_event)
    assert [f.state for f in queue.files()] == [QUEUED] * N_FILES
    summary = queue.run()
    assert paused_with == [["m0.result.h5"]]  # paused after the first file, before the second
    assert summary.counts == {DONE: N_FILES} and queue.state == "finished"
    for k in range(N_FILES):
        states = [e.state for e in events if isinstance(e, FileEvent) and e.index == k]
        assert states[0] == RUNNING and states[-1] == DONE and set(states[1:-1]) <= {RUNNING}
    assert [f.fraction for f in queue.files()] == [1.0] * N_FILES


def test_cancel_stops_the_running_file_and_the_rest_and_writes_nothing_for_them(inputs, tmp_path):
    config = dataclasses.replace(CONFIG, steps=200, preview_interval=0.0)
    items = read_manifest(inputs, tmp_path)
    items[0] = dataclasses.replace(items[0], overrides={"steps": 4})  # a short first file, then a long one
    queue = BatchQueue(items, config, tmp_path)

    def on_event(event):
        if isinstance(event, FileEvent) and event.index == 1 and event.state == RUNNING and event.fraction > 0:
            queue.cancel()
    queue.subscribe(on_event)
    summary = queue.run()
    assert [r.status for r in summary.records] == [DONE, CANCELLED, CANCELLED, CANCELLED]
    assert _result_names(tmp_path) == ["m0.result.h5"] and queue.state == "cancelled"
    assert read_h5(summary.h5)["status"] == [DONE, CANCELLED, CANCELLED, CANCELLED]


def test_files_added_while_the_queue_runs_are_run_too(inputs, tmp_path):
    items = read_manifest(inputs, tmp_path)
    queue = BatchQueue(items[:1], CONFIG, tmp_path)

    def on_event(event):
        if isinstance(event, FileEvent) and event.index == 0 and event.state == RUNNING and event.fraction == 0:
            added.extend(queue.add(items[1:3]))
    added = []
    queue.subscribe(on_event)
    summary = queue.run()
    assert [a.index for a in added] == [1, 2] and summary.counts == {DONE: 3}
    assert _result_names(tmp_path) == ["m0.result.h5", "m1.result.h5", "m2.result.h5"]
    with pytest.raises(InputError, match="already queued"):
        queue.add(items[:1])


def test_a_stopped_task_writes_nothing(inputs, tmp_path):
    from diffrecon.batch import plan
    stop = threading.Event()
    stop.set()
    record = run_task(plan(read_manifest(inputs, tmp_path)[0], CONFIG), stop)
    assert record.status == CANCELLED and not list(tmp_path.iterdir())


# ------------------------------------------------------------------------------ Ray
needs_ray = pytest.mark.skipif(ray is None and not os.environ.get("CI"),
                               reason="Ray is not installed (pip install 'diffrecon[ray]'); CI installs it")


@pytest.fixture(scope="module")
def ray_runtime():
    assert ray is not None, "CI must run the Ray tests: install the test extra, which includes ray"
    from ray import cloudpickle
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers do not import the tests
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=80 * 2**20, logging_level="warning",
             runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(sys.path)}})
    yield ray
    ray.shutdown()


def _crashing_once(marker_folder):
    """The task body, except that the first attempt at input 1 kills its worker process in the
    middle of the reconstruction (after the first progress event)."""
    def body(task):
        def on_event(event):
            from diffrecon.engine import Progress
            marker = marker_folder / f"crashed-{task.item.index}"
            if task.item.index == 1 and isinstance(event, Progress) and not marker.exists():
                marker.write_text(str(os.getpid()))
                os._exit(1)
        return run_task(task, None, on_event)
    return body


@needs_ray
def test_ray_survives_a_killed_worker_and_equals_the_sequential_run_bit_for_bit(
        ray_runtime, inputs, sequential_run, tmp_path):
    out = tmp_path / "out"
    summary = run_manifest(read_manifest(inputs, out), CONFIG, out, executor="ray",
                           ray_function=_crashing_once(tmp_path))
    assert (tmp_path / "crashed-1").exists()  # a worker did die mid-run
    assert summary.counts == {DONE: N_FILES}, summary.records
    assert ray.is_initialized()  # a runtime it did not start is left running
    _assert_same_results(sequential_run[0], out, _result_names(sequential_run[0]))
    assert read_h5(summary.h5)["metrics"]["psnr"].tolist() == read_h5(sequential_run[1].h5)["metrics"]["psnr"].tolist()

    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.glob("*.result.h5")}
    again = run_manifest(read_manifest(inputs, out), CONFIG, out, executor="ray")
    assert again.counts == {SKIPPED: N_FILES}
    assert {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.glob("*.result.h5")} == before


@needs_ray
def test_ray_records_an_input_whose_worker_always_dies_and_finishes_the_others(ray_runtime, inputs, tmp_path):
    def body(task):
        if task.item.index == 2:
            os._exit(1)
        return run_task(task)
    from diffrecon.batch.executors import ray_tasks
    from diffrecon.batch import plan
    tasks = [plan(item, CONFIG) for item in read_manifest(inputs, tmp_path)]
    records = sorted(ray_tasks(tasks, max_retries=1, function=body), key=lambda r: r.index)
    assert [r.status for r in records] == [DONE, DONE, FAILED, DONE]
    assert "after 1 retries" in records[2].error


def test_the_batch_package_imports_neither_qt_nor_ray():
    """The queue model is for a window but Qt-free; Ray is imported only when a Ray batch runs."""
    import subprocess
    code = ("import sys, diffrecon.batch, diffrecon.batch.queue, diffrecon.cli.batch\n"
            "bad = [m for m in sys.modules if m.split('.')[0] in ('PySide6', 'pyqtgraph', 'shiboken6', 'ray')]\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True)
