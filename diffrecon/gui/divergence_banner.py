"""The banner over the result when a run goes wrong: which samples diverged at which step, which
check fired and what to try (from :mod:`diffrecon.guard`), shown as soon as the engine reports it
and kept with the result; plus the two guard settings of a run (what a divergence stops, retry)."""
from __future__ import annotations

from PySide6 import QtCore, QtWidgets

from ..guard import divergence_of, summary

BANNER_STYLE = ("QFrame#divergenceBanner { background: #8a1f1f; border-radius: 4px; }"
                " QFrame#divergenceBanner QLabel { color: white; font-weight: bold; }")
ON_DIVERGENCE = (("sample", "stop the sample"), ("all", "stop the run"), ("continue", "only report"))


class DivergenceBanner(QtWidgets.QFrame):
    """Hidden until ``show_text`` (live) or ``show_result`` (a diverged result); ``clear`` hides."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("divergenceBanner")
        self.setStyleSheet(BANNER_STYLE)
        self.label = QtWidgets.QLabel()
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        self.close_button = QtWidgets.QToolButton(text="✕", autoRaise=True)
        self.close_button.setToolTip("Hide this notice (the result stays flagged)")
        self.close_button.setStyleSheet("color: white;")
        self.close_button.clicked.connect(self.hide)
        layout = QtWidgets.QHBoxLayout(self)
        layout.setContentsMargins(10, 6, 6, 6)
        layout.addWidget(self.label, 1)
        layout.addWidget(self.close_button, 0, QtCore.Qt.AlignmentFlag.AlignTop)
        self.hide()

    def text(self) -> str:
        return "" if self.isHidden() else self.label.text()

    def show_text(self, text: str) -> None:
        self.label.setText(f"⚠ {text}")
        self.show()

    def show_result(self, result) -> bool:
        """Show the result's divergence (or retry) sentence; hide when it has none."""
        text = summary(result)
        if text:
            self.show_text(text)
        else:
            self.clear()
        return divergence_of(result) is not None

    def clear(self) -> None:
        self.label.clear()
        self.hide()


class GuardOptions(QtWidgets.QWidget):
    """What a diverged sample stops, and whether to retry once with a smaller guidance weight."""

    changed = QtCore.Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.mode = QtWidgets.QComboBox()
        for key, text in ON_DIVERGENCE:
            self.mode.addItem(text, key)
        self.mode.setToolTip("When a sample's estimate turns NaN, leaves the prior's range or its data residual "
                             "grows far past the noise level: leave that sample out and go on with the others, "
                             "stop the whole run, or only report it.")
        self.retry = QtWidgets.QCheckBox("retry once, ¼ guidance")
        self.retry.setToolTip("After a divergence, run once more with a quarter of the guidance weight "
                              "(DPS-type solvers); the result records that it was retried.")
        layout = QtWidgets.QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.mode, 1)
        layout.addWidget(self.retry)
        self.mode.currentIndexChanged.connect(self.changed)
        self.retry.toggled.connect(self.changed)

    def values(self) -> dict:
        return {"on_divergence": self.mode.currentData(), "retry_on_divergence": self.retry.isChecked()}

    def set_values(self, on_divergence: str, retry: bool) -> None:
        blockers = [QtCore.QSignalBlocker(w) for w in (self.mode, self.retry)]
        self.mode.setCurrentIndex(max(self.mode.findData(on_divergence), 0))
        self.retry.setChecked(bool(retry))
        del blockers


def label_panels(view, result) -> None:
    """Titles of the result panels that say what a diverged result's images are."""
    record = divergence_of(result)
    if record is None:
        return
    n, lost = result.n_samples, len(record.get("samples", []))
    if record.get("last_estimates"):
        view.panels["mean"].set_title(f"Diverged · last estimates of {n} samples")
        view.panels["std"].set_title("Their spread (not a posterior std)")
    else:
        kept = "kept" if record.get("on_divergence") == "continue" else "left out"
        view.panels["mean"].set_title(f"Mean · {n} samples ({lost} diverged, {kept})")
