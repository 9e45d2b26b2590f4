"""Menus and the toolbar: small QActions that each call one window method (no logic here)."""
from __future__ import annotations

from PySide6 import QtGui, QtWidgets

from .import_dialog import use_defaults
from .theme import THEMES
from .volume_window import open_volume_demo


def _action(window, text: str, slot, shortcut=None, icon=None) -> QtGui.QAction:
    action = QtGui.QAction(text, window)
    if shortcut is not None:
        action.setShortcut(QtGui.QKeySequence(shortcut))
    if icon is not None:
        action.setIcon(window.style().standardIcon(icon))
    action.triggered.connect(lambda *_: slot())
    return action


def compare_window_class():
    """``CompareWindow`` if its module imports, else the reason it does not (one sentence)."""
    try:
        from .compare_window import CompareWindow
    except Exception as err:  # noqa: BLE001 - being written elsewhere; any failure disables the action
        return None, f"The solver comparison is not available ({type(err).__name__}: {err})."
    return CompareWindow, ""


def build_menus(w) -> None:
    """Create ``w``'s actions (attributes ``*_action``), menus and toolbar."""
    sp, keys = QtWidgets.QStyle.StandardPixmap, QtGui.QKeySequence.StandardKey
    w.open_action = _action(w, "&Open…", w.open_dialog, keys.Open, sp.SP_DialogOpenButton)
    w.open_folder_action = _action(w, "Open DICOM &folder…", w.open_folder_dialog)
    w.demo_action = _action(w, "Open CT &demo", w.open_default)
    w.volume_demo_action = _action(w, "Open &volume demo", lambda: open_volume_demo(w))
    w.volume_demo_action.setStatusTip("A phantom volume measured slice by slice (CT), in a volume window with its "
                                      "orthogonal views, Reconstruct volume and Export volume.")
    w.batch_action = _action(w, "&Batch…", w.open_batch, "Ctrl+B")
    w.ask_import_action = _action(w, "&Ask for import choices", lambda: w.set_ask_import(w.ask_import_action.isChecked()))
    w.ask_import_action.setCheckable(True)
    w.ask_import_action.setChecked(not use_defaults(w.settings))
    w.ask_import_action.setStatusTip("Open fastMRI, Data Exchange, NXtomo, DICOM, NIfTI and images through the "
                                     "import dialog (off: with the importers' default choices).")
    w.run_action = _action(w, "&Reconstruct", w.start_run, "Ctrl+R", sp.SP_MediaPlay)
    w.stop_action = _action(w, "&Stop", w.stop_run, "Esc", sp.SP_MediaStop)
    w.predict_action = _action(w, "&Predict time and memory", w.predict, "Ctrl+T")
    w.calibrate_action = _action(w, "&Calibrate std for these settings…", w.calibrate_dialog)
    w.calibrate_action.setStatusTip("Measure on simulated measurements how far the std of these settings is off, "
                                    "and correct later runs (diffrecon calibrate).")
    w.export_action = _action(w, "&Export…", w.export_dialog, "Ctrl+E", sp.SP_DialogSaveButton)
    w.pin_action = _action(w, "&Pin result as A", w.pin_result_as_a, "Ctrl+Shift+P")
    w.open_a_action = _action(w, "Open result file as &A…", w.open_a_dialog)
    w.compare_action = _action(w, "Compare &solvers…", w.open_compare_solvers, "Ctrl+K")
    w.fit_action = _action(w, "&Fit images to panels", w.fit_images, "Ctrl+0")
    quit_action = _action(w, "&Quit", w.close, keys.Quit)

    bar = w.menuBar()
    menu = bar.addMenu("&File")
    menu.addActions([w.open_action, w.open_folder_action, w.demo_action, w.volume_demo_action])
    w.recent_menu = menu.addMenu("Open &recent")
    w.recent_menu.aboutToShow.connect(w._fill_recent)  # a file deleted meanwhile leaves the list
    menu.addAction(w.ask_import_action)
    menu.addSeparator()
    menu.addActions([w.batch_action, w.export_action, quit_action])
    bar.addMenu("&Run").addActions([w.run_action, w.stop_action, w.predict_action, w.calibrate_action])
    bar.addMenu("&Compare").addActions([w.pin_action, w.open_a_action, w.compare_action])
    view = bar.addMenu("&View")
    view.addAction(w.fit_action)
    theme_menu = view.addMenu("&Theme")
    group = QtGui.QActionGroup(w)
    w.theme_actions = {}
    for name in THEMES:
        act = theme_menu.addAction(name.capitalize())
        act.setCheckable(True)
        act.setActionGroup(group)
        act.triggered.connect(lambda _=False, n=name: w.set_theme(n))
        w.theme_actions[name] = act
    view.addSeparator()
    for dock in w.findChildren(QtWidgets.QDockWidget):
        view.addAction(dock.toggleViewAction())
    toolbar = w.addToolBar("Main")
    toolbar.setObjectName("Main")
    toolbar.addActions([w.open_action, w.run_action, w.stop_action, w.export_action])

    cls, reason = compare_window_class()
    w.compare_action.setEnabled(cls is not None)
    w.compare_action.setToolTip(reason or "Run several solvers on this measurement and compare them.")
    w.compare_action.setStatusTip(w.compare_action.toolTip())
