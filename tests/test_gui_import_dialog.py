"""The import step in the window, offscreen: a file of each import format opens in a dialog of
that format's options (from the importer registry), pre-filled with what the defaults chose; a
changed option changes the measurement that opens; OK opens it and the window reconstructs it
with no command-line step; Cancel keeps the measurement before; drag and drop goes the same way;
the recent files drop a deleted file."""
import os

os.environ["QT_QPA_PLATFORM"] = "offscreen"

import numpy as np  # noqa: E402
import pytest  # noqa: E402

pytest.importorskip("PySide6")
pytest.importorskip("pydicom")
pytest.importorskip("nibabel")
from PySide6 import QtCore, QtGui  # noqa: E402

from gui_windows import _run, make_window  # noqa: E402,F401 - fixtures
from medical_files import write_nifti, write_series, write_stack  # noqa: E402
from test_importers import WRITERS  # noqa: E402
from diffrecon.engine import RunConfig  # noqa: E402
from diffrecon.gui.import_dialog import ImportDialog  # noqa: E402
from diffrecon.io.importers import IMPORTERS  # noqa: E402

GAUSSIAN_3 = RunConfig(prior="gaussian", steps=3, samples=2, device="cpu", solver="dps")


def nifti_volume(path):
    """Five 16 x 16 slices whose value is 10 x (slice index + 1)."""
    return write_nifti(path, np.stack([np.full((16, 16), 10.0 * (k + 1), np.float32) for k in range(5)], axis=-1))


#: A file of each format with options, and an option change that must show in the measurement:
#: (writer, option, new text, how to read the chosen value back from the measurement).
FILES = {
    "fastmri": (lambda d: WRITERS["fastmri"](d / "f.h5") and d / "f.h5", "slice", "0", lambda m: m.attrs["slice"]),
    "dxchange": (lambda d: WRITERS["dxchange"](d / "d.h5") and d / "d.h5", "slice", "0",
                 lambda m: m.attrs["detector_row"]),
    "nxtomo": (lambda d: WRITERS["nxtomo"](d / "n.h5") and d / "n.h5", "slice", "2",
               lambda m: m.attrs["detector_row"]),
    "dicom": (lambda d: write_series(d / "series"), "slice", "4", lambda m: m.attrs["slice"]),
    "nifti": (lambda d: nifti_volume(d / "v.nii"), "slice", "0", lambda m: m.attrs["slice"]),
    "image": (lambda d: write_stack(d / "s.tif"), "size", "8", lambda m: m.image_shape[-1]),
}


def test_every_format_with_options_has_a_file_here():
    assert set(FILES) == {name for name, info in IMPORTERS.items() if info.options}


def open_dialog(window, path) -> ImportDialog:
    assert window.open_file(path), window.last_error
    dialog = window.import_dialog
    assert dialog.isVisible()
    return dialog


def preview(qtbot, dialog) -> None:
    """Preview and wait for the file to be read with the fields' choices."""
    assert dialog.preview(), dialog.error
    qtbot.waitUntil(lambda: not dialog.busy(), timeout=20000)


def ok(qtbot, dialog) -> None:
    """OK, and wait for the reading it may start."""
    dialog.accept()
    qtbot.waitUntil(lambda: not dialog.busy(), timeout=20000)


@pytest.mark.parametrize("fmt", sorted(FILES))
def test_dialog_shows_the_formats_options_and_a_changed_option_changes_what_opens(qtbot, make_window, tmp_path, fmt):
    window = make_window()
    before = window.measurement
    write, option, text, chosen = FILES[fmt]
    path = write(tmp_path)
    dialog = open_dialog(window, path)
    assert set(dialog.fields) == set(IMPORTERS[fmt].option_names)
    assert window.measurement is before  # nothing opens before OK
    default_value = chosen(dialog.opened.measurement)
    assert str(default_value) != text
    if option == "slice":  # pre-filled with the slice the defaults chose
        assert dialog.value("slice") == str(default_value)
    default_y = np.asarray(dialog.opened.measurement.y).copy()
    shown = dialog.measurement_panel.data.copy()
    dialog.set_value(option, text)
    preview(qtbot, dialog)
    assert not dialog.error and chosen(dialog.opened.measurement) == int(text)
    y = np.asarray(dialog.opened.measurement.y)
    assert y.shape != default_y.shape or not np.allclose(y, default_y)
    assert dialog.measurement_panel.data.shape != shown.shape or not np.allclose(dialog.measurement_panel.data, shown)
    dialog.accept()  # what the preview read opens, without reading again
    assert not dialog.busy()
    assert window.measurement is not before and chosen(window.measurement) == int(text)
    assert f"{option} {text}" in window.forward.import_note.text()
    assert window.recent_files()[0] == str(path.resolve())


