"""HDF5 tree dock: groups, datasets with shape and dtype, attributes. The file is walked off
the GUI thread into plain tuples; the h5py handle never leaves the worker thread."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6 import QtCore, QtWidgets

from .jobs import Job, JobSignals

# (name, kind, description, attributes, children); kind is "group" | "dataset"
Node = tuple


def _attr_text(value) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray) and value.size > 8:
        return f"array {value.shape} {value.dtype}"
    text = str(value)
    return text if len(text) < 120 else text[:117] + "…"


def walk_hdf5(path: str | Path) -> Node:
    """The file's structure as nested plain tuples (safe to send between threads)."""
    import h5py

    def visit(name: str, obj) -> Node:
        attrs = [(k, _attr_text(v)) for k, v in obj.attrs.items()]
        if isinstance(obj, h5py.Dataset):
            return (name, "dataset", f"{' × '.join(map(str, obj.shape)) or 'scalar'}  {obj.dtype}", attrs, [])
        children = [visit(k, obj[k]) for k in obj.keys() if obj.get(k, getlink=False) is not None]
        return (name, "group", f"{len(children)} item(s)", attrs, children)

    with h5py.File(path, "r") as f:
        return visit(Path(path).name, f)


def _walk_or_say_why(path: str) -> tuple[Node | None, str]:
    try:
        return walk_hdf5(path), ""
    except Exception as err:  # noqa: BLE001 - shown in the tree, never raised in the GUI
        return None, f"{Path(path).name} could not be read as HDF5 ({err})."


class TreeSignals(JobSignals):
    walked = QtCore.Signal(object, str, str)  # tree or None, path, message


class _Loader(Job):
    SIGNALS = TreeSignals

    def __init__(self, path: str, owner):
        super().__init__(_walk_or_say_why, path, owner=owner)
        self.path = path

    def route(self, event) -> None:
        tree, message = event.value
        self.walked.emit(tree, self.path, message)


class HDF5Tree(QtWidgets.QTreeWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.setColumnCount(2)
        self.setHeaderLabels(["Name", "Shape / value"])
        self.setAlternatingRowColors(True)
        self._loaders: list[_Loader] = []
        self.path: str | None = None

    def load(self, path: str | Path) -> None:
        """Start walking ``path`` in a thread; the tree fills when it is done."""
        path = str(path)
        self.path = path
        self.clear()
        QtWidgets.QTreeWidgetItem(self, [Path(path).name, "loading…"])
        loader = _Loader(path, self)
        loader.walked.connect(self._on_walked)
        self._loaders = [j for j in self._loaders if j.running()] + [loader]
        loader.start()

    def wait(self, ms: int = 5000) -> None:
        for loader in list(self._loaders):
            loader.wait(ms)

    def _on_walked(self, tree: Node | None, path: str, message: str) -> None:
        if tree is None:
            self._on_failed(message, path)
        if tree is None or path != self.path:
            return
        self.clear()
        self._add(self.invisibleRootItem(), tree)
        self.expandToDepth(1)
        self.resizeColumnToContents(0)

    def _on_failed(self, message: str, path: str) -> None:
        if path == self.path:
            self.clear()
            QtWidgets.QTreeWidgetItem(self, [Path(path).name, message])

    def _add(self, parent, node: Node) -> None:
        name, kind, desc, attrs, children = node
        item = QtWidgets.QTreeWidgetItem(parent, [name, desc])
        item.setToolTip(0, kind)
        for key, value in attrs:
            attr = QtWidgets.QTreeWidgetItem(item, [f"@{key}", value])
            attr.setForeground(0, self.palette().placeholderText())
        for child in children:
            self._add(item, child)
