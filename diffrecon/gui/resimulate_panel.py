"""Sampling controls of the forward-model panel: MRI acceleration and centre fraction, inpainting
missing fraction, CT views. Editable only where the file leaves the choice (fully sampled k-space
or a ground truth, see :mod:`diffrecon.gui.resimulate`); otherwise shown disabled with the reason
as tooltip. Invalid values get a red border and their sentence as tooltip, never a dialog."""
from __future__ import annotations

from PySide6 import QtCore, QtWidgets

from ..errors import DiffreconError
from ..measurement import Measurement
from .. import resimulate as rs

INVALID_STYLE = "border: 1px solid #d04040;"


def _format(value: float | None, integer: bool) -> str:
    if value is None:
        return ""
    return f"{int(round(value))}" if integer else f"{value:.4g}"


class ResimulatePanel(QtWidgets.QWidget):
    """``set_measurement(file's measurement)``; emits ``derived`` with a re-simulated measurement,
    or with the file's own one after "Back to file"."""

    derived = QtCore.Signal(object)  # Measurement
    failed = QtCore.Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.original: Measurement | None = None
        self.current: Measurement | None = None
        self.opts = rs.Options(False, "")
        self.edits: dict[str, QtWidgets.QLineEdit] = {}
        self.form = QtWidgets.QFormLayout()
        self.form.setContentsMargins(0, 0, 0, 0)
        self.mask_kind = self._new_mask_kind()
        self.apply_button = QtWidgets.QPushButton("Re-simulate")
        self.revert_button = QtWidgets.QPushButton("Back to file")
        self.revert_button.setToolTip("Use the measurement stored in the file again.")
        self.origin = QtWidgets.QLabel()
        self.origin.setWordWrap(True)
        self.origin.setStyleSheet("color: #d08000;")
        self.origin.hide()
        buttons = QtWidgets.QHBoxLayout()
        buttons.addWidget(self.apply_button)
        buttons.addWidget(self.revert_button)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(self.form)
        layout.addLayout(buttons)
        layout.addWidget(self.origin)
        self.apply_button.clicked.connect(self.apply)
        self.revert_button.clicked.connect(self.revert)
        self.hide()

    def _new_mask_kind(self, kinds=rs.MASK_KINDS) -> QtWidgets.QComboBox:
        # form rows own their widgets and removeRow deletes them: one combo per file
        box = QtWidgets.QComboBox()
        box.addItems(kinds)
        box.currentIndexChanged.connect(self._on_edited)
        return box

    # ------------------------------------------------------------------ model -> view
    def set_measurement(self, m: Measurement) -> None:
        """A newly opened file: rebuild the controls from its sampling settings."""
        self.original = self.current = m
        self.opts = rs.options(m)
        while self.form.rowCount():
            self.form.removeRow(0)
        self.edits = {}
        self.mask_kind = self._new_mask_kind(self.opts.mask_kinds or rs.MASK_KINDS)
        for s in self.opts.settings:
            edit = QtWidgets.QLineEdit(_format(s.value, s.integer))
            if s.optional:
                edit.setPlaceholderText("auto")
            edit.textChanged.connect(self._on_edited)
            edit.returnPressed.connect(self.apply)
            self.edits[s.name] = edit
            self.form.addRow(s.label, edit)
        if self.opts.mask_kinds and self.opts.settings:
            self.form.addRow("Mask", self.mask_kind)
        for w in (*self.edits.values(), self.mask_kind, self.apply_button):
            w.setEnabled(self.opts.available)
        self.setVisible(bool(self.opts.settings))
        self._show_origin()
        self._on_edited()

    def values(self) -> dict[str, float | None]:
        """The typed values; text that is not a number becomes NaN (refused by the check)."""
        out = {}
        for name, edit in self.edits.items():
            text = edit.text().strip()
            try:
                out[name] = float(text) if text else None
            except ValueError:
                out[name] = float("nan")
        return out

    def problems(self) -> dict[str, str]:
        return rs.problems(self.original, self.values()) if self.original is not None else {}

    def is_valid(self) -> bool:
        return not self.problems()

    # ------------------------------------------------------------------ actions
    def apply(self) -> bool:
        """Re-simulate from the file's measurement with the typed values; False when refused."""
        if self.original is None or not self.opts.available or not self.is_valid():
            return False
        try:
            m = rs.resimulate(self.original, self.values(), mask_kind=self.mask_kind.currentText())
        except DiffreconError as err:
            self.failed.emit(str(err))
            return False
        self.current = m
        self._show_origin()
        self._on_edited()
        self.derived.emit(m)
        return True

    def revert(self) -> None:
        if self.original is None or self.current is self.original:
            return
        self.set_measurement(self.original)
        self.derived.emit(self.original)

    # ------------------------------------------------------------------ slots
    def _show_origin(self) -> None:
        derived = rs.is_derived(self.current) and self.current is not self.original
        self.origin.setText(f"Using a derived measurement: {self.current.title}." if derived else "")
        self.origin.setVisible(derived)
        self.revert_button.setEnabled(derived)

    def _on_edited(self, *_) -> None:
        bad = self.problems()
        tips = {s.name: s.help for s in self.opts.settings}
        for name, edit in self.edits.items():
            if not self.opts.available:
                edit.setStyleSheet("")
                edit.setToolTip(self.opts.reason)
            else:
                edit.setStyleSheet(INVALID_STYLE if name in bad else "")
                edit.setToolTip(bad.get(name, tips[name]))
        self.mask_kind.setToolTip(self.opts.reason if not self.opts.available else
                                  "Columns outside the centre drawn at random, or equally spaced (fastMRI).")
        self.apply_button.setEnabled(self.opts.available and not bad)
        self.apply_button.setToolTip(self.opts.reason if not self.opts.available else
                                     f"Measure again {self.opts.reason}.")
