"""The importer registry: every format is recognised by its content and opened by one call."""
from __future__ import annotations

import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import tifffile
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from test_importers import WRITERS, image  # noqa: E402

from diffrecon.demo import make_demo  # noqa: E402
from diffrecon.errors import InputError  # noqa: E402
from diffrecon.io import importers, write_measurement  # noqa: E402


def test_every_import_format_has_a_test_writer():
    assert set(WRITERS) == set(importers.import_formats())


@pytest.mark.parametrize("fmt", importers.import_formats())
def test_each_format_is_detected_by_content_whatever_its_suffix(tmp_path, fmt):
    path = tmp_path / "scan.dat"  # no suffix tells
    WRITERS[fmt](path)
    assert importers.detect(path).name == fmt
    m = importers.open(path, slice=1, size=16)
    assert m.operator.image_shape == (1, 16, 16) and m.source == path and np.isfinite(m.y).all()


@pytest.mark.parametrize("fmt", importers.import_formats())
def test_each_format_refuses_options_it_does_not_take_naming_them(tmp_path, fmt):
    WRITERS[fmt](tmp_path / "f.h5")
    info = importers.importer(fmt)
    foreign = next(o.name for i in importers.IMPORTERS.values() for o in i.options if o.name not in info.option_names)
    with pytest.raises(InputError, match=f"{foreign} applies to .* not to {info.title}"):
        importers.open(tmp_path / "f.h5", fmt, **{foreign: 1})


def test_options_left_at_none_count_as_not_given(tmp_path):
    WRITERS["dxchange"](tmp_path / "d.h5")
    m = importers.open(tmp_path / "d.h5", acceleration=None, center_fraction=None, size=16)
    assert m.operator.kind == "ct" and m.y.shape[-1] == 16


def test_own_measurement_file_opens_as_itself(tmp_path):
    m = make_demo("inpaint", size=16)
    write_measurement(tmp_path / "m.h5", m)
    assert importers.detect(tmp_path / "m.h5").name == "diffrecon"
    back = importers.open(tmp_path / "m.h5")
    np.testing.assert_array_equal(back.y, m.y)


def test_images_are_recognised_by_their_bytes_and_need_a_forward_model(tmp_path):
    tifffile.imwrite(tmp_path / "a.bin", (image(16) * 1000).astype(np.uint16))
    Image.fromarray((image(16) * 255).astype(np.uint8)).save(tmp_path / "b.bin", format="PNG")
    for name in ("a.bin", "b.bin"):
        assert importers.detect(tmp_path / name).name == "image"
        with pytest.raises(InputError, match="diffrecon simulate"):
            importers.open(tmp_path / name)
    m = importers.open(tmp_path / "a.bin", operator="sr", options={"factor": 2}, noise=0.0)
    assert m.y.shape == (1, 8, 8) and m.ground_truth.max() == pytest.approx(float((image(16) * 1000).astype(
        np.uint16).max()))


def test_a_file_of_no_format_names_every_layout(tmp_path):
    with h5py.File(tmp_path / "plain.h5", "w") as f:
        f["data"] = np.zeros((4, 4))
    with pytest.raises(InputError, match="matches no import format") as err:
        importers.detect(tmp_path / "plain.h5")
    for fmt in importers.import_formats():
        assert f"{fmt}: {importers.importer(fmt).layout}" in str(err.value)


def test_unknown_format_is_refused_with_the_valid_ones(tmp_path):
    with pytest.raises(InputError, match="'analyze' is unknown; valid formats are auto, .*fastmri"):
        importers.open(tmp_path / "x.h5", "analyze")
