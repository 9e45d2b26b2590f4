"""How a run ends, for the window: Stop's offer to finish the samples in progress, and the log line
that records each run's end (time, batches, warnings)."""
from __future__ import annotations

import time

from PySide6 import QtWidgets

FINISH, DISCARD = "finish", "discard"


def batch_in_progress(p) -> bool:
    """True when a Progress event ``p`` shows a batch part-way through its steps."""
    return p is not None and 0 < p.step < p.steps


def ask_how_to_stop(parent: QtWidgets.QWidget, p) -> str | None:
    """FINISH, DISCARD, or None (keep running). The batch in progress holds ``samples`` samples at
    step ``p.step`` of ``p.steps``: stopping plainly drops them; a final denoising step keeps them."""
    box = QtWidgets.QMessageBox(parent)
    box.setIcon(QtWidgets.QMessageBox.Icon.Question)
    box.setWindowTitle("Stop the reconstruction")
    in_batch = p.samples_total - p.samples_done
    box.setText(f"{in_batch} sample(s) are at step {p.step} of {p.steps}.")
    box.setInformativeText(
        "Finish them now with a final denoising step (their current clean estimate; labelled as such in "
        "the result, and their spread is not a posterior std), or discard them and keep only the "
        f"{p.samples_done} sample(s) already finished?")
    finish = box.addButton("Finish with a final denoising step", QtWidgets.QMessageBox.ButtonRole.AcceptRole)
    discard = box.addButton("Discard them", QtWidgets.QMessageBox.ButtonRole.DestructiveRole)
    box.addButton("Keep running", QtWidgets.QMessageBox.ButtonRole.RejectRole)
    box.setDefaultButton(finish)
    box.exec()
    return {finish: FINISH, discard: DISCARD}.get(box.clickedButton())


class RunRecord:
    """Counts a run's warnings and writes its end into the log."""

    def __init__(self):
        self.started = time.monotonic()
        self.warnings = 0

    def start(self) -> None:
        self.started, self.warnings = time.monotonic(), 0

    def note(self, _message: str, level: str) -> None:
        if level in ("warning", "error"):
            self.warnings += 1

    def end_line(self, outcome: str, result=None) -> str:
        """'Run finished: 4 samples in 117.2 s, batches [4], NFE 200, 1 warning.' and the like."""
        parts = [f"Run {outcome}"]
        if result is not None:
            prov = result.provenance
            seconds = result.metrics.get("seconds", time.monotonic() - self.started)
            parts.append(f": {result.n_samples} of {prov.get('samples', result.n_samples)} samples in "
                         f"{seconds:.1f} s, batches {list(prov.get('batches', []))}, "
                         f"NFE {result.metrics.get('nfe', 0):.0f}")
            if prov.get("final_denoising_step"):
                parts.append(f", finished by a final denoising step at step {prov['final_denoising_step']}")
        else:
            parts.append(f" after {time.monotonic() - self.started:.1f} s")
        parts.append(f", {self.warnings} warning{'s' if self.warnings != 1 else ''}.")
        return "".join(parts)
