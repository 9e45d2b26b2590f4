"""The import step: a file of an import format (fastMRI, Data Exchange, NXtomo, DICOM, NIfTI, an
image) opens in a dialog of the choices its importer takes, generated from the registry's
:attr:`~diffrecon.io.importers.ImporterInfo.options`, pre-filled with what the defaults chose,
with a preview of the measurement the choices give. OK hands the previewed
:class:`~diffrecon.session.Opened` to the window, which makes it current as for any measurement.

The reading is the session's (:func:`diffrecon.session.read_file`, Qt-free). A preview reads
the file again in a :class:`~.jobs.Job` (coil maps of a large fastMRI slice take a while), so
the window stays responsive; OK waits for the preview of the current choices."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PySide6 import QtCore, QtGui, QtWidgets

from ..errors import DiffreconError
from ..io.importers import ImporterInfo, ImportOption
from ..session import Opened, read_file
from .image_panel import ImagePanel
from .jobs import Job, JobSignals
from .views import measurement_views

#: Settings key: True opens import formats with the importers' default choices, without this dialog.
USE_DEFAULTS_KEY = "import/use_defaults"
#: Options offered as a list of choices instead of free text.
CHOICES = {"coils": ("auto", "none"), "modality": ("auto", "ct", "other")}
#: Where an option's default value is found in the attributes of what the defaults opened; any
#: other option is left empty (its importer's default), e.g. fastMRI's retrospective acceleration.
_PREFILL = {"slice": ("slice", "detector_row")}


class ReadSignals(JobSignals):
    read = QtCore.Signal(int, object)  # preview number, Opened


def _read(path: Path, options: dict) -> Opened:
    try:
        return read_file(path, **options)
    except OSError as err:
        from ..errors import InputError

        raise InputError(f"File {path} could not be read ({err}).") from None


class _Reader(Job):
    """Reads the file with one set of options off the GUI thread."""

    SIGNALS = ReadSignals

    def __init__(self, number: int, path: Path, options: dict, owner):
        super().__init__(_read, path, options, owner=owner)
        self.number = number

    def route(self, event) -> None:
        self.read.emit(self.number, event.value)


def use_defaults(settings: QtCore.QSettings) -> bool:
    """Whether files of an import format open with the defaults, without asking."""
    return str(settings.value(USE_DEFAULTS_KEY, "false")).lower() in ("true", "1")


def _choices(option: ImportOption) -> tuple[str, ...] | None:
    if option.name == "operator":
        from ..problems import simulate_names

        return simulate_names()
    return CHOICES.get(option.name)


def _prefill(option: ImportOption, m) -> str:
    """The value the importer's default chose for ``option``, as text ('' where it chose none)."""
    if option.name == "size":
        return str(m.image_shape[-1])
    if option.name == "noise":
        return f"{m.noise_sigma:.6g}"
    if option.name == "operator":
        return m.operator.kind
    if option.name == "seed":
        return str(m.attrs.get("seed", 0))
    for key in _PREFILL.get(option.name, ()):
        value = m.attrs.get(key)
        if isinstance(value, (int, float, str)) and not isinstance(value, bool):
            return str(value)
    return ""


