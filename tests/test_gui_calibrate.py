"""Run ▸ Calibrate std in the window: it runs in the worker, stores the correction, and the next
run's std panel says it is calibrated with the measured coverage (offscreen, exact Gaussian prior)."""
import os

os.environ["QT_QPA_PLATFORM"] = "offscreen"

import pytest  # noqa: E402

pytest.importorskip("PySide6")
from PySide6 import QtCore  # noqa: E402

from diffrecon.engine import RunConfig  # noqa: E402
from diffrecon.gui.main_window import MainWindow  # noqa: E402
from diffrecon.io.importers import simulate  # noqa: E402
from diffrecon.phantoms import phantom  # noqa: E402

FAST = RunConfig(prior="gaussian", steps=3, samples=2, device="cpu", solver="diffpir")


@pytest.fixture
def window(qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFRECON_CACHE", str(tmp_path / "cache"))
    settings = QtCore.QSettings(str(tmp_path / "settings.ini"), QtCore.QSettings.Format.IniFormat)
    w = MainWindow(settings=settings)
    qtbot.addWidget(w)
    w.set_measurement(simulate(phantom(16, 3), "inpaint", noise=0.05))
    w.solver.set_config(FAST)
    yield w
    if w.is_running():
        w.worker.request_stop()
        w.worker.wait(10000)


def test_calibrate_action_stores_a_correction_and_the_next_run_says_calibrated_beside_the_std(qtbot, window):
    std_title = lambda: window.view.panels["std"].title()  # noqa: E731
    assert window.start_run(FAST)
    qtbot.waitUntil(lambda: window._run_done, timeout=60000)
    window.worker.wait(5000)
    assert std_title() == "Posterior std · uncalibrated"
    qtbot.waitUntil(window.calibrate_action.isEnabled, timeout=5000)
    assert window.calibration.start(images=2)
    assert window.is_running() and not window.run_action.isEnabled()  # one worker at a time
    qtbot.waitUntil(lambda: window.calibration.last is not None, timeout=60000)
    window.worker.wait(5000)
    cal = window.calibration.last
    assert cal is not None and cal.n_images == 2 and cal.status() in window.status.message_label.text()
    window._run_done = False
    assert window.start_run(FAST)
    qtbot.waitUntil(lambda: window._run_done, timeout=60000)
    window.worker.wait(5000)
    assert std_title() == f"Posterior std · {cal.status()}"
    assert window.result.provenance["calibration"]["scale"] == cal.scale


def test_prior_samples_are_titled_as_such_and_calibration_refuses_them_in_one_sentence(qtbot, window):
    window.solver.set_config(RunConfig(**{**FAST.__dict__, "solver": "ddpm", "params": {}}))
    assert window.solver.is_deterministic() and "ignores the measurement" in window.solver.warning.text()
    assert window.calibration.start(images=2)
    qtbot.waitUntil(lambda: "ignores the measurement" in window.status.message_label.text(), timeout=30000)
    assert window.calibration.last is None and window.last_error == window.status.message_label.text()


def test_calibrate_dialog_takes_your_images_and_left_empty_means_phantoms(qtbot, window, tmp_path, monkeypatch):
    import numpy as np
    from PIL import Image
    from PySide6 import QtWidgets

    from diffrecon.calibrate import DEFAULT_IMAGES
    from diffrecon.gui.calibrate_action import CalibrateDialog

    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (24, 20), dtype=np.uint8)).save(folder / f"{i}.png")
    monkeypatch.setattr(QtWidgets.QFileDialog, "getExistingDirectory", lambda *a, **k: str(folder))

    def fill_in(dialog):
        assert dialog.truths.text() == "" and dialog.images.value() == DEFAULT_IMAGES  # empty: phantoms
        dialog.images.setValue(2)
        dialog._pick_folder()
        return QtWidgets.QDialog.DialogCode.Accepted

    monkeypatch.setattr(CalibrateDialog, "exec", fill_in)
    assert window.calibration.ask_and_start()
    qtbot.waitUntil(lambda: window.calibration.last is not None, timeout=60000)
    window.worker.wait(5000)
    cal = window.calibration.last
    assert cal.n_images == 2 and cal.method.startswith("your images: image folder imgs (3 files); 2 images, "
                                                       "centre-cropped and resized to 16x16")
