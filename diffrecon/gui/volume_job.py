"""What the volume window reads and runs: which kind of volume file a path is, the volume
measurement reader of :mod:`diffrecon.volume` (where that build has it), and the jobs that run
:func:`diffrecon.volume.reconstruct_volume` and the exports off the GUI thread (:class:`~.jobs.Job`)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PySide6 import QtCore

from ..engine import Log, Planned, Progress, RunConfig, Statistics
from .jobs import Job, JobSignals, Returned
from .worker import Ended, detached, report_no_result


@dataclass
class VolumeSlices:
    """A stack of slice measurements with its geometry: what ``read_volume_measurement`` returns
    (``slices``, ``z_spacing``, ``truth``, ``source``), or one built in memory (scripts, tests)."""

    slices: list
    z_spacing: float = 1.0
    truth: np.ndarray | None = None
    source: Any = None


def measurement_reader():
    """``(read_volume_measurement, is_volume_measurement)`` of :mod:`diffrecon.volume`."""
    from ..volume import is_volume_measurement, read_volume_measurement

    return read_volume_measurement, is_volume_measurement


def volume_kind(path: str | Path) -> str | None:
    """``result`` for a volume result file, ``measurement`` for a volume measurement file, else None."""
    from ..volume.file import is_volume_result

    if is_volume_result(path):
        return "result"
    _read, is_measurement = measurement_reader()
    try:
        return "measurement" if is_measurement is not None and is_measurement(path) else None
    except Exception:  # noqa: BLE001 - a file it cannot tell about is no volume measurement
        return None


def read_volume_slices(path: str | Path) -> VolumeSlices:
    read, _is = measurement_reader()
    vm = read(path)
    # the file gives the slice distance in pixels; the window works in the slices' pixel unit
    return VolumeSlices(list(vm.slices), float(vm.z_spacing) * float(vm.slices[0].pixel_size), vm.truth,
                        getattr(vm, "source", path))


def slices_truth(vs: VolumeSlices) -> np.ndarray | None:
    """The ground truth (Z, C, H, W): the file's, else the slices' own where every slice has one."""
    if vs.truth is not None:
        truth = np.asarray(vs.truth, np.float32)
        return truth[:, None] if truth.ndim == 3 else truth
    if all(m.ground_truth is not None for m in vs.slices):
        return np.stack([np.asarray(m.ground_truth, np.float32) for m in vs.slices])
    return None


def direct_volume(slices: list) -> np.ndarray:
    """Each slice's direct reconstruction (FBP, zero-filled, pseudo-inverse), stacked (Z, C, H, W)."""
    from ..operators import build_operator
    from ..session.model import direct_reconstruction

    op = build_operator(slices[0].operator)
    return np.stack([np.real(direct_reconstruction(m, op)).astype(np.float32) for m in slices])


class VolumeSignals(JobSignals):
    planned = QtCore.Signal(object)
    progress = QtCore.Signal(object)
    statistics = QtCore.Signal(object)  # mean and std of the samples finished so far
    finished_result = QtCore.Signal(object)  # VolumeResult
    stopped_empty = QtCore.Signal()  # stopped before any sample finished


def _events(job: "VolumeJob", slices: list, config: RunConfig, lam_z: float, slice_batch: int | None):
    from ..volume import VolumeFinished, reconstruct_volume

    finished = False
    for event in reconstruct_volume(slices, config, lam_z=lam_z, slice_batch=slice_batch, stop=job.stop_event):
        finished |= isinstance(event, VolumeFinished)
        yield event
    if not finished:
        yield Ended()


class VolumeJob(Job):
    """``reconstruct_volume(slices, config, lam_z=...)`` with Stop; every event on a signal."""

    SIGNALS = VolumeSignals

    def __init__(self, slices: list, config: RunConfig, lam_z: float, slice_batch: int | None = None,
                 parent: QtCore.QObject | None = None):
        super().__init__(_events, slices, config, lam_z, slice_batch, owner=parent, pass_job=True)
        self._routes = {Planned: self.planned, Progress: self.progress, Statistics: self.statistics}

    def route(self, event) -> None:
        from ..volume import VolumeFinished

        if isinstance(event, VolumeFinished):
            self.finished_result.emit(event.result)
        elif isinstance(event, Log):
            self.log.emit(event.message, event.level)
        elif isinstance(event, Ended):
            report_no_result(self, "volume reconstruction")
        elif type(event) in self._routes:  # arrays copied for the GUI thread, as RunWorker does
            self._routes[type(event)].emit(detached(event))


class ExportSignals(JobSignals):
    progress = QtCore.Signal(int, int)  # slices written, slices
    written = QtCore.Signal(object)  # the path, once the file is in place


def _export(job: "ExportJob", path: Path, result, result_file: bool):
    from ..volume.export import export_volume
    from ..volume.file import write_volume

    if result_file:
        return write_volume(path, result)
    return export_volume(path, result, progress=lambda done, total: job.progress.emit(done, total))


class ExportJob(Job):
    """Write a VolumeResult: the result file (``result_file``), else TIFF or HDF5 by the suffix."""

    SIGNALS = ExportSignals

    def __init__(self, path: str | Path, result, result_file: bool = False, parent: QtCore.QObject | None = None):
        super().__init__(_export, Path(path), result, result_file, owner=parent, pass_job=True)

    def route(self, event) -> None:
        if isinstance(event, Returned):
            self.written.emit(event.value)
