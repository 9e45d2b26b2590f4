"""Start the window: ``run_gui(path=None, *, reconstruct=False, screenshot=None, quit_after=False,
config=None)``. Also the scripted path used for screenshots and smoke tests."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from ..engine import RunConfig


def has_display() -> bool:
    """False on a Linux box without X11/Wayland unless a Qt platform (e.g. offscreen) is chosen."""
    if os.environ.get("QT_QPA_PLATFORM"):
        return True
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


def run_gui(path: str | Path | None = None, *, reconstruct: bool = False, screenshot: str | Path | None = None,
            quit_after: bool = False, config: RunConfig | None = None) -> int:
    """Open the main window on ``path`` (or the bundled CT demo); optionally run, screenshot, quit.

    Returns the process exit code: 0, 1 when a scripted run failed, 2 without a display.
    """
    if not has_display():
        print("No display found: use the command line (diffrecon --help), or set "
              "QT_QPA_PLATFORM=offscreen to run the window without a screen.", file=sys.stderr)
        return 2
    from PySide6 import QtCore, QtWidgets

    from .main_window import MainWindow

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])
    app.setOrganizationName("diffrecon")
    app.setApplicationName("diffrecon")
    window = MainWindow()
    if config is not None:
        window.solver.set_config(config)
    scripted = reconstruct or screenshot is not None or quit_after  # no one to answer an import dialog
    opened = window.open_file(path, ask=False if scripted else None) if path is not None else window.open_default()
    window.show()
    code = 0
    if reconstruct or screenshot is not None:
        app.processEvents()
        if reconstruct and opened:
            if window.start_run(config):
                window.wait_for_run(24 * 3600 * 1000)
            code = 0 if window.result is not None else 1
        if screenshot is not None:
            # let layouts and pyqtgraph settle before grabbing
            for _ in range(5):
                app.processEvents()
                QtCore.QThread.msleep(50)
            save_screenshot(window, screenshot)
    if quit_after:
        window.close()
        app.processEvents()
        return code
    return app.exec() or code


def save_screenshot(window, path: str | Path) -> None:
    """A PNG of the whole window (what users see, unlike exports, which write the data)."""
    from ..io.atomic import atomic_path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        if not window.grab().save(str(tmp), "PNG"):
            raise OSError(f"could not write the screenshot {path}")
