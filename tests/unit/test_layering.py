"""The packages' layering: record/ (bundled alone into train_gpt.py) imports nothing of golfkit.

golfkit may import record (its config, its errors); the other way round would break the one-file
program, which ships without golfkit. Every record/*.py is parsed, imports inside functions included.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

RECORD = Path(__file__).resolve().parents[2] / "record"
MODULES = sorted(RECORD.glob("*.py"))


def _imported(tree: ast.Module) -> list[tuple[int, str]]:
    """(line, module) for every import statement and every import_module / __import__ of a literal."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                found.append((node.lineno, node.args[0].value))
    return found


def test_record_has_modules_to_check() -> None:
    assert len(MODULES) > 10


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_record_module_imports_nothing_of_golfkit(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    imported = _imported(tree)
    offending = [f"record/{path.name}:{line}: {name}" for line, name in imported if name.split(".")[0] == "golfkit"]
    assert offending == [], "record/ must not import golfkit (train_gpt.py ships without it)"


def test_the_check_sees_a_golfkit_import() -> None:
    source = (
        "def f():\n    from golfkit.errors import GolfkitError\n"
        "import importlib\nimportlib.import_module('golfkit.cli')\n"
    )
    assert sorted(name for _, name in _imported(ast.parse(source))) == ["golfkit.cli", "golfkit.errors", "importlib"]
