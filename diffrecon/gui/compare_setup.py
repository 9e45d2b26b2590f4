"""The comparison form: which solvers (those the forward model cannot serve greyed, with the
reason), step budgets, seeds, samples, and an equal-budget mode (network evaluations or seconds).
It only reads and writes a :class:`~diffrecon.compare.CompareSpec`; it never starts work."""
from __future__ import annotations

from PySide6 import QtCore, QtWidgets

from ..compare import CompareSpec
from ..errors import InputError
from ..measurement import Measurement

MODES = ("Fixed steps", "Equal network evaluations", "Equal seconds")


def unmet_reasons(measurement: Measurement | None) -> dict[str, str]:
    """solver -> why this measurement's forward model cannot serve it (only the refused ones)."""
    from ..operators import build_operator
    from ..solvers import SOLVERS

    if measurement is None:
        return {}
    try:
        op = build_operator(measurement.operator)
    except Exception as err:  # a broken operator spec greys every solver with the reason
        return {name: f"the forward model cannot be built ({err})" for name in SOLVERS}
    return {name: reason for name, info in SOLVERS.items() if (reason := info.unmet_need(op))}


def _parse_ints(text: str, what: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.replace(";", ",").split(",") if v.strip())
    except ValueError:
        raise InputError(f"{what} must be whole numbers separated by commas (got {text!r}).") from None
    if not values:
        raise InputError(f"{what} is empty; give at least one whole number, e.g. 50.")
    return values


class CompareSetup(QtWidgets.QWidget):
    changed = QtCore.Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        from ..solvers import SOLVERS

        self.solvers = QtWidgets.QListWidget()
        self.solvers.setMaximumHeight(170)
        for name, info in SOLVERS.items():
            item = QtWidgets.QListWidgetItem(f"{name} — {info.title}")
            item.setData(QtCore.Qt.ItemDataRole.UserRole, name)
            item.setFlags(item.flags() | QtCore.Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(QtCore.Qt.CheckState.Unchecked)
            self.solvers.addItem(item)
        self.steps = QtWidgets.QLineEdit("50")
        self.steps.setToolTip("Step budgets, comma-separated: every solver runs once per budget and seed.")
        self.seeds = QtWidgets.QLineEdit("0")
        self.samples = QtWidgets.QSpinBox(minimum=1, maximum=1024, value=4)
        self.mode = QtWidgets.QComboBox()
        self.mode.addItems(MODES)
        self.budget = QtWidgets.QDoubleSpinBox(minimum=0.01, maximum=1e9, decimals=2, value=200.0)
        self.budget.setToolTip("Network evaluations of a whole run (all samples), or its predicted seconds.")
        form = QtWidgets.QFormLayout(self)
        form.setContentsMargins(4, 4, 4, 4)
        form.addRow("Solvers", self.solvers)
        form.addRow("Steps", self.steps)
        form.addRow("Seeds", self.seeds)
        form.addRow("Samples", self.samples)
        form.addRow("Budget", self.mode)
        form.addRow("Budget per run", self.budget)
        self.mode.currentIndexChanged.connect(self._on_mode)
        self.solvers.itemChanged.connect(lambda _item: self.changed.emit())
        self._on_mode(0)

    # ------------------------------------------------------------------ model -> view
    def set_measurement(self, measurement: Measurement | None) -> None:
        """Grey the solvers this forward model cannot serve; the tooltip says why."""
        reasons = unmet_reasons(measurement)
        with QtCore.QSignalBlocker(self.solvers):
            for row in range(self.solvers.count()):
                item = self.solvers.item(row)
                reason = reasons.get(item.data(QtCore.Qt.ItemDataRole.UserRole))
                flags = item.flags()
                if reason:
                    item.setFlags(flags & ~QtCore.Qt.ItemFlag.ItemIsEnabled)
                    item.setCheckState(QtCore.Qt.CheckState.Unchecked)
                    item.setToolTip(reason[0].upper() + reason[1:] + ".")
                else:
                    item.setFlags(flags | QtCore.Qt.ItemFlag.ItemIsEnabled)
                    item.setToolTip("")
        self.changed.emit()

    def set_spec(self, spec: CompareSpec) -> None:
        with QtCore.QSignalBlocker(self.solvers):
            for row in range(self.solvers.count()):
                item = self.solvers.item(row)
                on = item.data(QtCore.Qt.ItemDataRole.UserRole) in spec.solvers and self.is_enabled(row)
                item.setCheckState(QtCore.Qt.CheckState.Checked if on else QtCore.Qt.CheckState.Unchecked)
        self.steps.setText(", ".join(map(str, spec.steps)))
        self.seeds.setText(", ".join(map(str, spec.seeds)))
        self.samples.setValue(spec.samples)
        if spec.budget_nfe is not None:
            self.mode.setCurrentIndex(1)
            self.budget.setValue(spec.budget_nfe)
        elif spec.budget_seconds is not None:
            self.mode.setCurrentIndex(2)
            self.budget.setValue(spec.budget_seconds)
        else:
            self.mode.setCurrentIndex(0)
        self.changed.emit()

    def is_enabled(self, row: int) -> bool:
        return bool(self.solvers.item(row).flags() & QtCore.Qt.ItemFlag.ItemIsEnabled)

    # ------------------------------------------------------------------ view -> model
    def checked(self) -> list[str]:
        return [self.solvers.item(r).data(QtCore.Qt.ItemDataRole.UserRole) for r in range(self.solvers.count())
                if self.solvers.item(r).checkState() == QtCore.Qt.CheckState.Checked and self.is_enabled(r)]

    def spec(self) -> CompareSpec:
        """The form as a CompareSpec; InputError names the field that is wrong."""
        mode = self.mode.currentIndex()
        steps = _parse_ints(self.steps.text(), "Steps") if mode == 0 else (1,)
        return CompareSpec(
            solvers=tuple(self.checked()), steps=steps, seeds=_parse_ints(self.seeds.text(), "Seeds"),
            samples=self.samples.value(),
            budget_nfe=self.budget.value() if mode == 1 else None,
            budget_seconds=self.budget.value() if mode == 2 else None,
        )

    # ------------------------------------------------------------------ slots
    def _on_mode(self, index: int) -> None:
        self.steps.setEnabled(index == 0)
        self.budget.setEnabled(index != 0)
        self.budget.setSuffix("" if index != 2 else " s")
        self.changed.emit()
