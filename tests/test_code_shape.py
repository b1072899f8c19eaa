"""The size limits of issue 9, held by a test: no module over 400 lines, no function over 50
lines, no class over 300 lines in the service's own packages (`chat/`, `states/`)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("chat", "states")
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 50
MAX_CLASS_LINES = 300


def _sources() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def _too_long(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    where = path.relative_to(ROOT)
    found = []
    lines = len(text.splitlines())
    if lines > MAX_MODULE_LINES:
        found.append(f"{where}: module of {lines} lines (> {MAX_MODULE_LINES})")
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            limit, kind = MAX_FUNCTION_LINES, "function"
        elif isinstance(node, ast.ClassDef):
            limit, kind = MAX_CLASS_LINES, "class"
        else:
            continue
        start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
        length = (node.end_lineno or node.lineno) - start + 1
        if length > limit:
            found.append(f"{where}:{node.lineno}: {kind} {node.name} of {length} lines (> {limit})")
    return found


def test_the_packages_are_found() -> None:
    assert len(_sources()) > 20


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_modules_functions_and_classes_stay_small(path: Path) -> None:
    assert _too_long(path) == []