def test_dicom_slice_choice_opens_that_slices_attenuation(qtbot, make_window, tmp_path):
    """The series' slice k holds HU 100 k: the chosen slice's value, converted to 1/cm, is what opens."""
    window = make_window()
    dialog = open_dialog(window, write_series(tmp_path / "series"))
    assert "operator" in dialog.fields and "modality" in dialog.fields and "noise" in dialog.fields
    dialog.set_value("slice", "3")
    dialog.set_value("noise", "0")
    ok(qtbot, dialog)
    truth = window.measurement.ground_truth
    mu_water = 0.193  # HU 300 -> mu_water (1 + 300 / 1000)
    assert window.measurement.units == "1/cm"
    assert np.allclose(truth, mu_water * 1.3, rtol=1e-4)
    assert np.allclose(window.measurement.y, truth, atol=1e-5)


def test_fastmri_acceleration_undersamples_the_kspace_that_opens(qtbot, make_window, tmp_path):
    window = make_window()
    dialog = open_dialog(window, FILES["fastmri"][0](tmp_path))
    assert {"acceleration", "center_fraction", "coils"} <= set(dialog.fields)
    assert dialog.value("acceleration") == "" and dialog.value("coils") == "auto"
    dialog.set_value("acceleration", "4")
    dialog.set_value("center_fraction", "0.125")
    ok(qtbot, dialog)  # OK reads the file with the changed choices, preview or not
    mask = window.measurement.operator.arrays["mask"]
    assert mask.shape[-1] / mask.reshape(-1, mask.shape[-1]).max(0).sum() == pytest.approx(4, rel=0.15)


@pytest.mark.parametrize("fmt", ["fastmri", "dxchange", "nxtomo", "dicom", "nifti"])
def test_imported_file_reconstructs_in_the_window(qtbot, make_window, tmp_path, fmt):
    window = make_window()
    write, option, text, chosen = FILES[fmt]
    dialog = open_dialog(window, write(tmp_path))
    dialog.set_value(option, text)
    ok(qtbot, dialog)
    assert chosen(window.measurement) == int(text) and window.run_button.isEnabled()
    result = _run(qtbot, window, GAUSSIAN_3)
    assert result is not None, window.last_error
    assert result.measurement is window.measurement
    assert result.mean.shape == tuple(window.measurement.image_shape) and np.isfinite(result.mean).all()
    assert float(np.std(result.mean)) > 0


def test_cancel_keeps_the_measurement_before(qtbot, make_window, tmp_path):
    window = make_window()
    before = window.measurement
    dialog = open_dialog(window, FILES["nxtomo"][0](tmp_path))
    dialog.set_value("slice", "0")
    preview(qtbot, dialog)
    dialog.set_value("slice", "2")
    assert dialog.preview()
    dialog.reject()  # while a preview is being read: it arrives to nothing
    dialog.job.wait(10000)
    qtbot.wait(50)
    assert window.measurement is before and "cancelled" in window.message_label.text()
    assert str(tmp_path / "n.h5") not in window.recent_files()


def test_a_refused_option_says_so_and_ok_keeps_the_dialog_open(qtbot, make_window, tmp_path):
    window = make_window()
    before = window.measurement
    dialog = open_dialog(window, FILES["dxchange"][0](tmp_path))
    dialog.set_value("slice", "99")
    ok(qtbot, dialog)
    assert dialog.isVisible() and window.measurement is before
    assert "99" in dialog.error and "99" in dialog.note.text()


