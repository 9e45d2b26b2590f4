"""The import contracts of pyproject.toml ([tool.importlinter]) hold, and they would catch a break.

The layers (front ends > features > engine and io > services > solvers > priors > forward
models > base), Qt only inside diffrecon.gui, and no import cycle between the siblings of any
package: docs/architecture.md, "Front ends and layers", says why each module sits where it does.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("importlinter", reason="the import contracts need import-linter (the test extra)")

ROOT = Path(__file__).resolve().parents[1]
CONTRACTS = {
    "layers": "Front ends > the window's session model > features > engine and io",
    "qt-only-in-gui": "Qt (PySide6, pyqtgraph, superqt) is imported only inside diffrecon.gui",
    "qt-importers": "Only diffrecon.gui imports Qt directly",
    "acyclic": "No import cycles between the siblings of any package",
}


def _lint(root: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` on the package under ``root`` with that tree's pyproject.toml."""
    code = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([sys.executable, "-c", code, "--no-cache"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)


def _kept(output: str, start: str) -> bool | None:
    """Whether the contract whose name starts with ``start`` is reported KEPT (None: not reported)."""
    text = " ".join(output.split())
    at = text.find(start)
    if at < 0:
        return None
    verdicts = [(text.find(word, at), word) for word in ("KEPT", "BROKEN") if text.find(word, at) >= 0]
    return min(verdicts)[1] == "KEPT" if verdicts else None


def test_every_import_contract_is_kept():
    proc = _lint(ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in CONTRACTS.values():
        assert _kept(proc.stdout, name) is True, (name, proc.stdout)


def test_the_contracts_catch_an_upward_import_qt_outside_the_gui_and_a_cycle(tmp_path):
    """A copy of the package with four bad imports added breaks each contract it should."""
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    shutil.copytree(ROOT / "diffrecon", tmp_path / "diffrecon", ignore=shutil.ignore_patterns(
        "resources", "__pycache__"))

    def add(module: str, line: str) -> None:
        path = tmp_path / "diffrecon" / module
        path.write_text(path.read_text() + f"\n{line}\n")

    add("operators/identity.py", "from ..engine import run  # a forward model reaching up to the engine")
    add("metrics.py", "import pyqtgraph  # Qt outside the GUI")
    add("io/atomic.py", "from ..io import read_result  # io.atomic <- io.__init__ <- ... <- io.atomic")
    add("errors.py", "from . import limits  # errors <-> limits: a cycle at the top level")
    proc = _lint(tmp_path)
    assert proc.returncode != 0
    out = proc.stdout
    assert _kept(out, CONTRACTS["layers"]) is False and "diffrecon.operators.identity -> diffrecon.engine" in out
    assert _kept(out, CONTRACTS["qt-only-in-gui"]) is False and _kept(out, CONTRACTS["qt-importers"]) is False
    assert _kept(out, CONTRACTS["acyclic"]) is False and "No cycles are allowed in diffrecon." in out
