"""The window's A/B commands: pin the current result as A, or open a result file as A; the
result shown next is B (see ab_view.py). A mixin so main_window.py stays a wiring file."""
from __future__ import annotations

from pathlib import Path

from PySide6 import QtWidgets

from ..errors import DiffreconError, InputError
from .views import read_if_result, to_2d


class ABActions:
    """Needs ``self.view`` (ResultView), ``self.result``, ``report_error`` and ``show_message``."""

    def pin_result_as_a(self) -> bool:
        """Keep the current mean as reference A of the A/B view; later results are B."""
        if self.view.mean is None:
            self.report_error("There is no result to pin yet; run a reconstruction first.")
            return False
        label = f"{self.result.provenance.get('solver', 'result')} (pinned)" if self.result else "pinned"
        self.view.ab.set_a(self.view.mean, label)
        self.view.tabs.setCurrentWidget(self.view.ab)
        self.show_message(f"Pinned the current result as A ({label}); the next result is B.")
        return True

    def open_a_dialog(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Open result file as A", "", "HDF5 results (*.h5 *.hdf5)")
        if path:
            self.open_a_file(path)

    def open_a_file(self, path: str | Path) -> bool:
        try:
            result = read_if_result(str(path))
            if result is None:
                raise InputError(f"{Path(path).name} is not a diffrecon result file; open one written by Export.")
        except (DiffreconError, OSError) as err:
            self.report_error(str(err) if isinstance(err, DiffreconError) else f"{Path(path).name} could not be opened ({err}).")
            return False
        self.view.ab.set_a(to_2d(result.mean), Path(path).name)
        self.view.tabs.setCurrentWidget(self.view.ab)
        self.show_message(f"Opened {Path(path).name} as A.")
        return True
