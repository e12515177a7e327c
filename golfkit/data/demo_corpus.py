"""An English corpus every Python installation carries: the standard library's own documentation.

The CPU demo must run with no download, so its documents are the pydoc topic pages (the language
reference) and the docstrings of the standard library's modules, classes and functions, read from the
source files with `ast` (nothing is imported or executed). The order is sorted, so a given Python
version always yields the same corpus.
"""

from __future__ import annotations

import ast
import sysconfig
from collections.abc import Iterator
from pathlib import Path

MIN_DOC_CHARS = 200


def _pydoc_topics() -> Iterator[str]:
    from pydoc_data.topics import topics

    for name in sorted(topics):
        yield topics[name]


def _module_docs(path: Path) -> str:
    """All docstrings of one module, joined as one document (module first, then in source order)."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (SyntaxError, UnicodeDecodeError, ValueError):
        return ""
    parts = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            doc = ast.get_docstring(node)
            if doc and len(doc) > 40:
                parts.append(doc.strip())
    return "\n\n".join(parts)


def _stdlib_docstrings() -> Iterator[str]:
    root = Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root).parts
        if any(part in ("test", "tests", "idle_test", "site-packages", "__pycache__") for part in relative):
            continue
        text = _module_docs(path)
        if text:
            yield text


def demo_documents(max_chars: int = 2_500_000) -> list[str]:
    """Documents of at least MIN_DOC_CHARS characters, up to `max_chars` characters in all."""
    docs: list[str] = []
    total = 0
    for source in (_pydoc_topics(), _stdlib_docstrings()):
        for text in source:
            if len(text) < MIN_DOC_CHARS:
                continue
            docs.append(text)
            total += len(text)
            if total >= max_chars:
                return docs
    return docs
