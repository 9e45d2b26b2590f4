"""The sortable metrics table of a comparison: one row per run, numbers sort as numbers."""
from __future__ import annotations

import math

from PySide6 import QtCore, QtWidgets

from ..compare import METRIC_KEYS, Comparison, metrics_rows
from .metrics_table import format_metric

_SORT_ROLE = QtCore.Qt.ItemDataRole.UserRole


class _Item(QtWidgets.QTableWidgetItem):
    """Sorts by the number behind the text; empty cells (NaN) sort last."""

    def __lt__(self, other):
        a, b = self.data(_SORT_ROLE), other.data(_SORT_ROLE)
        if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
            a = math.inf if math.isnan(a) else a
            b = math.inf if math.isnan(b) else b
            return a < b
        return self.text() < other.text()  # super().__lt__ would call back into this method


class CompareTable(QtWidgets.QTableWidget):
    #: leading columns: (header, row key)
    RUN_COLUMNS = (("Solver", "solver"), ("Steps", "steps"), ("Seed", "seed"), ("Samples", "samples"),
                   ("Status", "status"))

    def __init__(self, parent=None):
        super().__init__(0, len(self.RUN_COLUMNS) + len(METRIC_KEYS), parent)
        headers = [h for h, _ in self.RUN_COLUMNS] + [format_metric(k, 0)[0] for k in METRIC_KEYS]
        self.setHorizontalHeaderLabels(headers)
        self.keys = [k for _, k in self.RUN_COLUMNS] + list(METRIC_KEYS)
        self.verticalHeader().hide()
        self.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSortingEnabled(True)

    def show_comparison(self, comparison: Comparison) -> None:
        rows = metrics_rows(comparison)
        self.setSortingEnabled(False)  # filling a sorted table reorders rows under our hands
        self.setRowCount(len(rows))
        for r, row in enumerate(rows):
            for c, key in enumerate(self.keys):
                value = row[key]
                if isinstance(value, float):
                    text = "" if math.isnan(value) else format_metric(key, value)[1]
                else:
                    text = str(value)
                item = _Item(text)
                item.setData(_SORT_ROLE, value)
                if key == "solver":
                    item.setToolTip(row["run"] if row["std_is_posterior"] is not False
                                    else f"{row['run']}: its std is not a posterior std (see diffrecon solvers)")
                self.setItem(r, c, item)
        self.setSortingEnabled(True)
        self.resizeColumnsToContents()

    def column_values(self, key: str) -> list:
        """The numbers (or texts) of column ``key`` in the order shown."""
        c = self.keys.index(key)
        return [self.item(r, c).data(_SORT_ROLE) for r in range(self.rowCount())]
