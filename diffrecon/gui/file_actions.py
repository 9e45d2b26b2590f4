"""The window's file commands: open (any format the session reads), recent files, drag and
drop, the demo, and export. A mixin so main_window.py stays a wiring file; the reading and
writing itself is the session's (:mod:`diffrecon.session`)."""
from __future__ import annotations

from pathlib import Path

from PySide6 import QtGui, QtWidgets

from ..errors import DiffreconError, InputError
from . import export as exporting
from . import run_owner
from .jobs import describe_error
from .views import default_measurement

MAX_RECENT = 8
OPEN_FILTER = ("Measurements and results (*.h5 *.hdf5 *.nxs *.tif *.tiff *.png);;"
               "HDF5 files (*.h5 *.hdf5 *.nxs);;Images (*.tif *.tiff *.png);;All files (*)")


class FileActions:
    """Needs ``self.session``, ``self.settings``, ``self.recent_menu``, ``self.view``,
    ``report_error``, ``show_message`` and ``is_running``."""

    def recent_files(self) -> list[str]:
        value = self.settings.value("recent", [])
        return [value] if isinstance(value, str) else list(value or [])

    def _remember(self, path: str) -> None:
        path = str(Path(path).resolve())  # a relative name means nothing from another folder
        recent = [path] + [p for p in self.recent_files() if p != path]
        self.settings.setValue("recent", recent[:MAX_RECENT])
        self._fill_recent()

    def _fill_recent(self) -> None:
        self.recent_menu.clear()
        for path in self.recent_files():
            self.recent_menu.addAction(Path(path).name, lambda p=path: self.open_file(p)).setToolTip(path)
        self.recent_menu.setEnabled(bool(self.recent_files()))

    def open_dialog(self) -> None:
        start = str(Path(self.recent_files()[0]).parent) if self.recent_files() else ""
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Open measurement, result or import", start, OPEN_FILTER)
        if path:
            self.open_file(path)

    def open_file(self, path: str | Path) -> bool:
        """Open a measurement, a result (which also restores the settings that made it), or a
        file of an import format (fastMRI, Data Exchange, NXtomo, an image) with the importer's
        default choices, which the status bar and the log name."""
        path = str(path)
        if self.is_running() and not run_owner.ask_to_stop(self, self.windowTitle().removeprefix("diffrecon — "),
                                                          Path(path).name):
            self.show_message(f"{Path(path).name} was not opened; the running reconstruction goes on.")
            return False
        try:
            self.session.open(path)
        except (DiffreconError, OSError) as err:
            self.report_error(str(err) if isinstance(err, DiffreconError) else
                              f"{Path(path).name} could not be opened ({err}).")
            return False
        self._remember(path)
        return True

    def open_default(self) -> bool:
        try:
            self.session.set_measurement(default_measurement(), origin="demo")
            return True
        except Exception as err:  # noqa: BLE001 - no demo yet must not kill the window
            self.report_error(f"The bundled CT demo could not be loaded ({describe_error(err)}); open a file with Ctrl+O.")
            return False

    def set_measurement(self, m, path: str | None = None) -> None:
        """Show ``m`` as if opened from ``path`` (scripts and tests hand measurements in directly)."""
        self.session.set_measurement(m, Path(path) if path else None, origin="file" if path else "demo")

    def dragEnterEvent(self, event: QtGui.QDragEnterEvent) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QtGui.QDropEvent) -> None:
        for url in event.mimeData().urls():
            if url.isLocalFile():
                self.open_file(url.toLocalFile())
                break

    # ------------------------------------------------------------------ export
    def export_dialog(self) -> None:
        if self.session.result is None:
            self.report_error("There is no result to export yet; run a reconstruction first.")
            return
        start = str(Path(self.recent_files()[0]).with_suffix("")) + "_result" if self.recent_files() else "result"
        path, chosen = QtWidgets.QFileDialog.getSaveFileName(self, "Export", start, ";;".join(exporting.EXPORTS))
        if path:
            try:
                target, what = exporting.resolve_target(path, chosen)
            except InputError as err:
                self.report_error(str(err))
                return
            self.export(target, what)

    def export(self, path: str | Path, what: str = "mean") -> bool:
        """Write ``what`` (mean, std, samples, error or result) to ``path``; the kind follows the suffix."""
        try:
            panel = self.view.panels[what if what in ("mean", "std", "error") else "mean"]
            exporting.export_result(self.session, path, what, title=panel.title(),
                                    levels=tuple(panel.colorbar.levels()))
        except Exception as err:  # noqa: BLE001 - an export failure is shown in the window, never only on a terminal
            self.report_error(str(err) if isinstance(err, DiffreconError) else f"Export to {path} failed ({err}).")
            return False
        self.show_message(f"Exported {what} to {path}.")
        return True
