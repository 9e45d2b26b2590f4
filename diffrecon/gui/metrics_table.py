"""The metrics beside the result: PSNR, SSIM, residual vs noise, NFE, time, peak memory."""
from __future__ import annotations

from PySide6 import QtGui, QtWidgets

from .memory import format_bytes

_LABELS = {
    "psnr": ("PSNR", "{:.2f} dB"), "ssim": ("SSIM", "{:.4f}"),
    "residual_ratio": ("Residual / noise", "{:.3f}"), "residual": ("Residual ‖Ax−y‖", "{:.4g}"), "peak_memory_bytes": ("Peak memory", ""),
    "nfe": ("Network evaluations", "{:.0f}"), "grad_evals": ("…with gradients", "{:.0f}"),
    "op_calls": ("Operator calls", "{:.0f}"), "time": ("Time", "{:.2f} s"),
    "wall_time": ("Time", "{:.2f} s"), "seconds": ("Time", "{:.2f} s"),
    "coverage": ("±1σ coverage", "{:.3f}"), "coverage90": ("90 % interval coverage", "{:.3f}"),
    "nrmse": ("NRMSE", "{:.4f}"), "std_error_corr": ("corr(std, |error|)", "{:.3f}"),
    "operator_calls": ("Operator calls", "{:.0f}"), "nfe_per_sample": ("NFE per sample", "{:.0f}"),
    "equivalent_nfe": ("Full-size evaluations", "{:.1f}"),
    "equivalent_nfe_per_sample": ("Full-size NFE per sample", "{:.1f}"),
    "seconds_per_sample": ("Time per sample", "{:.3f} s"), "samples": ("Samples", "{:.0f}"),
    "prior_fit": ("Prior fit before run (1: fits)", "{:.2f}"), "prior_fit_after": ("Prior fit of the mean", "{:.2f}"),
}


def format_metric(key: str, value) -> tuple[str, str]:
    if key == "prior_fit_warning":
        from ..prior_fit import WARNING
        return "Prior fit", ("⚠ " + WARNING) if float(value) else "no sign of misfit"
    label, fmt = _LABELS.get(key, (key.replace("_", " "), "{:.4g}"))
    if "memory" in key or key.endswith("_bytes"):
        return label, format_bytes(float(value))
    try:
        return label, fmt.format(float(value))
    except (TypeError, ValueError):
        return label, str(value)


class MetricsTable(QtWidgets.QTableWidget):
    def __init__(self, parent=None):
        super().__init__(0, 2, parent)
        self.setHorizontalHeaderLabels(["Metric", "Value"])
        self.verticalHeader().hide()
        self.horizontalHeader().setStretchLastSection(True)
        self.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)

    def set_metrics(self, metrics: dict, extra: dict | None = None, notes: dict | None = None) -> None:
        """``notes``: metric key -> why its value must not be read at face value (diffrecon.guard.metric_notes)."""
        notes = notes or {}
        items = {**metrics, **(extra or {})}
        rows = [(*format_metric(k, v), notes.get(k, "")) for k, v in items.items()]
        self.setRowCount(len(rows))
        for r, (label, value, note) in enumerate(rows):
            self.setItem(r, 0, QtWidgets.QTableWidgetItem(label))
            self.setItem(r, 1, QtWidgets.QTableWidgetItem(f"{value} ⚠ {note}" if note else value))
            if note:
                for c in (0, 1):
                    self.item(r, c).setForeground(QtGui.QColor("#d04040"))
                    self.item(r, c).setToolTip(note)
        self.resizeColumnToContents(0)

    def as_dict(self) -> dict[str, str]:
        return {self.item(r, 0).text(): self.item(r, 1).text() for r in range(self.rowCount())}
