"""Regenerate the screenshots in this folder (the README shows them).

    xvfb-run -a -s "-screen 0 1600x1000x24" python docs/screenshots/make_screenshots.py [NAME ...]

Runs on the CPU in a few minutes (``first_run`` waits for the bundled prior's time probe, about
20 s; ``import_formats`` writes, opens and reconstructs five small files in about 40 s). Reconstructions use the exact Gaussian prior so the pictures do not depend on the
machine's speed, except ``first_run``, which shows what ``python main.py`` shows: the bundled
prior, its predicted time, and the progress bar's ETA a few seconds into the run.
"""
from __future__ import annotations

import sys
import shutil
import tempfile
import time
from pathlib import Path

from PySide6 import QtCore, QtWidgets

from diffrecon.compare import CompareSpec
from diffrecon.demo import demo_path
from diffrecon.engine import RunConfig
from diffrecon.gui.app import save_screenshot
from diffrecon.gui.main_window import MainWindow

HERE = Path(__file__).resolve().parent
GAUSSIAN = RunConfig(solver="dps", steps=20, samples=8, seed=0, prior="gaussian", device="cpu")


def _settle(app, ms: int = 300) -> None:
    end = time.monotonic() + ms / 1000
    while time.monotonic() < end:
        app.processEvents()
        QtCore.QThread.msleep(20)


def _window(app, theme: str, demo: str = "ct") -> MainWindow:
    settings = QtCore.QSettings(str(Path(tempfile.mkdtemp()) / "settings.ini"), QtCore.QSettings.Format.IniFormat)
    w = MainWindow(settings=settings)
    w.resize(1600, 1000)
    w.set_theme(theme)
    w.open_file(demo_path(demo))
    return w


def _wait(app, busy, seconds: float) -> None:
    """Keep the event loop turning while ``busy()`` is true, at most ``seconds``."""
    deadline = time.monotonic() + seconds
    while busy() and time.monotonic() < deadline:
        _settle(app, 200)


def _save_dock(app, dock, width: int, height: int, name: str) -> None:
    """The dock floated at ``width`` x ``height``, saved as ``name``."""
    dock.setFloating(True)
    dock.resize(width, height)
    _settle(app, 500)
    save_screenshot(dock, HERE / name)


def _run(app, w: MainWindow, config: RunConfig) -> None:
    w.solver.set_config(config)
    w.show()
    _settle(app)
    w.plan_panel.wait()
    w.predict()
    w.plan_panel.wait()
    _settle(app)
    assert w.start_run() and w.wait_for_run(600_000), w.last_error
    _settle(app)


def main_window(app, theme: str = "light", name: str = "main_window.png") -> None:
    w = _window(app, theme)
    _run(app, w, GAUSSIAN)
    save_screenshot(w, HERE / name)
    w.close()


def main_window_dark(app) -> None:
    main_window(app, "dark", "main_window_dark.png")


def mri_complex(app) -> None:
    """MRI demo retrospectively undersampled x8 from its ground truth, k-space as log magnitude."""
    w = _window(app, "light", "mri")
    w.forward.sampling.edits["acceleration"].setText("8")
    assert w.forward.sampling.apply(), w.last_error
    w.view.panels["measurement"].set_complex_mode("log magnitude")
    _run(app, w, GAUSSIAN)
    save_screenshot(w, HERE / "mri_complex.png")
    w.close()


def ab_swipe_roi(app) -> None:
    w = _window(app, "light")
    _run(app, w, RunConfig(**{**GAUSSIAN.__dict__, "solver": "diffpir"}))
    w.pin_result_as_a()
    _run(app, w, GAUSSIAN)
    w.roi.set_bounds((40, 80, 30, 70))
    w.view.tabs.setCurrentWidget(w.view.ab)
    _settle(app)
    save_screenshot(w, HERE / "ab_swipe_roi.png")
    w.close()


def _compare(app, spec: CompareSpec, name: str, cost: str | None = None) -> None:
    w = _window(app, "light")
    w.solver.set_config(GAUSSIAN)
    w.show()
    assert w.open_compare_solvers(), w.last_error
    c = w.compare_window
    assert c.start(spec)
    c.wait_until_done(600_000)
    if cost is not None:
        c.plot.set_cost_axis(cost)
    _settle(app, 500)
    save_screenshot(c, HERE / name)
    c.close()
    w.close()


