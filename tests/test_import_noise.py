"""Importers estimate the noise level from the data or say that they did not (never a silent 0)."""
from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from diffrecon.coils import fft2c
from diffrecon.io import read_measurement, write_measurement
from diffrecon.io.importers import import_dxchange, import_fastmri, import_nxtomo
from diffrecon.io.importers.noise import describe_noise_source, is_estimated
from diffrecon.operators import ParallelBeamCT
from diffrecon.phantoms import phantom
from test_importers import nxtomo_file

N = 32
PHOTONS = 2000.0


def _sinogram(n_angles: int = 40, pad: int = 0) -> np.ndarray:
    """Line integrals of a phantom; ``pad`` empty pixels around it leave empty detector edges."""
    inner = phantom(N - 2 * pad, 1_000_000_000).astype(np.float64) * 0.05
    x = np.pad(inner, pad)
    op = ParallelBeamCT((1, N, N), np.arange(n_angles) * 180.0 / n_angles, n_detectors=N)
    return op.A(torch.from_numpy(x).float()[None, None])[0, 0].numpy().astype(np.float64)


def _write_nxtomo(path, sino, n_flats: int, seed: int = 0, poisson: bool = True) -> None:
    rng = np.random.default_rng(seed)
    counts = PHOTONS * np.exp(-sino)
    proj = rng.poisson(counts) if poisson else counts
    flats = rng.poisson(PHOTONS, (n_flats, N)) if poisson else np.full((n_flats, N), PHOTONS)
    frames = np.concatenate([flats, proj]).astype(np.float32)[:, None, :]  # one detector row
    angles = np.arange(len(sino)) * 180.0 / len(sino)
    nxtomo_file(path, frames, np.array([1] * n_flats + [0] * len(sino), np.int32),
                np.concatenate([np.zeros(n_flats), angles]))


def _empirical_noise(m, sino) -> float:
    d = m.y[0] - sino
    return float(1.4826 * np.median(np.abs(d - np.median(d))))


def test_nxtomo_noise_from_flat_field_series_matches_photon_noise_within_20_percent(tmp_path):
    sino = _sinogram()
    _write_nxtomo(tmp_path / "t.nxs", sino, n_flats=10)
    m = import_nxtomo(tmp_path / "t.nxs")
    assert m.attrs["noise_source"].startswith("flat fields (10 frames")
    assert m.noise_sigma == pytest.approx(_empirical_noise(m, sino), rel=0.2)
    assert m.operator.noise_sigma == m.noise_sigma


def test_nxtomo_without_flat_series_uses_empty_detector_edges(tmp_path):
    sino = _sinogram(pad=6)
    _write_nxtomo(tmp_path / "t.nxs", sino, n_flats=1)
    m = import_nxtomo(tmp_path / "t.nxs")
    assert m.attrs["noise_source"].startswith("detector background")
    # the flat is one noisy frame too: its noise adds to every ray's
    expected = np.sqrt(1 / PHOTONS + 1 / PHOTONS)
    assert m.noise_sigma == pytest.approx(expected, rel=0.3)


def test_nxtomo_refuses_to_guess_when_nothing_shows_the_noise(tmp_path):
    _write_nxtomo(tmp_path / "t.nxs", _sinogram(), n_flats=1, poisson=False)
    m = import_nxtomo(tmp_path / "t.nxs")
    assert m.noise_sigma == 0.0
    assert not is_estimated(m.attrs["noise_source"]) and "set the noise level" in m.attrs["noise_source"]


def test_rebinning_lowers_the_estimate_by_the_square_root_of_the_binning(tmp_path):
    sino = _sinogram()
    _write_nxtomo(tmp_path / "t.nxs", sino, n_flats=10)
    full, half = import_nxtomo(tmp_path / "t.nxs"), import_nxtomo(tmp_path / "t.nxs", size=16)
    assert half.noise_sigma == pytest.approx(full.noise_sigma / np.sqrt(2), rel=1e-6)


def test_dxchange_records_the_flat_field_estimate_in_the_written_file(tmp_path):
    sino = _sinogram()
    rng = np.random.default_rng(1)
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f.create_dataset("exchange/data", data=rng.poisson(PHOTONS * np.exp(-sino))[:, None, :].astype(np.float32))
        f.create_dataset("exchange/data_white", data=rng.poisson(PHOTONS, (8, 1, N)).astype(np.float32))
    m = import_dxchange(tmp_path / "d.h5")
    assert m.noise_sigma == pytest.approx(_empirical_noise(m, sino), rel=0.2)
    write_measurement(tmp_path / "m.h5", m)
    back = read_measurement(tmp_path / "m.h5")
    assert back.attrs["noise_source"] == m.attrs["noise_source"] and back.noise_sigma == pytest.approx(m.noise_sigma)


def test_fastmri_with_empty_corners_refuses_to_guess(tmp_path):
    small = fft2c(phantom(16, 1_000_000_000).astype(np.complex64))
    kspace = np.pad(small, 8)[None].astype(np.complex64)  # zero-padded: the corners hold nothing
    with h5py.File(tmp_path / "f.h5", "w") as f:
        f.create_dataset("kspace", data=kspace)
    m = import_fastmri(tmp_path / "f.h5")
    assert m.noise_sigma == 0.0 and not is_estimated(m.attrs["noise_source"])


def test_noise_source_of_files_without_one_says_so():
    assert describe_noise_source({}) == "not recorded in the file"
    assert describe_noise_source({"demo_kind": "ct"}).startswith("simulated")


def test_cli_import_says_where_the_noise_level_came_from_or_warns(tmp_path, capsys):
    from diffrecon.cli import main

    _write_nxtomo(tmp_path / "t.nxs", _sinogram(), n_flats=1, poisson=False)
    assert main(["import", str(tmp_path / "t.nxs"), "--out", str(tmp_path / "m.h5")]) == 0
    err = capsys.readouterr().err
    assert "warning: noise_sigma from not estimated" in err and "set the noise level yourself" in err
