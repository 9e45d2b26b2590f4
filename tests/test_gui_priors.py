"""The window's Priors dock, offscreen: selecting a prior makes it the run's prior, Add checks and
installs in the background (a malformed prior is one sentence), Fine-tune shows progress, the
estimate and the before/after table, and Stop ends it after the current step."""
import os

os.environ["QT_QPA_PLATFORM"] = "offscreen"

import time  # noqa: E402

import pytest  # noqa: E402

pytest.importorskip("PySide6")
from PySide6 import QtCore  # noqa: E402

from diffrecon.gui.main_window import MainWindow  # noqa: E402
from diffrecon.session.priors import PriorLibrary  # noqa: E402
from diffrecon.training.finetune import FineTuneSettings  # noqa: E402
from tiny_priors import tiny_prior, write_image_folder  # noqa: E402,F401 - tiny_prior is a fixture

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def panel(qtbot, tmp_path):
    settings = QtCore.QSettings(str(tmp_path / "settings.ini"), QtCore.QSettings.Format.IniFormat)
    w = MainWindow(settings=settings)
    qtbot.addWidget(w)
    p = w.priors_panel
    p.library = PriorLibrary(tmp_path / "priors")
    p.refresh()
    yield p
    p.stop()
    p.wait(20000)


def _texts(p):
    return [p.list.item(i).text() for i in range(p.list.count())]


def test_selecting_a_prior_makes_it_the_runs_prior_and_shows_its_card(panel):
    w = panel.window()
    assert panel.select("procedural-small")
    assert w.solver.config().prior == "procedural-small"
    assert panel.card_labels["Resolution"].text() == "128x128" and panel.card_labels["Value range"].text() == "[-1, 1]"
    assert panel.card_labels["Origin"].text() == "bundled" and not panel.remove_button.isEnabled()
    assert panel.select("gaussian") and w.solver.config().prior == "gaussian"


def test_add_fine_tune_and_stop_through_the_panel(panel, qtbot, tiny_prior, tmp_path):
    w = panel.window()
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"garbage")
    job = panel.add_path(bad)
    qtbot.waitUntil(lambda: not job.running(), timeout=20000)
    qtbot.waitUntil(lambda: panel.message.text().startswith("Prior not added"), timeout=5000)
    assert str(bad) in panel.message.text() and "\n" not in panel.message.text()

    job = panel.add_path(tiny_prior)
    qtbot.waitUntil(lambda: not job.running() and panel.current() is not None
                    and panel.current().origin == "installed", timeout=30000)
    installed = panel.current()
    assert w.solver.config().prior == installed.value  # selected once added, so the run uses it
    assert panel.card_labels["Resolution"].text() == "16x16" and panel.remove_button.isEnabled()
    assert panel.fine_tune_button.isEnabled() and not panel.stop_button.isEnabled()

    data = write_image_folder(tmp_path / "mine")
    ticks = []
    timer = QtCore.QTimer(interval=20, timeout=lambda: ticks.append(time.perf_counter()))
    timer.start()  # the GUI thread keeps its event loop while the job trains
    job = panel.start_fine_tune(data, FineTuneSettings(steps=5000, batch_size=4, device="cpu", sigmas=(0.2,)))
    assert panel.stop_button.isEnabled() and not panel.fine_tune_button.isEnabled()
    qtbot.waitUntil(lambda: panel.progress.value() >= 3, timeout=30000)
    assert "an estimate" in panel.estimate_label.text() and panel.progress.maximum() == 5000
    panel.stop_button.click()
    qtbot.waitUntil(lambda: not job.running(), timeout=30000)
    qtbot.waitUntil(lambda: panel.last_check is not None, timeout=5000)
    timer.stop()
    steps = panel.progress.value()
    assert 3 <= steps < 5000 and f"stopped after {steps} of 5000 steps" in panel.message.text()
    assert panel.progress.text() == f"stopped at {steps} / 5000 steps"
    assert "measured over" in panel.estimate_label.text()  # the run's own measurement stays shown
    assert panel.check_table.rowCount() == 1 and panel.check_table.item(0, 0).text() == "0.2"
    before, after = (float(panel.check_table.item(0, c).text()) for c in (2, 3))
    diff = float(panel.check_table.item(0, 4).text())  # from the unrounded values: within one rounding step
    assert abs(diff - (after - before)) <= 0.0101 and panel.check_table.item(0, 4).text()[0] in "+-"
    assert sum(e.origin == "installed" for e in panel.entries()) == 2
    assert len(ticks) >= 3 and max(b - a for a, b in zip(ticks, ticks[1:])) < 2.0
    assert panel.select(installed.value) and panel.remove_button.isEnabled()
    panel.remove_button.click()
    assert installed.value not in [e.value for e in panel.entries()] and not installed.path.exists()
    assert w.solver.config().prior == "default" and panel.current().value == "default"
