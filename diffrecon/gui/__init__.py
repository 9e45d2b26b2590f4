"""The desktop window (PySide6 + pyqtgraph). The only package that imports Qt.

pyqtgraph's default axis order is column-major; numpy images are (row, column), so the whole
package switches it to row-major once, here, before any image item exists.
"""
from __future__ import annotations

import pyqtgraph as pg


pg.setConfigOptions(imageAxisOrder="row-major", antialias=True)

__all__ = ["run_gui"]


def run_gui(*args, **kwargs) -> int:
    """See :func:`diffrecon.gui.app.run_gui` (imported lazily so the package import stays light)."""
    from .app import run_gui as _run_gui

    return _run_gui(*args, **kwargs)
