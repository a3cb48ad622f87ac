"""Selection's library never imports its drivers (the active-learning loop, the command) or the CLI."""

from __future__ import annotations

import ast

import pytest

from tests.helpers import REPO

SELECTION = REPO / "ssl_lightning" / "selection"
LIBRARY = ["__init__", "strategies", "oracle", "embeddings", "runner"]
DRIVERS = {"ssl_lightning.selection.active", "ssl_lightning.selection.cli", "ssl_lightning.cli", "ssl_lightning.suite"}


def imported_modules(path) -> set[str]:
    """Every module a file imports, at the top or inside a function."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("module", LIBRARY)
def test_library_modules_import_no_driver(module):
    imports = imported_modules(SELECTION / f"{module}.py")
    assert not {name for name in imports if name in DRIVERS or name.startswith("ssl_lightning.suite.")}


def test_active_learning_uses_the_library_not_the_command():
    imports = imported_modules(SELECTION / "active.py")
    assert "ssl_lightning.selection.cli" not in imports and "ssl_lightning.selection.runner" in imports
    assert "ssl_lightning.selection" not in imported_modules(SELECTION / "strategies.py")
