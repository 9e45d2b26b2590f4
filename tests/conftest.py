"""Shared test set-up. A window switches automatic garbage collection to a GUI-thread timer
(diffrecon.gui.gc_guard). So that one test's closed windows are not destroyed during the next
test's run (a few hundred milliseconds of widget teardown inside a responsiveness test), each
test that used Qt ends with a full collection on the main thread; other tests collect by the
interpreter's thresholds."""
import gc
import sys

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _private_cache_folder(tmp_path_factory):
    """Runs look up stored calibrations in the cache folder, the window lists installed priors: tests
    never see the user's."""
    mp = pytest.MonkeyPatch()
    mp.setenv("DIFFRECON_CACHE", str(tmp_path_factory.mktemp("cache")))
    mp.setenv("DIFFRECON_DATA", str(tmp_path_factory.mktemp("data")))  # installed priors: never the user's
    yield
    mp.undo()


@pytest.fixture(autouse=True)
def _collect_on_the_main_thread(request):
    yield
    guard = getattr(sys.modules.get("diffrecon.gui.gc_guard"), "_guard", None)
    if guard is None:
        return
    if "qtbot" in request.fixturenames or "qapp" in request.fixturenames:
        gc.collect()
    else:
        guard.collect()


@pytest.fixture
def one_torch_thread():
    """One torch thread for the test: tiny models are dominated by thread hand-offs, and the CI
    machine's cores are shared."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