def test_use_defaults_without_asking_opens_directly(qtbot, make_window, tmp_path):
    window = make_window()
    dialog = open_dialog(window, nifti_volume(tmp_path / "v.nii"))
    dialog.ask.setChecked(True)
    dialog.accept()  # the choices the defaults made: nothing to read again
    assert not dialog.busy() and not dialog.isVisible()
    assert not window.ask_import_action.isChecked() and "default choices" in window.forward.import_note.text()
    path = FILES["nxtomo"][0](tmp_path)
    assert window.open_file(path) and window.measurement.attrs["detector_row"] == 1  # the middle one
    assert "default choices" in window.forward.import_note.text()
    window.ask_import_action.trigger()
    assert window.ask_import_action.isChecked()
    assert window.open_file(path) and window.import_dialog.isVisible()


def drop(window, path) -> None:
    mime = QtCore.QMimeData()
    mime.setUrls([QtCore.QUrl.fromLocalFile(str(path))])
    pos = QtCore.QPointF(10, 10)
    actions = QtCore.Qt.DropAction.CopyAction
    enter = QtGui.QDragEnterEvent(pos.toPoint(), actions, mime, QtCore.Qt.MouseButton.LeftButton,
                                  QtCore.Qt.KeyboardModifier.NoModifier)
    window.dragEnterEvent(enter)
    assert enter.isAccepted()
    window.dropEvent(QtGui.QDropEvent(pos, actions, mime, QtCore.Qt.MouseButton.LeftButton,
                                      QtCore.Qt.KeyboardModifier.NoModifier))


def test_dropping_a_file_opens_it_through_the_import_dialog(qtbot, make_window, tmp_path):
    window = make_window()
    path = write_series(tmp_path / "series")
    drop(window, path)
    dialog = window.import_dialog
    assert dialog.isVisible() and dialog.path == path
    dialog.set_value("slice", "1")
    ok(qtbot, dialog)
    assert window.measurement.attrs["slice"] == 1 and window.measurement.attrs["source_format"] == "dicom"


def test_recent_files_follow_opening_and_drop_a_deleted_file(make_window, tmp_path):
    window = make_window()
    window.set_ask_import(False)
    paths = [FILES[f][0](tmp_path) for f in ("fastmri", "dxchange")] + [nifti_volume(tmp_path / "v.nii")]
    for path in paths:
        assert window.open_file(path), window.last_error
    assert window.recent_files() == [str(p.resolve()) for p in reversed(paths)]
    assert [a.text() for a in window.recent_menu.actions()] == [p.name for p in reversed(paths)]
    paths[1].unlink()
    window.recent_menu.aboutToShow.emit()
    assert window.recent_files() == [str(paths[2].resolve()), str(paths[0].resolve())]
    assert [a.text() for a in window.recent_menu.actions()] == ["v.nii", "f.h5"]
    assert "d.h5" in window.message_label.text() and "no longer there" in window.message_label.text()
    window.recent_menu.actions()[1].trigger()
    assert window.measurement.attrs["source_format"] == "fastMRI"
    assert window.recent_files()[0] == str(paths[0].resolve())


def test_session_reads_a_file_with_options_without_qt(tmp_path):
    """The session's read_file passes options to the importer and refuses them for its own files."""
    from diffrecon.demo import make_demo
    from diffrecon.errors import InputError
    from diffrecon.io import write_measurement
    from diffrecon.session import Session, import_format

    path = nifti_volume(tmp_path / "v.nii")
    session = Session()
    assert import_format(path).name == "nifti"
    opened = session.read_file(path, slice=3, noise=0.0)
    assert session.measurement is None and opened.measurement.attrs["slice"] == 3
    assert np.allclose(opened.measurement.y, 40.0)  # slice 3 holds 10 x (3 + 1), denoising without noise
    session.use_opened(opened, path)
    assert session.measurement is opened.measurement and "slice 3" in session.note
    write_measurement(tmp_path / "m.h5", make_demo("denoise", size=16))
    assert import_format(tmp_path / "m.h5") is None
    with pytest.raises(InputError, match="m.h5 is a diffrecon file"):
        session.open(tmp_path / "m.h5", slice=1)



@pytest.mark.parametrize("fmt", sorted(FILES))
def test_the_dialogs_note_ends_the_sentence_once(qtbot, make_window, tmp_path, fmt):
    """The note names the measurement's noise and units; a unit that ends in a full stop ("a.u.")
    ends the sentence itself: no "a.u.."."""
    dialog = open_dialog(make_window(), FILES[fmt][0](tmp_path))
    units = dialog.opened.measurement.units
    note = dialog.note.text()
    assert units in note and not note.endswith("..") and note.endswith(".")