def compare(app) -> None:
    _compare(app, CompareSpec(solvers=("dps", "ddnm", "diffpir"), steps=(10, 25), samples=4), "compare.png")


def quality_preset(app) -> None:
    """A new user's setup: the fast preset (the exact Gaussian prior here), "Full quality" beside
    Reconstruct, after a run."""
    w = _window(app, "light")
    _run(app, w, RunConfig.from_preset("fast", samples=8, seed=0, prior="gaussian", device="cpu"))
    save_screenshot(w, HERE / "quality_preset.png")
    w.close()


def compare_seconds(app) -> None:
    """The comparison's cost-quality plot with its cost axis toggled to seconds."""
    _compare(app, CompareSpec(solvers=("fvfo", "diffpir", "dps"), steps=(5, 20), samples=4), "compare_seconds.png",
             cost="Seconds")


def first_run(app) -> None:
    """What ``python main.py`` shows: the CT demo, prior "default", the fast preset, the time
    predicted before the first click, then the progress bar's ETA during the run."""
    w = _window(app, "light")
    w.solver.set_config(RunConfig.from_preset("fast", device="cpu"))
    w.show()
    _wait(app, lambda: w.plan_panel.planned is None, 300)
    save_screenshot(w, HERE / "first_run_predicted.png")
    assert w.start_run()
    _wait(app, lambda: "(predicted)" in w.progress_bar.format(), 120)
    _settle(app, 3000)
    save_screenshot(w, HERE / "first_run_eta.png")
    w.stop_run()
    w.wait_for_run(600_000)
    w.close()


def diverged(app) -> None:
    """DPS with 10 steps on the CT demo with the bundled prior (it diverges): the banner over the
    result, the diverged samples' last estimates and the metrics marked as no calibration."""
    w = _window(app, "light")
    w.solver.set_config(RunConfig(solver="dps", steps=10, samples=2, seed=0, device="cpu"))
    w.show()
    _settle(app)
    w.plan_panel.wait()
    assert w.start_run() and w.wait_for_run(600_000), w.last_error
    _settle(app, 500)
    save_screenshot(w, HERE / "diverged.png")
    w.close()


def batch(app) -> None:
    """File ▸ Batch…: five demo files with the window's settings and one file that is no
    measurement (failed, its error as the row's tooltip); the dock floated to its own size."""
    import h5py

    from diffrecon.demo import make_demo
    from diffrecon.io import write_measurement

    folder = Path(tempfile.gettempdir()) / "study"  # a plain name: the dock shows the output folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    for i, kind in enumerate(("deblur", "denoise", "inpaint", "deblur", "sr")):
        write_measurement(folder / f"scan_{i:02d}.h5", make_demo(kind, size=64, seed=i))
    with h5py.File(folder / "scan_02b_notes.h5", "w") as fh:
        fh["notes"] = [1.0, 2.0]
    w = _window(app, "light")
    w.solver.set_config(RunConfig(**{**GAUSSIAN.__dict__, "solver": "diffpir"}))
    w.show()
    dock = w.open_batch()
    dock.add_folder(folder)
    dock.set_output(folder / "results")
    assert dock.start()
    _wait(app, lambda: dock.summary is None, 600)
    _save_dock(app, dock, 980, 330, "batch.png")
    w.close()


def priors(app) -> None:
    """The Priors dock: procedural-small fine-tuned on 20 tiles of scikit-image's microscopy image
    ``cell`` (the last 2 held out), stopped after a few steps on the CPU; the card of the prior it
    installed, the measured time estimate and the before/after denoising table."""
    import skimage.data
    from PIL import Image

    from diffrecon.session.priors import PriorLibrary

    folder = Path(tempfile.gettempdir()) / "cells"  # a plain name: the dock shows it
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    cell = skimage.data.cell()
    tiles = [cell[y:y + 128, x:x + 128] for y in range(0, cell.shape[0] - 127, 128)
             for x in range(0, cell.shape[1] - 127, 128)]
    for i, tile in enumerate(tiles):
        Image.fromarray(tile).save(folder / f"cell_{i:02d}.png")
    root = Path(tempfile.gettempdir()) / "diffrecon-priors"
    shutil.rmtree(root, ignore_errors=True)
    w = _window(app, "light")
    w.show()
    panel = w.priors_panel
    panel.library = PriorLibrary(root)
    panel.refresh()
    assert panel.select("procedural-small")
    panel.steps.setValue(200)
    job = panel.start_fine_tune(folder)
    deadline = time.monotonic() + 600
    _wait(app, lambda: panel.progress.value() < 4 and job.running(), 600)
    panel.stop()
    _wait(app, job.running, deadline - time.monotonic())
    _settle(app, 300)
    assert panel.last_check is not None, panel.message.text()
    message, measured = panel.message.text(), panel.estimate_label.text()
    assert panel.select(next(e.value for e in panel.entries() if e.origin == "installed"))
    panel.estimate_label.setText(measured)  # the run's own estimate, not the stored rate selecting shows
    panel.message.setText(message)
    _save_dock(app, panel.parentWidget(), 560, 1000, "priors.png")
    w.close()


