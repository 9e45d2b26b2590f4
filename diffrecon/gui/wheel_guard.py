"""The mouse wheel scrolls a form; it changes a field (spin box, combo box, slider) only when that
field has the keyboard focus. Without this, scrolling the Setup panel over a field silently
changed the steps, the seed or the solver under the pointer."""
from __future__ import annotations

from PySide6 import QtCore, QtWidgets

_FIELDS = (QtWidgets.QAbstractSpinBox, QtWidgets.QComboBox, QtWidgets.QAbstractSlider)


class WheelGuard(QtCore.QObject):
    """Installed on the application; guards the fields inside ``scroll`` (also ones added later)."""

    def __init__(self, scroll: QtWidgets.QScrollArea):
        super().__init__(scroll)
        self.scroll = scroll
        QtWidgets.QApplication.instance().installEventFilter(self)
        scroll.destroyed.connect(self._remove)

    def _remove(self, *_) -> None:
        app = QtWidgets.QApplication.instance()
        if app is not None:
            app.removeEventFilter(self)

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 - Qt's name
        if event.type() != QtCore.QEvent.Type.Wheel or not isinstance(obj, _FIELDS):
            return False
        if isinstance(obj, QtWidgets.QScrollBar) or obj.hasFocus() or not self.scroll.isAncestorOf(obj):
            return False
        # the scroll area's bar takes the wheel instead of the field under the pointer
        QtCore.QCoreApplication.sendEvent(self.scroll.verticalScrollBar(), event)
        return True


def guard_fields(scroll: QtWidgets.QScrollArea) -> WheelGuard:
    """Make the wheel scroll ``scroll``; fields take it only with focus (click or Tab gives it)."""
    for field in scroll.findChildren(QtWidgets.QWidget):
        if isinstance(field, _FIELDS) and not isinstance(field, QtWidgets.QScrollBar):
            field.setFocusPolicy(QtCore.Qt.FocusPolicy.StrongFocus)
    return WheelGuard(scroll)
