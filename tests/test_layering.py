"""The package's layers, checked from the imports in its source (docs/architecture.md draws them).

``utils`` is the bottom: it imports nothing else of ours. ``data`` and ``nets`` are siblings above it
and never import each other or anything higher. ``methods`` may use data, nets and utils, never the
callbacks, selection, the CLI or the suite. Every import counts, also one inside a function: a lazy
import is still a dependency, only a hidden one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.helpers import REPO

PACKAGE = REPO / "ssl_lightning"

#: part -> parts of ssl_lightning it must never import
FORBIDDEN: dict[str, set[str]] = {
    "utils": {"data", "nets", "methods", "callbacks", "selection", "integrations", "cli", "suite"},
    "data": {"nets", "methods", "callbacks", "selection", "cli", "suite"},
    "nets": {"data", "methods", "callbacks", "selection", "integrations", "cli", "suite"},
    "methods": {"callbacks", "selection", "cli", "suite"},
    "callbacks": {"selection", "cli", "suite"},
}


def part_of(module: str) -> str:
    """``ssl_lightning.data.base`` -> ``data``; ``ssl_lightning.cli`` -> ``cli``."""
    return module.split(".")[1] if module.count(".") >= 1 else ""


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) for every ``import ssl_lightning...`` / ``from ssl_lightning... import`` in a file,
    relative imports resolved, ``from ssl_lightning.x import y`` counted as ``ssl_lightning.x.y``."""
    module = ".".join(path.relative_to(REPO).with_suffix("").parts)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found += [(node.lineno, f"{base}.{alias.name}" if base else alias.name) for alias in node.names]
    return [(line, name) for line, name in found if name.startswith("ssl_lightning.")]


def violations(files: list[Path]) -> list[str]:
    bad = []
    for path in files:
        own = part_of(".".join(path.relative_to(REPO).with_suffix("").parts))
        for line, name in imported_modules(path):
            target = part_of(name)
            if target in FORBIDDEN.get(own, set()):
                bad.append(f"{path.relative_to(REPO)}:{line} ({own}) imports {name} ({target})")
    return bad


def test_no_import_goes_up_a_layer():
    bad = violations(sorted(PACKAGE.rglob("*.py")))
    assert not bad, "imports against the layering (see docs/architecture.md):\n" + "\n".join(bad)


#: selection's drivers: they run whole configs (``ssl_lightning.cli.run_config``) and sit with the CLI and suite.
SELECTION_DRIVERS = ("cli.py", "active.py", "__main__.py")


def test_selection_library_has_no_cycle_with_its_drivers():
    """selection's library (strategies, embeddings, oracle, the select runner) never imports its drivers or the CLI."""
    library = [p for p in (PACKAGE / "selection").glob("*.py") if p.name not in SELECTION_DRIVERS]
    drivers = tuple(f"ssl_lightning.selection.{name[:-3]}" for name in SELECTION_DRIVERS)
    bad = [
        f"{p.relative_to(REPO)}:{line} imports {name}"
        for p in library
        for line, name in imported_modules(p)
        if name.startswith((*drivers, "ssl_lightning.cli", "ssl_lightning.suite"))
    ]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize(
    ("source", "own", "target"),
    [
        ("from ssl_lightning.methods.hparams import x\n", "data", "methods"),
        ("def f():\n    from ssl_lightning.data.tokenize import y\n", "nets", "data"),
        ("import ssl_lightning.callbacks.figures\n", "methods", "callbacks"),
        ("from ..cli import build_cli\n", "methods", "cli"),
    ],
)
def test_the_checker_sees_each_kind_of_import(tmp_path, monkeypatch, source, own, target):
    """The rule itself would fail on a back-edge: module-level, lazy, plain and relative imports."""
    monkeypatch.setattr("tests.test_layering.REPO", tmp_path)
    path = tmp_path / "ssl_lightning" / own / "mod.py"
    path.parent.mkdir(parents=True)
    path.write_text(source)
    bad = violations([path])
    assert len(bad) == 1 and f"({target})" in bad[0]


def test_no_module_over_400_lines():
    long = {str(p.relative_to(REPO)): n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > 400}
    assert not long, f"split these modules (one concern each, at most 400 lines): {long}"
