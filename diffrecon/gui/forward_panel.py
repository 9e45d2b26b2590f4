"""Forward-model panel: what the file says about the measurement (kind, shapes, units, noise
level), with the noise level editable and validated inline, and the sampling (MRI acceleration,
missing fraction, CT views) editable where the file leaves the choice (:mod:`.resimulate_panel`)."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
from PySide6 import QtCore, QtWidgets

from ..io.importers.noise import describe_noise_source, is_estimated
from ..measurement import Measurement
from .resimulate_panel import ResimulatePanel


class ForwardPanel(QtWidgets.QWidget):
    changed = QtCore.Signal()
    replaced = QtCore.Signal(object)  # a re-simulated Measurement, or the file's own one again

    def __init__(self, parent=None):
        super().__init__(parent)
        self.measurement: Measurement | None = None
        self._file_noise = ("", 0.0)  # (shown text, exact value) of the file's noise level
        self.kind = QtWidgets.QLabel("–")
        self.image_shape = QtWidgets.QLabel("–")
        self.meas_shape = QtWidgets.QLabel("–")
        self.units = QtWidgets.QLabel("–")
        self.noise = QtWidgets.QLineEdit()
        self.noise.setToolTip("Standard deviation of the white Gaussian noise on y (per real component).")
        self.noise_error = QtWidgets.QLabel()
        self.noise_error.setStyleSheet("color: #d04040;")
        self.noise_error.setWordWrap(True)
        self.noise_error.hide()
        self.noise_source = QtWidgets.QLabel()
        self.noise_source.setWordWrap(True)
        self.noise_source.setToolTip("Where the file's noise level came from (the importer records it).")
        self.import_note = QtWidgets.QLabel()
        self.import_note.setWordWrap(True)
        self.import_note.setToolTip("The choices the importer made; open the file again to change them in the import dialog.")
        form = self.form = QtWidgets.QFormLayout(self)
        form.addRow("Imported", self.import_note)
        form.addRow("Forward model", self.kind)
        form.addRow("Image shape", self.image_shape)
        form.addRow("Measurement", self.meas_shape)
        form.addRow("Units", self.units)
        form.addRow("Noise σ", self.noise)
        form.addRow("", self.noise_error)
        form.addRow("σ from", self.noise_source)
        self.sampling = ResimulatePanel()
        form.addRow(self.sampling)
        self.noise.textChanged.connect(self._on_noise_edited)
        self.sampling.derived.connect(self._on_derived)

    def set_import_note(self, note: str) -> None:
        """The importer's default choices for the open file (none for this project's own files)."""
        self.import_note.setText(note)
        self.form.setRowVisible(self.import_note, bool(note))

    def set_measurement(self, m: Measurement) -> None:
        """A newly opened file (its sampling controls start from the file's values)."""
        self._show(m)
        self.sampling.set_measurement(m)
        self._file_noise = (f"{m.noise_sigma:.6g}", float(m.noise_sigma))
        with QtCore.QSignalBlocker(self.noise):
            self.noise.setText(self._file_noise[0])
        self._on_noise_edited(self.noise.text())

    def _show_noise_source(self, m: Measurement) -> None:
        text = describe_noise_source(m.attrs)
        self.noise_source.setText(text)
        self.noise_source.setStyleSheet("" if is_estimated(text) or text.startswith("simulated") else "color: #d08020;")

    def _show(self, m: Measurement) -> None:
        self.measurement = m
        y = np.asarray(m.y)
        self.kind.setText(m.operator.kind)
        self.image_shape.setText(" × ".join(map(str, m.image_shape)))
        self.meas_shape.setText(f"{' × '.join(map(str, y.shape))} {y.dtype}")
        self.units.setText(f"{m.units}, pixel {m.pixel_size:g} {m.pixel_unit}")
        self._show_noise_source(m)

    def noise_sigma(self) -> float | None:
        """The edited noise level, or None while the text is not a valid one."""
        if self.noise.text() == self._file_noise[0]:
            return self._file_noise[1]  # the file's value unrounded, not its 6-digit display
        try:
            value = float(self.noise.text())
        except ValueError:
            return None
        return value if math.isfinite(value) and value >= 0 else None

    def is_valid(self) -> bool:
        return self.noise_sigma() is not None

    def edited_measurement(self) -> Measurement | None:
        """The measurement with the edited noise level (file and operator spec agree)."""
        m, sigma = self.measurement, self.noise_sigma()
        if m is None or sigma is None:
            return None
        if sigma == m.noise_sigma:
            return m
        spec = dataclasses.replace(m.operator, noise_sigma=sigma)
        return dataclasses.replace(m, noise_sigma=sigma, operator=spec)

    def _on_derived(self, m: Measurement) -> None:
        # the typed noise level stays: it is the solver's assumption, the data's noise is the file's
        self._show(m)
        self.replaced.emit(m)
        self.changed.emit()

    def _on_noise_edited(self, _text: str) -> None:
        ok = self.is_valid()
        self.noise.setStyleSheet("" if ok else "border: 1px solid #d04040;")
        self.noise_error.setText("" if ok else "Noise σ must be a finite number ≥ 0.")
        self.noise_error.setVisible(not ok)
        self.changed.emit()
