"""How a run ends, for the window: the Finish now button beside Stop (keep the samples in progress,
by a final denoising step), and the log line that records each run's end (time, batches, warnings)."""
from __future__ import annotations

import time

from PySide6 import QtWidgets

FINISH = "finish"


def finish_button(on_click) -> QtWidgets.QPushButton:
    """Beside Stop: end the run now without discarding the batch in progress. On the CPU all
    samples run as one batch, so a plain Stop before the last step keeps nothing."""
    button = QtWidgets.QPushButton("Finish now")
    button.setToolTip("Stop now and finish the samples in progress with a final denoising step (their current "
                      "clean estimate) instead of discarding them. The result says so, and their spread is "
                      "not a posterior std. Stop keeps only samples that ran all their steps.")
    button.clicked.connect(lambda: on_click())
    return button


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