def volume(app) -> None:
    """The volume window: a 16-slice phantom (slices 2 pixels apart) measured by 12-view CT per
    slice, reconstructed with the Gaussian prior coupled along z (lam_z 0.5); mean and std as
    axial, coronal and sagittal slices with the linked cursor, and the profile along x through it
    with the ground truth."""
    from diffrecon.gui.volume_window import open_volume_demo

    main = _window(app, "light")
    w = open_volume_demo(main)
    w.set_config(RunConfig(**{**GAUSSIAN.__dict__, "solver": "diffpir", "samples": 4, "prior_fit": False}))
    w.resize(1600, 1000)
    w.lam_z_box.setValue(0.5)
    w.show()
    _settle(app)
    assert w.start_run() and w.wait_for_run(600_000), w.last_error
    w.view.set_cursor((8, 30, 38))
    w.view.set_profile_axis("x")
    _settle(app, 500)
    save_screenshot(w, HERE / "volume.png")
    main.close()


#: (file name, writer, choices set in the dialog, screenshot) of the ``import_formats`` scene.
IMPORTS = (("knee.h5", "write_fastmri", {"slice": "1", "acceleration": "4", "center_fraction": "0.08"}, "fastmri"),
           ("scan_dx.h5", "write_dxchange", {"slice": "0"}, "dxchange"),
           ("scan.nx.h5", "write_nxtomo", {"slice": "2"}, "nxtomo"),
           ("ct_series", "write_dicom_series", {"operator": "ct", "options": "n_views=30", "slice": "4"}, "dicom"),
           ("head.nii.gz", "write_nifti_volume", {"operator": "mri", "options": "acceleration=4", "slice": "3"}, "nifti"))


def import_formats(app) -> None:
    """A 64 x 64 synthetic file of each import format (docs/screenshots/import_files.py) opens in
    the import dialog with the choices of IMPORTS (preview shown), OK, and a 20-step DiffPIR
    reconstruction with the Gaussian prior in the window; the window is shown with the NIfTI
    file's result."""
    sys.path.insert(0, str(HERE))
    import import_files

    folder = Path(tempfile.mkdtemp())
    w = _window(app, "light")
    w.show()
    for name, writer, choices, shot in IMPORTS:
        path = getattr(import_files, writer)(folder / name)
        assert w.open_file(path), w.last_error
        dialog = w.import_dialog
        for option, text in choices.items():
            dialog.set_value(option, text)
        assert dialog.preview(), dialog.error
        while dialog.busy():
            _settle(app, 50)
        assert not dialog.error, dialog.error
        dialog.ok_button.setFocus()
        _settle(app, 500)
        save_screenshot(dialog, HERE / f"import_{shot}.png")
        dialog.accept()
        while dialog.busy():
            _settle(app, 50)
        _run(app, w, RunConfig(**{**GAUSSIAN.__dict__, "solver": "diffpir", "samples": 4}))
        assert w.result is not None and w.result.measurement is w.measurement, w.last_error
    save_screenshot(w, HERE / "import_nifti_result.png")
    w.close()
    shutil.rmtree(folder, ignore_errors=True)


SHOTS = {"main_window": main_window, "main_window_dark": main_window_dark, "mri_complex": mri_complex,
         "ab_swipe_roi": ab_swipe_roi, "compare": compare, "first_run": first_run, "diverged": diverged,
         "batch": batch, "priors": priors, "quality_preset": quality_preset, "compare_seconds": compare_seconds,
         "volume": volume, "import_formats": import_formats}


if __name__ == "__main__":
    app = QtWidgets.QApplication(sys.argv[:1])
    for key in sys.argv[1:] or list(SHOTS):
        started = time.monotonic()
        SHOTS[key](app)
        print(f"{key}: {time.monotonic() - started:.1f} s", flush=True)
