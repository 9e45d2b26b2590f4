"""A form built from a solver's frozen ``Params`` dataclass: one editor per field, its range
from the field metadata, its default from the dataclass and its help as tooltip."""
from __future__ import annotations

import dataclasses
import math
from typing import Any

from PySide6 import QtCore, QtWidgets


class ParamForm(QtWidgets.QWidget):
    changed = QtCore.Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.Params = None
        self.editors: dict[str, QtWidgets.QWidget] = {}
        self.layout_ = QtWidgets.QFormLayout(self)
        self.layout_.setContentsMargins(0, 0, 0, 0)

    def set_params_class(self, Params: type | None) -> None:
        if Params is self.Params:
            return
        self.Params = Params
        while self.layout_.rowCount():
            self.layout_.removeRow(0)
        self.editors = {}
        if Params is None:
            return
        for f in dataclasses.fields(Params):
            editor = _editor_for(f)
            if editor is None:  # arrays or nested settings are not editable here
                continue
            editor.setToolTip(f.metadata.get("help", ""))
            label = QtWidgets.QLabel(f.name)
            label.setToolTip(f.metadata.get("help", ""))
            self.layout_.addRow(label, editor)
            self.editors[f.name] = editor
            for sig in ("valueChanged", "currentIndexChanged", "toggled", "textChanged"):
                if hasattr(editor, sig):
                    getattr(editor, sig).connect(self.changed)
                    break

    def values(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, e in self.editors.items():
            if isinstance(e, QtWidgets.QCheckBox):
                out[name] = e.isChecked()
            elif isinstance(e, QtWidgets.QComboBox):
                out[name] = e.currentData()
            elif isinstance(e, (QtWidgets.QSpinBox, QtWidgets.QDoubleSpinBox)):
                out[name] = e.value()
            else:
                out[name] = e.text()
        return out

    def set_values(self, values: dict[str, Any]) -> None:
        for name, value in values.items():
            e = self.editors.get(name)
            if e is None:
                continue
            with QtCore.QSignalBlocker(e):
                if isinstance(e, QtWidgets.QCheckBox):
                    e.setChecked(bool(value))
                elif isinstance(e, QtWidgets.QComboBox):
                    i = e.findData(value)
                    if i >= 0:
                        e.setCurrentIndex(i)
                elif isinstance(e, QtWidgets.QSpinBox):
                    e.setValue(int(value))
                elif isinstance(e, QtWidgets.QDoubleSpinBox):
                    e.setValue(float(value))
                else:
                    e.setText(str(value))
        self.changed.emit()


def _editor_for(f: dataclasses.Field) -> QtWidgets.QWidget | None:
    default = f.default
    lo, hi = f.metadata.get("range", (None, None)) or (None, None)
    choices = f.metadata.get("choices")
    if choices:
        box = QtWidgets.QComboBox()
        for c in choices:
            box.addItem(str(c), c)
        box.setCurrentIndex(max(box.findData(default), 0))
        return box
    if isinstance(default, bool):
        box = QtWidgets.QCheckBox()
        box.setChecked(default)
        return box
    if isinstance(default, int):
        box = QtWidgets.QSpinBox()
        box.setRange(int(lo) if lo is not None else -2**31, int(hi) if hi is not None and math.isfinite(hi) else 2**31 - 1)
        box.setValue(default)
        return box
    if isinstance(default, float):
        box = QtWidgets.QDoubleSpinBox()
        box.setDecimals(_decimals(default, lo))
        box.setRange(float(lo) if lo is not None else -1e12, float(hi) if hi is not None and math.isfinite(hi) else 1e12)
        box.setSingleStep(_step(default))
        box.setValue(default)
        return box
    if isinstance(default, str):
        return QtWidgets.QLineEdit(default)
    return None


def _decimals(default: float, lo: float | None) -> int:
    """Enough decimals to show small defaults such as 1e-4 step sizes."""
    smallest = min((abs(v) for v in (default, lo or 0.0) if v), default=1.0)
    return max(3, min(8, 2 - int(math.floor(math.log10(smallest))) if smallest else 3))


def _step(default: float) -> float:
    return 10 ** math.floor(math.log10(abs(default))) / 10 if default else 0.1