class ImportDialog(QtWidgets.QDialog):
    """``ImportDialog(path, info, defaults, settings)``: ``defaults`` is what ``read_file(path)``
    gave; after OK, :attr:`opened` holds the measurement of the chosen options."""

    def __init__(self, path: str | Path, info: ImporterInfo, defaults: Opened,
                 settings: QtCore.QSettings | None = None, parent=None):
        super().__init__(parent)
        self.path, self.info, self.settings = Path(path), info, settings
        self.opened: Opened = defaults
        self.error = ""
        self._previewed: dict[str, Any] | None = {}  # the options the preview shows ({}: the defaults)
        self._pending: dict[str, Any] | None = None  # the options being read
        self._number = 0  # of the latest preview: an older one arriving late is dropped
        self._accept_after = False
        self.job: _Reader | None = None
        self.setWindowTitle(f"Import {self.path.name}")
        self.fields: dict[str, QtWidgets.QWidget] = {}

        form = QtWidgets.QFormLayout()
        form.addRow(QtWidgets.QLabel(f"<b>{info.title[:1].upper()}{info.title[1:]}</b> ({self.path.name})"))
        for option in info.options:
            field = self._field(option, _prefill(option, defaults.measurement))
            field.setToolTip(option.help)
            self.fields[option.name] = field
            form.addRow(option.name.replace("_", " ").capitalize(), field)
        self._initial = {name: self.value(name) for name in self.fields}  # what the defaults chose
        self.preview_button = QtWidgets.QPushButton("Preview")
        self.preview_button.setToolTip("Read the file again with these choices and show the measurement.")
        self.preview_button.clicked.connect(lambda: self.preview())
        form.addRow(self.preview_button)
        self.note = QtWidgets.QLabel(wordWrap=True)
        self.note.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        form.addRow(self.note)
        self.ask = QtWidgets.QCheckBox("Use the default choices without asking (File menu: Ask for import choices)")
        form.addRow(self.ask)
        left = QtWidgets.QWidget()
        left.setLayout(form)
        left.setMinimumWidth(320)

        self.measurement_panel = ImagePanel("Measurement")
        self.direct_panel = ImagePanel("Direct reconstruction")
        images = QtWidgets.QHBoxLayout()
        images.addWidget(self.measurement_panel)
        images.addWidget(self.direct_panel)
        buttons = QtWidgets.QDialogButtonBox(QtWidgets.QDialogButtonBox.StandardButton.Ok
                                             | QtWidgets.QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        self.ok_button = buttons.button(QtWidgets.QDialogButtonBox.StandardButton.Ok)
        right = QtWidgets.QVBoxLayout()
        right.addLayout(images, 1)
        right.addWidget(buttons)
        top = QtWidgets.QHBoxLayout(self)
        top.addWidget(left)
        top.addLayout(right, 1)
        self.resize(1100, 520)
        self._show(defaults)

    # ------------------------------------------------------------------ fields
    def _field(self, option: ImportOption, value: str) -> QtWidgets.QWidget:
        choices = _choices(option)
        if choices is not None:
            box = QtWidgets.QComboBox()
            box.addItems(list(choices))
            box.setCurrentText(value or choices[0])
            return box
        edit = QtWidgets.QLineEdit(value)
        edit.setPlaceholderText("default" if option.kind is not dict else "key=value, … (default: none)")
        if option.kind is int:
            edit.setValidator(QtGui.QIntValidator(0, 1 << 30, edit))
        elif option.kind is float:
            edit.setValidator(QtGui.QDoubleValidator(0.0, 1e30, 12, edit))
        edit.returnPressed.connect(lambda: self.preview())
        return edit

    def value(self, name: str) -> str:
        field = self.fields[name]
        return field.currentText() if isinstance(field, QtWidgets.QComboBox) else field.text().strip()

    def set_value(self, name: str, text: str) -> None:
        """Set the field of option ``name`` (scripts and tests); the preview follows on :meth:`preview`."""
        field = self.fields[name]
        if isinstance(field, QtWidgets.QComboBox):
            if field.findText(text) < 0:
                raise ValueError(f"{text!r} is not a choice of {name}")
            field.setCurrentText(text)
        else:
            field.setText(text)

    def options(self) -> dict[str, Any]:
        """The options the fields give, typed; an empty field leaves the importer's default.
        InputError naming the option when a text is not of its kind."""
        from ..errors import InputError
        from ..problems import parse_options

        out: dict[str, Any] = {}
        for option in self.info.options:
            text = self.value(option.name)
            if not text:
                continue
            if option.kind is dict:
                pairs = [p.split("=", 1) for p in text.replace(";", ",").split(",") if p.strip()]
                if any(len(p) != 2 for p in pairs):
                    raise InputError(f"Import option {option.name} is {text!r}; expected key=value pairs, "
                                     "separated by commas.")
                operator = out.get("operator") or self.value("operator")
                out[option.name] = parse_options(operator, {k.strip(): v.strip() for k, v in pairs})
                continue
            try:
                out[option.name] = option.kind(text)
            except ValueError:
                raise InputError(f"Import option {option.name} is {text!r}; expected "
                                 f"{'a whole number' if option.kind is int else 'a number'}.") from None
        return out

    # ------------------------------------------------------------------ preview
    def preview(self, accept_after: bool = False) -> bool:
        """Read the file with the fields' options in the background; the preview (or the reason
        they are refused, under the fields) follows. False when an option's text is refused here.
        With ``accept_after`` the dialog closes with OK once the preview has succeeded."""
        try:
            options = self.options()
        except DiffreconError as err:
            self._refused(str(err))
            return False
        self._number += 1
        self._accept_after = accept_after
        self._pending = options
        self.job = _Reader(self._number, self.path, options, owner=self)
        self.job.read.connect(self._on_read)
        self.job.failed.connect(lambda text, n=self._number: self._on_failed(n, text))
        self.note.setText("Reading the file with these choices…")
        self.preview_button.setEnabled(False)
        self.ok_button.setEnabled(False)
        self.job.start()
        return True

    def busy(self) -> bool:
        """Whether a preview is being read."""
        return self.job is not None and self.job.running() or self._pending is not None

    def _on_read(self, number: int, opened: Opened) -> None:
        if number != self._number:  # an older preview, overtaken by a newer one
            return
        self.error = ""
        self.opened, self._previewed, self._pending = opened, self._pending, None
        self._idle()
        self._show(opened)
        if self._accept_after:
            self.accept()

    def _on_failed(self, number: int, text: str) -> None:
        if number == self._number:
            self._pending = None
            self._idle()
            self._refused(text)

    def _idle(self) -> None:
        self.preview_button.setEnabled(True)
        self.ok_button.setEnabled(True)

    def _refused(self, text: str) -> None:
        self.error = text
        self._previewed = None
        self.note.setText(f"<span style='color:#c0392b'>{text}</span>")

    def _show(self, opened: Opened) -> None:
        m = opened.measurement
        shown, direct = measurement_views(m)
        self.measurement_panel.set_title(shown.title)
        self.measurement_panel.set_unit(shown.unit)
        self.measurement_panel.set_image(shown.image)
        if direct is not None:
            self.direct_panel.set_title(direct.title)
            self.direct_panel.set_unit(direct.unit)
            self.direct_panel.set_image(direct.image)
        else:
            self.direct_panel.clear()
        y = np.asarray(m.y)
        self.note.setText(f"{opened.note}<br>Measurement {' × '.join(map(str, y.shape))} {y.dtype}, "
                          f"{m.operator.kind}, noise σ {m.noise_sigma:.4g} {m.units}"
                          + ("" if m.units.endswith(".") else "."))  # "a.u." ends the sentence itself

    # ------------------------------------------------------------------ closing
    def accept(self) -> None:
        """OK: the measurement of the fields' options (read first when they changed since the preview)."""
        try:
            current = self.options()
        except DiffreconError as err:
            self._refused(str(err))
            return
        if self._previewed != current and not (self._previewed == {} and self._same_as_defaults()):
            self.preview(accept_after=True)
            return
        if self.settings is not None and self.ask.isChecked():
            self.settings.setValue(USE_DEFAULTS_KEY, True)
        super().accept()

    def reject(self) -> None:
        self._number += 1  # a preview still being read is not wanted any more
        self._pending = None
        super().reject()

    def _same_as_defaults(self) -> bool:
        """Whether the fields still show what the defaults chose (no need to read the file again)."""
        return all(self.value(name) == text for name, text in self._initial.items())
