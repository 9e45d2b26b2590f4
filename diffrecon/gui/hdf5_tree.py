"""HDF5 tree dock: groups, datasets with shape and dtype, attributes. The file is walked off
the GUI thread into plain tuples; the h5py handle never leaves the worker thread."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6 import QtCore, QtWidgets

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


class _Loader(QtCore.QObject):
    done = QtCore.Signal(object, str)  # tree, path
    failed = QtCore.Signal(str, str)

    def __init__(self, path: str):
        super().__init__()
        self.path = path

    def run(self):
        try:
            self.done.emit(walk_hdf5(self.path), self.path)
        except Exception as err:  # noqa: BLE001 - shown in the tree, never raised in the GUI
            self.failed.emit(f"{Path(self.path).name} could not be read as HDF5 ({err}).", self.path)


class HDF5Tree(QtWidgets.QTreeWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.setColumnCount(2)
        self.setHeaderLabels(["Name", "Shape / value"])
        self.setAlternatingRowColors(True)
        self._threads: list[QtCore.QThread] = []
        self.path: str | None = None

    def load(self, path: str | Path) -> None:
        """Start walking ``path`` in a thread; the tree fills when it is done."""
        path = str(path)
        self.path = path
        self.clear()
        QtWidgets.QTreeWidgetItem(self, [Path(path).name, "loading…"])
        thread = QtCore.QThread(self)
        loader = _Loader(path)
        loader.moveToThread(thread)
        thread.started.connect(loader.run)
        loader.done.connect(self._on_loaded)
        loader.failed.connect(self._on_failed)
        loader.done.connect(thread.quit)
        loader.failed.connect(thread.quit)
        thread.finished.connect(lambda: self._threads.remove(thread) if thread in self._threads else None)
        thread.finished.connect(thread.deleteLater)  # its parent would keep every finished walk
        thread._loader = loader  # keep it alive as long as the thread
        self._threads.append(thread)
        thread.start()

    def wait(self, ms: int = 5000) -> None:
        for t in list(self._threads):
            t.wait(ms)

    def _on_loaded(self, tree: Node, path: str) -> None:
        if path != self.path:
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
