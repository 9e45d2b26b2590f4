"""Forward-model panel: what the file says about the measurement (kind, shapes, units, noise
level), with the noise level editable and validated inline."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
from PySide6 import QtCore, QtWidgets

from ..measurement import Measurement


class ForwardPanel(QtWidgets.QWidget):
    changed = QtCore.Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.measurement: Measurement | None = None
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
        form = QtWidgets.QFormLayout(self)
        form.addRow("Forward model", self.kind)
        form.addRow("Image shape", self.image_shape)
        form.addRow("Measurement", self.meas_shape)
        form.addRow("Units", self.units)
        form.addRow("Noise σ", self.noise)
        form.addRow("", self.noise_error)
        self.noise.textChanged.connect(self._on_noise_edited)

    def set_measurement(self, m: Measurement) -> None:
        self.measurement = m
        y = np.asarray(m.y)
        self.kind.setText(m.operator.kind)
        self.image_shape.setText(" × ".join(map(str, m.image_shape)))
        self.meas_shape.setText(f"{' × '.join(map(str, y.shape))} {y.dtype}")
        self.units.setText(f"{m.units}, pixel {m.pixel_size:g} {m.pixel_unit}")
        with QtCore.QSignalBlocker(self.noise):
            self.noise.setText(f"{m.noise_sigma:.6g}")
        self._on_noise_edited(self.noise.text())

    def noise_sigma(self) -> float | None:
        """The edited noise level, or None while the text is not a valid one."""
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

    def _on_noise_edited(self, _text: str) -> None:
        ok = self.is_valid()
        self.noise.setStyleSheet("" if ok else "border: 1px solid #d04040;")
        self.noise_error.setText("" if ok else "Noise σ must be a finite number ≥ 0.")
        self.noise_error.setVisible(not ok)
        self.changed.emit()
