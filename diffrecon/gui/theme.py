"""Light and dark themes. "system" follows the desktop (Qt 6.5+ ``styleHints().colorScheme()``)
and changes with it; the choice is stored in QSettings under ``view/theme``. The pyqtgraph plots
follow: backgrounds, axes and titles are restyled in place, since pyqtgraph's global options only
reach widgets created afterwards."""
from __future__ import annotations

import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

THEMES = ("system", "light", "dark")
SETTINGS_KEY = "view/theme"
PLOT_COLOURS = {False: ("w", (40, 40, 40)), True: ("k", (200, 200, 200))}  # dark -> (background, foreground)


def system_is_dark() -> bool:
    hints = QtGui.QGuiApplication.styleHints()
    scheme = getattr(hints, "colorScheme", None)
    if scheme is not None:
        return scheme() == QtCore.Qt.ColorScheme.Dark
    # before Qt 6.5: a dark window colour is the best hint there is
    return QtGui.QGuiApplication.palette().color(QtGui.QPalette.ColorRole.Window).lightness() < 128


def is_dark(theme: str) -> bool:
    return system_is_dark() if theme == "system" else theme == "dark"


def dark_palette() -> QtGui.QPalette:
    role, group = QtGui.QPalette.ColorRole, QtGui.QPalette.ColorGroup
    p = QtGui.QPalette()
    base, window, text = QtGui.QColor(30, 30, 32), QtGui.QColor(45, 45, 48), QtGui.QColor(225, 225, 225)
    for r, c in ((role.Window, window), (role.WindowText, text), (role.Base, base),
                 (role.AlternateBase, window), (role.ToolTipBase, window), (role.ToolTipText, text),
                 (role.Text, text), (role.Button, window), (role.ButtonText, text),
                 (role.BrightText, QtGui.QColor(255, 80, 80)), (role.Link, QtGui.QColor(90, 160, 255)),
                 (role.Highlight, QtGui.QColor(50, 110, 200)), (role.HighlightedText, QtGui.QColor(255, 255, 255)),
                 (role.PlaceholderText, QtGui.QColor(140, 140, 140))):
        p.setColor(r, c)
    for r in (role.WindowText, role.Text, role.ButtonText):
        p.setColor(group.Disabled, r, QtGui.QColor(120, 120, 120))
    return p


def apply_theme(theme: str, root: QtWidgets.QWidget | None = None) -> bool:
    """Set the application's palette for ``theme`` and restyle the plots under ``root``; returns
    whether the result is dark."""
    app = QtWidgets.QApplication.instance()
    dark = is_dark(theme)
    if app is not None:
        if dark and app.style().name().lower() != "fusion":
            app.setStyle("Fusion")  # native styles may ignore a dark palette
        app.setPalette(dark_palette() if dark else app.style().standardPalette())
    background, foreground = PLOT_COLOURS[dark]
    pg.setConfigOptions(background=background, foreground=foreground)
    if root is not None:
        style_plots(root, dark)
    return dark


def style_plots(root: QtWidgets.QWidget, dark: bool) -> None:
    """Restyle every image panel and plot widget under ``root``."""
    from .image_panel import ImagePanel

    background, foreground = PLOT_COLOURS[dark]
    panels = root.findChildren(ImagePanel)
    for panel in panels:
        panel.apply_theme(background, foreground)
    inside = {panel.graphics for panel in panels}
    for view in root.findChildren(pg.PlotWidget):
        if view in inside:
            continue
        view.setBackground(background)
        item = view.getPlotItem()
        for name in ("left", "bottom"):
            item.getAxis(name).setPen(foreground)
            item.getAxis(name).setTextPen(foreground)
        if item.legend is not None:
            style_legend(item.legend, foreground)


def style_legend(legend: pg.LegendItem, foreground) -> None:
    """Legend text in the theme's colour. ``setLabelTextColor`` only stores the colour for
    labels drawn later (pyqtgraph 0.13-0.14), so each existing label is drawn again."""
    legend.setLabelTextColor(foreground)
    for _sample, label in legend.items:
        label.setText(label.text, color=foreground)
