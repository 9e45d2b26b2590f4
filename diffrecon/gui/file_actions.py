"""The window's file commands: open (any format the session reads; a file of an import format
through the import dialog, :mod:`.import_dialog`), recent files, drag and drop, the demo, and export. A mixin so main_window.py stays a wiring file; the reading and
writing itself is the session's (:mod:`diffrecon.session`)."""
from __future__ import annotations

from pathlib import Path

from PySide6 import QtCore, QtGui, QtWidgets

from ..errors import DiffreconError, InputError
from ..session import import_format
from . import export as exporting
from . import run_owner
from .import_dialog import USE_DEFAULTS_KEY, ImportDialog, use_defaults
from .jobs import describe_error
from .views import default_measurement
from .volume_window import is_volume_file, open_volume_window

MAX_RECENT = 8
OPEN_FILTER = ("Measurements, results and imports (*.h5 *.hdf5 *.nxs *.tif *.tiff *.png *.dcm *.nii *.nii.gz);;"
               "HDF5 files (*.h5 *.hdf5 *.nxs);;DICOM and NIfTI (*.dcm *.dicom *.ima *.nii *.nii.gz);;"
               "Images (*.tif *.tiff *.png);;All files (*)")


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
        """The Open recent menu, without the files that are no longer there (one status message)."""
        recent = self.recent_files()
        kept = [p for p in recent if Path(p).exists()]
        if len(kept) < len(recent):
            self.settings.setValue("recent", kept)
            gone = [Path(p).name for p in recent if p not in kept]
            self.show_message(f"Removed from recent files (no longer there): {', '.join(gone)}.")
        self.recent_menu.clear()
        for path in kept:
            self.recent_menu.addAction(Path(path).name, lambda p=path: self.open_recent(p)).setToolTip(path)
        self.recent_menu.setEnabled(bool(kept))

    def open_recent(self, path: str) -> bool:
        if not Path(path).exists():
            self._fill_recent()  # drops it, and says so
            return False
        return self.open_file(path)

    def set_ask_import(self, ask: bool) -> None:
        """Whether a file of an import format opens through the import dialog (the default)."""
        self.settings.setValue(USE_DEFAULTS_KEY, not ask)
        self.ask_import_action.setChecked(ask)

    def open_dialog(self) -> None:
        start = str(Path(self.recent_files()[0]).parent) if self.recent_files() else ""
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Open measurement, result or import", start, OPEN_FILTER)
        if path:
            self.open_file(path)

    def open_folder_dialog(self) -> None:
        start = str(Path(self.recent_files()[0]).parent) if self.recent_files() else ""
        path = QtWidgets.QFileDialog.getExistingDirectory(self, "Open a folder of DICOM slices", start)
        if path:
            self.open_file(path)

    def open_file(self, path: str | Path, ask: bool | None = None) -> bool:
        """Open a measurement, a result (which also restores the settings that made it), or a
        file of an import format (fastMRI, Data Exchange, NXtomo, DICOM, NIfTI, an image): with
        ``ask`` (default: unless the settings say to use the defaults) through the import dialog
        (``self.import_dialog``, window-modal; True here means it is shown), else with the
        importer's default choices, which the status bar and the log name."""
        path = str(path)
        if is_volume_file(path):  # a volume result or volume measurement opens in a volume window
            opened = open_volume_window(self, path) is not None
            if opened:
                self._remember(path)
            return opened
        if self.is_running() and not run_owner.ask_to_stop(self, self.windowTitle().removeprefix("diffrecon — "),
                                                          Path(path).name):
            self.show_message(f"{Path(path).name} was not opened; the running reconstruction goes on.")
            return False
        try:
            if ask is None:
                ask = not use_defaults(self.settings)
            info = import_format(path) if ask else None
            if info is not None:
                return self._ask_import(path, info)
            self.session.open(path)
        except (DiffreconError, OSError) as err:
            self._open_failed(path, err)
            return False
        self._remember(path)
        return True

    def _open_failed(self, path: str, err: BaseException) -> None:
        self.report_error(str(err) if isinstance(err, DiffreconError) else f"{Path(path).name} could not be opened ({err}).")

    def _ask_import(self, path: str, info) -> bool:
        """The import dialog over what the defaults give; OK opens its measurement, Cancel leaves the current one."""
        defaults = self.session.read_file(path)
        self.import_dialog = dialog = ImportDialog(path, info, defaults, self.settings, parent=self)
        dialog.setWindowModality(QtCore.Qt.WindowModality.WindowModal)

        def finish(code: int) -> None:
            if code != QtWidgets.QDialog.DialogCode.Accepted:
                self.show_message(f"{Path(path).name} was not opened; the import was cancelled.")
                return
            try:
                self.session.use_opened(dialog.opened, path)
            except (DiffreconError, OSError) as err:
                self._open_failed(path, err)
                return
            self.ask_import_action.setChecked(not use_defaults(self.settings))
            self._remember(path)

        dialog.finished.connect(finish)
        dialog.show()
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
